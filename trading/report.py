"""Backtest report: metrics, report.json, PNG charts and an HTML page.

The PNGs are drawn with numpy and written with zlib (a minimal PNG encoder and a 3x5 pixel font for axis
labels), so reports need no plotting library. Everything written is a function of the report data: the same
backtest gives byte-identical files.
"""

from __future__ import annotations

import html
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from market.timeutil import to_iso
from trading.config import BacktestConfig
from trading.positions import Fill

REPORT_VERSION = 1
PERIODS_PER_YEAR_S = 252 * 86_400  # Sharpe annualisation: 252 days of round-the-clock trading


# -- report data ------------------------------------------------------------------------------------------------


class EquityPoint(msgspec.Struct, frozen=True, array_like=True):
    ts_event: int
    pnl_usd: float  # realised + unrealised, after fees
    sample: bool  # True: a regular sample (Sharpe uses these); False: a mark after a fill / while positioned


class InstrumentResult(msgspec.Struct, frozen=True, kw_only=True):
    instrument_id: str
    venue: str
    currency: str  # quote currency of the exact amounts below
    point_value: str  # quote currency per 1.0 of price per lot
    position: int
    mark: str | None  # fixed-point units (mid of the last quote)
    realised: str  # exact, quote currency, after fees
    unrealised: str
    fees: str
    pnl: str
    realised_usd: float
    unrealised_usd: float
    pnl_usd: float
    turnover_usd: float
    fills: int


class OrderRecord(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    instrument_id: str
    side: str
    qty: int
    tif: str
    price: int | None
    filled: int
    status: str
    approved: bool
    risk_score: float
    created_ns: int
    sent_ns: int | None
    done_ns: int | None
    detail: str


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    pnl_usd: float
    realised_usd: float
    unrealised_usd: float
    fees_usd: float
    max_drawdown_usd: float
    turnover_usd: float
    sharpe: float | None  # mean / sd of per-sample P&L
    sharpe_annualised: float | None
    sample_s: int
    samples: int
    fills: int
    orders: int


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    rows_in: int
    ticks_accepted: int
    dead_letters_by_reason: dict[str, int]
    signals_by_kind: dict[str, int]
    signals_to_strategy: int  # arbitrage + crash signals handed to the trade module
    orders_by_status: dict[str, int]
    risk_rejections_by_reason: dict[str, int]
    parked: int  # orders that waited for approval
    approved: int
    fills_by_liquidity: dict[str, int]
    skipped: list[str]  # strategy signals not traded, and why


class ReportData(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    strategy: str
    data_files: list[str]  # base names
    latency_ms: int
    start_ns: int
    end_ns: int
    summary: Summary
    counts: Counts
    instruments: list[InstrumentResult]
    equity: list[EquityPoint]
    fills: list[Fill]
    orders: list[OrderRecord]
    config: BacktestConfig


# -- metrics --------------------------------------------------------------------------------------------------


def max_drawdown(values: Sequence[float]) -> float:
    """Largest fall from a running peak (>= 0); the curve starts from 0 P&L."""
    peak, worst = 0.0, 0.0
    for v in values:
        peak = max(peak, v)
        worst = max(worst, peak - v)
    return worst


def sharpe(values: Sequence[float]) -> float | None:
    """Mean over sample standard deviation of the per-period changes of `values` (starting from 0)."""
    x = np.diff(np.asarray([0.0, *values], dtype=np.float64))
    if x.shape[0] < 2:
        return None
    sd = float(np.std(x, ddof=1))
    return float(np.mean(x)) / sd if sd > 0 else None


def annualise(s: float | None, sample_s: int) -> float | None:
    return None if s is None else s * math.sqrt(PERIODS_PER_YEAR_S / sample_s)


# -- PNG --------------------------------------------------------------------------------------------------------


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (h, w, 3) uint8 image as PNG (filter 0 on every row, zlib level 9)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("need an (h, w, 3) uint8 array")
    h, w, _ = rgb.shape
    raw = np.zeros((h, 1 + 3 * w), np.uint8)
    raw[:, 1:] = rgb.reshape(h, 3 * w)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b""))


_FONT = {  # 3x5 glyphs, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "-": "000000111000000", ".": "000000000000010",
    ":": "000010000010000", "+": "000010111010000", " ": "000000000000000", "k": "100101110101101",
    "M": "101111111101101", "e": "111101111100111",
}
PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0))


def _text(img: np.ndarray, x: int, y: int, text: str, scale: int = 2, color: tuple[int, int, int] = (60, 60, 60)
          ) -> None:
    for k, ch in enumerate(text):
        bits = np.array([c == "1" for c in _FONT.get(ch, _FONT[" "])], bool).reshape(5, 3)
        glyph = np.kron(bits, np.ones((scale, scale), bool))
        x0 = x + k * 4 * scale
        sub = img[y:y + glyph.shape[0], x0:x0 + glyph.shape[1]]
        sub[glyph[:sub.shape[0], :sub.shape[1]]] = color


def _fmt(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.2f}M"
    if a >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}" if a >= 100 or a == 0 else f"{v:.2f}"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    xs: np.ndarray  # ns
    ys: np.ndarray
    color: tuple[int, int, int]
    step: bool = False  # hold each value until the next point


@dataclass(frozen=True, slots=True)
class ChartAxes:
    x0: int
    x1: int
    y0: float
    y1: float


def line_chart(series: Sequence[Series], width: int = 960, height: int = 320) -> tuple[np.ndarray, ChartAxes]:
    left, right, top, bottom = 76, 12, 12, 26
    img = np.full((height, width, 3), 255, np.uint8)
    pw, ph = width - left - right, height - top - bottom
    pts = [s for s in series if s.xs.shape[0]]
    x0 = min((int(s.xs.min()) for s in pts), default=0)
    x1 = max((int(s.xs.max()) for s in pts), default=1)
    x1 = max(x1, x0 + 1)
    y0 = min([0.0, *(float(s.ys.min()) for s in pts)])
    y1 = max([0.0, *(float(s.ys.max()) for s in pts)])
    pad = (y1 - y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def px(x: np.ndarray) -> np.ndarray:
        return left + (x.astype(np.float64) - x0) / (x1 - x0) * (pw - 1)

    def py(y: np.ndarray) -> np.ndarray:
        return top + (y1 - y.astype(np.float64)) / (y1 - y0) * (ph - 1)

    for k in range(5):  # grid and y labels
        v = y0 + (y1 - y0) * k / 4
        r = int(round(float(py(np.array([v]))[0])))
        img[r, left:left + pw] = (235, 235, 235)
        _text(img, 4, max(0, min(height - 10, r - 5)), _fmt(v))
    zr = int(round(float(py(np.array([0.0]))[0])))
    img[zr, left:left + pw] = (150, 150, 150)
    img[top:top + ph, left] = img[top:top + ph, left + pw - 1] = (120, 120, 120)
    img[top, left:left + pw] = img[top + ph - 1, left:left + pw] = (120, 120, 120)
    _text(img, left, height - 12, to_iso(x0)[11:19])
    end = to_iso(x1)[11:19]
    _text(img, left + pw - len(end) * 8, height - 12, end)

    for s in pts:
        xs, ys = px(s.xs), py(s.ys)
        if s.step:
            xs = np.append(np.repeat(xs, 2)[1:], px(np.array([x1]))[0])
            ys = np.repeat(ys, 2)
        if xs.shape[0] == 1:
            xs, ys = np.append(xs, xs), np.append(ys, ys)
        for a in range(xs.shape[0] - 1):
            n = int(max(abs(xs[a + 1] - xs[a]), abs(ys[a + 1] - ys[a]))) + 2
            cx = np.rint(np.linspace(xs[a], xs[a + 1], n)).astype(np.int64)
            cy = np.rint(np.linspace(ys[a], ys[a + 1], n)).astype(np.int64)
            for dy in (0, 1):
                yy = np.clip(cy + dy, 0, height - 1)
                img[yy, np.clip(cx, 0, width - 1)] = s.color
    return img, ChartAxes(x0, x1, y0, y1)


# -- files ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportFiles:
    report_json: Path
    equity_png: Path
    positions_png: Path
    index_html: Path


def encode_report(data: ReportData) -> bytes:
    return msgspec.json.format(msgspec.json.encode(data), indent=1) + b"\n"


def position_series(data: ReportData) -> list[Series]:
    out = []
    for k, inst in enumerate(r.instrument_id for r in data.instruments):
        fills = [f for f in data.fills if f.instrument_id == inst]
        xs = np.array([data.start_ns, *(f.ts_event for f in fills), data.end_ns], np.int64)
        ys = np.cumsum([0, *(f.signed_qty for f in fills), 0]).astype(np.float64)
        out.append(Series(inst, xs, ys, PALETTE[k % len(PALETTE)], step=True))
    return out


def write_report(data: ReportData, out_dir: str | Path) -> ReportFiles:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out / "report.json", out / "equity.png", out / "positions.png", out / "index.html")
    files.report_json.write_bytes(encode_report(data))
    eq = data.equity
    eq_series = Series("P&L (USD)", np.array([data.start_ns, *(p.ts_event for p in eq)], np.int64),
                       np.array([0.0, *(p.pnl_usd for p in eq)]), PALETTE[0], step=True)
    img, eq_axes = line_chart([eq_series])
    files.equity_png.write_bytes(png_bytes(img))
    pos = position_series(data)
    img, pos_axes = line_chart(pos)
    files.positions_png.write_bytes(png_bytes(img))
    files.index_html.write_text(_html(data, pos, eq_axes, pos_axes), encoding="utf-8")
    return files


def _table(rows: Sequence[Sequence[object]], head: Sequence[str] | None = None) -> str:
    e = html.escape
    h = "<tr>" + "".join(f"<th>{e(str(c))}</th>" for c in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{h}{body}</table>"


def _cell(v: object) -> object:
    if isinstance(v, dict):
        return ", ".join(f"{a}: {b}" for a, b in v.items())
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    return v


def _html(data: ReportData, pos: list[Series], eq_axes: ChartAxes, pos_axes: ChartAxes) -> str:
    e = html.escape
    s = data.summary
    summary = _table([(k, v) for k, v in msgspec.structs.asdict(s).items()])
    counts = _table([(k, _cell(v)) for k, v in msgspec.structs.asdict(data.counts).items()])
    inst = _table([(r.instrument_id, r.venue, r.position, r.currency, r.pnl, r.fees, f"{r.pnl_usd:.2f}",
                    f"{r.turnover_usd:.0f}", r.fills) for r in data.instruments],
                  ("instrument", "venue", "position", "ccy", "P&L (quote ccy)", "fees", "P&L USD", "turnover USD",
                   "fills"))
    legend = " ".join(f'<span style="color:rgb{p.color}">&#9632; {e(p.name)}</span>' for p in pos)
    period = f"{to_iso(data.start_ns)} to {to_iso(data.end_ns)}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>commodex backtest: {e(data.strategy)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}</style></head><body>
<h1>Backtest: {e(data.strategy)}</h1>
<p>Data: {e(", ".join(data.data_files))}; {e(period)}; order latency {data.latency_ms} ms.
Full detail (fills, orders, config): <a href="report.json">report.json</a>.</p>
<h2>Summary</h2>{summary}
<h2>Equity (P&amp;L in USD)</h2><img src="equity.png" alt="equity curve">
<p>y from {eq_axes.y0:.2f} to {eq_axes.y1:.2f} USD; x in UTC.</p>
<h2>Positions (lots)</h2><img src="positions.png" alt="positions"><p>{legend}</p>
<h2>Instruments</h2>{inst}
<h2>Counts</h2>{counts}
</body></html>
"""
