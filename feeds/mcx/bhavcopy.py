"""MCX daily bhavcopy CSV -> one daily `Bar` per trade date for an instrument (GOLD.MCX: INR per 10 g).

File quirks handled here: Symbol is space padded ("GOLD         "); rows are in reverse date order; one file
may hold several contracts (expiries) per date; Volume is in lots (GOLD: 1 kg), Value in INR lakhs.
Rows that cannot become a bar are DeadLetters: "malformed" (bad number/date, wrong column count, High < Low,
Open outside Low..High), "no_trades" (Volume 0: MCX prints O/H/L as 0 and the previous settlement as Close),
"duplicate" (same date and contract seen before, e.g. the same contract loaded from two files).
Close is MCX's closing (settlement-style) price and may lie outside Low..High (26 of the 5,795 traded rows of
the 2013-2026 GOLD files, all thin contracts); it is kept as published unless
`close_outside_range="dead_letter"`.

Bars: start = UTC midnight of the trade date, interval 1 day (the MCX session, 09:00-23:30 IST = 03:30-18:00
UTC, lies inside that UTC day, and the bars kernel's 1 d windows are aligned the same way); ts_event = ts_recv =
start + 1 day (a daily file has no receive time); volume = lots; vwap = Value / (lots x quote units per lot);
trades = 0 (not in the file).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from feeds.mcx.config import BhavcopyConfig
from feeds.mcx.schemas import COLUMNS, BhavcopyRow
from market.events import Bar, DeadLetter
from market.fixedpoint import PRICE_SCALE, to_fixed
from market.instruments import Registry, default_registry
from market.rejects import Reason
from market.timeutil import NS_PER_S

DAY_NS = 86_400 * NS_PER_S
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EXPIRY = re.compile(r"([0-9]{2})([A-Z]{3})([0-9]{4})")
_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}


@dataclass(slots=True)
class BhavcopyLoad:
    rows: list[BhavcopyRow]  # parsed rows, in file order
    dead_letters: list[DeadLetter]
    lines: int  # data lines read


@dataclass(slots=True)
class DailyBars:
    bars: list[Bar]  # ascending trade date, one per date
    dead_letters: list[DeadLetter]
    contracts: dict[str, str]  # trade date -> expiry (ISO) of the contract each bar is made from
    skipped: dict[str, int] = field(default_factory=dict)  # rows of other products / contracts, by why
    close_outside_range: int = 0  # bars whose Close lies outside Low..High (kept as published)


class _Bad(Exception):  # noqa: N818 - internal: a row that cannot be parsed
    pass


def parse_bhavcopy(text: str, name: str = "", config: BhavcopyConfig | None = None) -> BhavcopyLoad:
    """Parse one bhavcopy CSV text; `name` (the file) goes into dead-letter details."""
    config = config or BhavcopyConfig()
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        raise ValueError(f"{name or 'bhavcopy'}: header {header!r} is not the MCX bhavcopy layout {COLUMNS}")
    rows: list[BhavcopyRow] = []
    dead: list[DeadLetter] = []
    lines = 0
    for cells in reader:
        lines += 1
        line = reader.line_num
        if not cells:
            continue  # a blank line (e.g. a trailing newline) carries no row
        try:
            rows.append(_row(cells, line))
        except _Bad as e:
            dead.append(_dead(config, Reason.MALFORMED.label, f"{name}:{line}: {e}", ",".join(cells), ""))
    return BhavcopyLoad(rows, dead, lines)


def read_bhavcopy(path: str | Path, config: BhavcopyConfig | None = None) -> BhavcopyLoad:
    """One CSV file, or every *.csv of a folder (sorted by name)."""
    p = Path(path)
    files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    rows: list[BhavcopyRow] = []
    dead: list[DeadLetter] = []
    lines = 0
    for f in files:
        part = parse_bhavcopy(f.read_text(), f.name, config)
        rows += part.rows
        dead += part.dead_letters
        lines += part.lines
    return BhavcopyLoad(rows, dead, lines)


def _row(cells: list[str], line: int) -> BhavcopyRow:
    if len(cells) != len(COLUMNS):
        raise _Bad(f"{len(cells)} columns, expected {len(COLUMNS)}")
    c = dict(zip(COLUMNS, cells, strict=True))
    trade_date = c["Date"].strip()
    if not _DATE.fullmatch(trade_date):
        raise _Bad(f"Date {trade_date!r} is not YYYY-MM-DD")
    _day_ns(trade_date)
    expiry_code = c["ExpiryDate"].strip().upper()
    return BhavcopyRow(
        trade_date=trade_date, symbol=c["Symbol"].strip(), expiry=_expiry_iso(expiry_code), expiry_code=expiry_code,
        instrument_name=c["InstrumentName"].strip(), open=_price(c, "Open"), high=_price(c, "High"),
        low=_price(c, "Low"), close=_price(c, "Close"), previous_close=_price(c, "PreviousClose"),
        volume_lots=_count(c, "Volume"), value=_price(c, "Value"), open_interest=_count(c, "OpenInterest"),
        line=line,
    )


def _price(c: dict[str, str], name: str) -> int:
    text = c[name].strip()
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _Bad(f"{name} {text!r} is not a number") from None
    if not d.is_finite():
        raise _Bad(f"{name} {text!r} is not a finite number")
    return to_fixed(d)


def _count(c: dict[str, str], name: str) -> int:
    text = c[name].strip()
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _Bad(f"{name} {text!r} is not a number") from None
    if not d.is_finite() or d != d.to_integral_value() or d < 0:
        raise _Bad(f"{name} {text!r} is not a non-negative whole number")
    return int(d)


def _expiry_iso(code: str) -> str:
    m = _EXPIRY.fullmatch(code)
    if m is None or m.group(2) not in _MONTHS:
        raise _Bad(f"ExpiryDate {code!r} is not like 05DEC2025")
    iso = f"{m.group(3)}-{_MONTHS[m.group(2)]:02d}-{m.group(1)}"
    _day_ns(iso)
    return iso


def _day_ns(iso: str) -> int:
    try:
        dt = datetime.strptime(iso, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise _Bad(f"{iso!r} is not a calendar date") from None
    return int(dt.timestamp()) * NS_PER_S


def _dead(config: BhavcopyConfig, reason: str, detail: str, raw: str, trade_date: str) -> DeadLetter:
    ts = (_day_ns(trade_date) + DAY_NS) if trade_date else 0
    return DeadLetter(source=config.source, reason=reason, detail=detail, raw=raw, ts_recv=ts,
                      instrument_id=config.instrument_id if trade_date else "", ts_event=ts)


def daily_bars(rows: list[BhavcopyRow], config: BhavcopyConfig | None = None,
               registry: Registry | None = None) -> DailyBars:
    config = config or BhavcopyConfig()
    registry = registry or default_registry()
    registry.get(config.instrument_id)  # raises UnknownInstrument for a config naming no instrument
    skipped: Counter[str] = Counter()
    dead: list[DeadLetter] = []
    seen: set[tuple[str, str]] = set()
    candidates: dict[str, list[BhavcopyRow]] = {}
    outside = 0
    for r in rows:
        if r.symbol != config.symbol or r.instrument_name != config.instrument_name:
            skipped[f"product {r.symbol} {r.instrument_name}"] += 1
            continue
        if config.expiry and r.expiry_code != config.expiry.upper():
            skipped["other expiry"] += 1
            continue
        raw = _raw(r)
        key = (r.trade_date, r.expiry)
        if key in seen:
            dead.append(_dead(config, Reason.DUPLICATE.label,
                              f"{r.trade_date} contract {r.expiry_code} already loaded", raw, r.trade_date))
            continue
        seen.add(key)
        if r.volume_lots == 0:
            dead.append(_dead(config, "no_trades", f"{r.trade_date} {r.expiry_code}: volume 0, no OHLC "
                              "(Close is the previous settlement)", raw, r.trade_date))
            continue
        if r.high < r.low or not r.low <= r.open <= r.high:
            dead.append(_dead(config, Reason.MALFORMED.label,
                              f"{r.trade_date} {r.expiry_code}: inconsistent OHLC", raw, r.trade_date))
            continue
        if not r.low <= r.close <= r.high and config.close_outside_range == "dead_letter":
            dead.append(_dead(config, "close_outside_range",
                              f"{r.trade_date} {r.expiry_code}: Close outside Low..High", raw, r.trade_date))
            continue
        candidates.setdefault(r.trade_date, []).append(r)
    bars: list[Bar] = []
    contracts: dict[str, str] = {}
    for trade_date in sorted(candidates):
        options = candidates[trade_date]
        if config.roll == "most_active":
            chosen = min(options, key=lambda r: (-r.volume_lots, r.expiry))
        else:
            chosen = min(options, key=lambda r: r.expiry)
        skipped["not the chosen contract of the day"] += len(options) - 1
        contracts[trade_date] = chosen.expiry
        outside += not chosen.low <= chosen.close <= chosen.high
        bars.append(_bar(chosen, config))
    dead.sort(key=lambda d: d.ts_event)
    return DailyBars(bars, dead, contracts, dict(skipped), outside)


def load_daily_bars(path: str | Path, config: BhavcopyConfig | None = None,
                    registry: Registry | None = None) -> DailyBars:
    """read_bhavcopy + daily_bars; parse failures come first among the dead letters."""
    config = config or BhavcopyConfig()
    load = read_bhavcopy(path, config)
    out = daily_bars(load.rows, config, registry)
    out.dead_letters = load.dead_letters + out.dead_letters
    return out


def _bar(r: BhavcopyRow, config: BhavcopyConfig) -> Bar:
    start = _day_ns(r.trade_date)
    # vwap = Value (INR lakhs) x 1e5 / (lots x 10 g units per lot), rounded half-even at 1e-9 like to_fixed
    value_inr = Decimal(r.value) / PRICE_SCALE * config.value_inr_per_unit
    vwap = to_fixed(value_inr / (r.volume_lots * config.quote_units_per_lot))
    return Bar(instrument_id=config.instrument_id, interval_ns=DAY_NS, start=start, open=r.open, high=r.high,
               low=r.low, close=r.close, volume=r.volume_lots, vwap=vwap, trades=0, ts_event=start + DAY_NS,
               ts_recv=start + DAY_NS)


def _raw(r: BhavcopyRow) -> str:
    return f"line {r.line}: {r.trade_date},{r.symbol},{r.expiry_code},{r.open},{r.high},{r.low},{r.close}," \
           f"{r.volume_lots}"
