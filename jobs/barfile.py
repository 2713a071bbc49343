"""`commodex bars`: OHLCV bars of a whole tick file (batch: no watermark, every row counts).

Input (by extension: .parquet/.pq, else CSV):
- generic trades: `ts` (int ns, or ISO 8601 with offset or Z), `price`, `size`, optional `instrument`
  (absent: every row is `default_instrument`, by default the input file's stem);
- commodex tick files: `ts_event` (int ns), `kind` ("trade"/"quote" or 0/1), `instrument`, `price`, `size`;
  only trades are aggregated, other kinds are counted in `non_trades`. An INTEGER price column of a tick file
  is fixed point (1e-9, as in TickColumns); everywhere else prices are decimal values.
Prices become exact fixed point (CSV text and Parquet decimals are parsed as decimals, never through float;
Parquet float prices are rounded half to even at 1e-9, as market.fixedpoint.to_fixed); sizes must be integers;
typed Parquet timestamps must carry a time zone (naive ones are rejected). Instruments are arbitrary strings
mapped to local indices in sorted order.

Rows are sorted by (instrument, ts) (stable: ties keep file order) and one numba pass builds the bars:
open/close = first/last trade by (ts, file order). vwap = sum(price*size)/volume, exact, rounded half to even
at 1e-9; empty when volume is 0.
Zero-size ticks are kept by default: exchanges print them (e.g. COMEX via LEAN: minutes whose only prints have
quantity 0 still get a bar), so they set open/high/low/close and count in `trades` but add no volume.
`zero_size="reject"` dead-letters them instead.

Rejected rows (bad ts, missing instrument, NaN/unparsable price, negative/non-integer size, unknown kind) never
vanish: they go to `<out>.rejects.csv` (0-based data row, reason, detail, the row's original values), always
written so a clean run leaves an empty (header-only) file, and are counted in BarFileStats.
Output columns: instrument, start, open, high, low, close, volume, vwap, trades. CSV: start as ISO 8601 UTC
('2013-10-07T00:00:00Z'), prices as minimal decimals. Parquet: start as timestamp[ns, UTC], prices as
decimal128(38, 9).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jobs import bars_kernel as bk
from market.fixedpoint import PRICE_SCALE, PriceError, to_fixed
from market.rejects import Reason
from market.timeutil import NS_PER_S, parse_interval, parse_iso, to_iso

ZeroSize = Literal["keep", "reject"]
OUTPUT_COLUMNS = ("instrument", "start", "open", "high", "low", "close", "volume", "vwap", "trades")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SIMPLE_DECIMAL = r"^[+-]?\d+(\.\d{1,9})?$"  # what Arrow's string->decimal(38, 9) cast takes without loss
_SIMPLE_INT = r"^[+-]?\d{1,19}$"
_MAX_WHOLE = (2**63 - 1) // PRICE_SCALE


@dataclass(frozen=True, slots=True)
class BarFileStats:
    input_path: str
    out_path: str
    rejects_path: str
    interval_ns: int
    rows: int  # data rows in the input
    trades: int  # rows aggregated into bars
    non_trades: int  # tick-file rows of another kind (quotes), not bar input
    rejected: int
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    bars: int = 0
    instruments: int = 0


@dataclass(slots=True)
class FileTicks:
    """Accepted trades of a file, columnar; `names[i]` is the instrument of local index i."""

    names: list[str]
    instrument: np.ndarray  # int32
    ts: np.ndarray  # int64 UTC ns
    price: np.ndarray  # int64 fixed point
    size: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(slots=True)
class FileBars:
    names: list[str]
    interval_ns: int
    instrument: np.ndarray  # int32 local index
    start: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    vwap: np.ndarray  # fixed point; meaningless where volume == 0 (the kernel puts close there)
    trades: np.ndarray

    def __len__(self) -> int:
        return int(self.start.shape[0])


_NON_TRADE = 255  # reason slot of tick-file rows that are not trades: skipped by design, not rejected


@dataclass(slots=True)
class RowRejects:
    """Per input row: 0 = accepted, a market.rejects.Reason, or _NON_TRADE; details of rejected rows."""

    reason: np.ndarray  # uint8
    detail: dict[int, str] = field(default_factory=dict)

    def reject(self, mask: np.ndarray, reason: Reason, detail: str, values: pa.Array | None = None) -> None:
        """Reject rows of `mask` still undecided (the first failing check wins); `values` (the column) adds
        the offending text to the detail."""
        rows = np.flatnonzero(mask & (self.reason == 0))
        if rows.size == 0:
            return
        self.reason[rows] = int(reason)
        texts = pc.cast(values.take(pa.array(rows)), pa.string()).to_pylist() if values is not None else None
        for k, r in enumerate(rows.tolist()):
            self.detail[r] = detail if texts is None else f"{detail}: {texts[k]!r}"


# -- reading ------------------------------------------------------------------------------------------------


def read_table(path: Path) -> pa.Table:
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        return pq.read_table(path)
    # CSV columns are all read as text: prices are parsed exactly as decimals, int and ISO times per row.
    # Only an empty field is missing: "NaN" stays text so it is rejected as a NaN price, not as a gap.
    names = pacsv.open_csv(path).schema.names
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=[""]))


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name).combine_chunks()  # (not for instrument: see _dictionary)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    return col


def _np(arr: pa.Array, dtype: type, fill: object = 0) -> np.ndarray:
    full = arr if arr.null_count == 0 else pc.fill_null(arr, fill)
    return np.asarray(full.to_numpy(zero_copy_only=False), dtype=dtype)


def _bools(arr: pa.Array) -> np.ndarray:
    # via uint8: Arrow's bit-packed booleans convert to numpy far faster that way
    return pc.cast(pc.fill_null(arr, False), pa.uint8()).to_numpy().astype(bool)


def _valid(arr: pa.Array) -> np.ndarray:
    return np.ones(len(arr), dtype=bool) if arr.null_count == 0 else _bools(arr.is_valid())


def _castable(s: pa.Array, to: pa.DataType, pattern: str) -> tuple[np.ndarray, pa.Array]:
    """Rows of the text column `s` that Arrow casts to `to` exactly, and their values (nulls dropped). The whole
    column is tried first (a clean file); when any row fails, only rows matching `pattern` are cast."""
    try:
        cast = pc.cast(s, to)
        mask = _valid(s)
        return mask, cast if s.null_count == 0 else cast.filter(pa.array(mask))
    except pa.ArrowInvalid:
        mask = _bools(pc.match_substring_regex(s, pattern))
        return mask, s.filter(pa.array(mask))


def _ints(s: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Integer text (<= 19 digits, or already int64) -> (int64 values, in-range mask); 19 digits can overflow
    int64, then the vectorized cast fails and values are converted one by one."""
    if pa.types.is_int64(s.type):
        return s.to_numpy(), np.ones(len(s), dtype=bool)
    try:
        return _np(pc.cast(s, pa.int64()), np.int64), np.ones(len(s), dtype=bool)
    except pa.ArrowInvalid:
        vals = [int(x) for x in s.to_pylist()]
        ok = np.array([-(2**63) <= v < 2**63 for v in vals], dtype=bool)
        return np.array([v if fits else 0 for v, fits in zip(vals, ok.tolist(), strict=True)], np.int64), ok


def _unscaled(dec: pa.Array) -> np.ndarray:
    """int64 unscaled values of a null-free decimal128 array (the low word; callers bound the range)."""
    words = np.frombuffer(dec.buffers()[1], dtype="<i8").reshape(-1, 2)
    return words[dec.offset:dec.offset + len(dec), 0].astype(np.int64)


def _to_decimal128(v: np.ndarray) -> pa.Array:
    words = np.empty((v.shape[0], 2), dtype="<i8")
    words[:, 0] = v
    words[:, 1] = v >> 63  # sign extension
    return pa.Array.from_buffers(pa.decimal128(38, 9), v.shape[0], [None, pa.py_buffer(words.tobytes())])


def _parse_ts(arr: pa.Array, name: str, rej: RowRejects) -> np.ndarray:
    n = len(arr)
    t = arr.type
    valid = _valid(arr)
    rej.reject(~valid, Reason.MALFORMED, f"{name} is missing")
    if pa.types.is_integer(t):
        return _np(arr, np.int64)
    if pa.types.is_timestamp(t):
        if t.tz is None:
            rej.reject(np.ones(n, dtype=bool), Reason.MALFORMED, f"{name} is a timestamp without time zone")
            return np.zeros(n, dtype=np.int64)
        return _np(pc.cast(pc.cast(arr, pa.timestamp("ns", tz=t.tz)), pa.int64()), np.int64)
    if not pa.types.is_string(t):
        rej.reject(np.ones(n, dtype=bool), Reason.MALFORMED, f"{name} must be int ns or ISO 8601 text, not {t}")
        return np.zeros(n, dtype=np.int64)
    s = pc.utf8_trim_whitespace(arr)
    out = np.zeros(n, dtype=np.int64)
    is_int, ints = _castable(s, pa.int64(), _SIMPLE_INT)
    out[is_int], fits = _ints(ints)
    overflow = np.zeros(n, dtype=bool)
    overflow[np.flatnonzero(is_int)[~fits]] = True
    rej.reject(overflow, Reason.MALFORMED, f"{name} is out of int64 range", arr)
    rest = np.flatnonzero(valid & ~is_int)
    if rest.size == 0:
        return out
    ok = _iso_fast(s.take(pa.array(rest)), out, rest)
    slow = rest[~ok]  # other ISO spellings (space separator...) and the real rejects
    bad = np.zeros(n, dtype=bool)
    for r, text in zip(slow.tolist(), s.take(pa.array(slow)).to_pylist(), strict=True):
        try:
            out[r] = parse_iso(text)
        except ValueError:
            bad[r] = True
    rej.reject(bad, Reason.MALFORMED, f"{name} is neither int ns nor ISO 8601 with an offset", s)
    return out


def _iso_fast(text: pa.Array, out: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Vectorized ISO 8601 with offset or Z via polars when installed (a test/bench dependency): fills out[rows]
    where it parses and returns that mask; the rest go through market.timeutil.parse_iso one by one."""
    try:
        import polars as pl
    except ImportError:
        return np.zeros(len(text), dtype=bool)
    when = pl.Series(text).str.replace(r"[Zz]$", "+00:00").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="ns", time_zone="UTC", strict=False)
    ok = when.is_not_null().to_numpy()
    out[rows[ok]] = when.dt.epoch("ns").fill_null(0).to_numpy()[ok]
    return ok


def _parse_price(arr: pa.Array, rej: RowRejects, int_is_fixed: bool) -> np.ndarray:
    n = len(arr)
    t = arr.type
    rej.reject(~_valid(arr), Reason.MALFORMED, "price is missing")
    if pa.types.is_integer(t):
        v = _np(arr, np.int64)
        if int_is_fixed:
            return v
        rej.reject(np.abs(v) > _MAX_WHOLE, Reason.MALFORMED, "price out of range", arr)
        return v * PRICE_SCALE
    if pa.types.is_floating(t):
        x = _np(arr, np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, rejected just below
            scaled = x * PRICE_SCALE
        bad = ~(np.abs(scaled) < 2.0**63)  # NaN and inf too
        if bad.any():
            rej.reject(~np.isfinite(x), Reason.NAN_PRICE, "price is NaN or infinite")
            rej.reject(bad, Reason.MALFORMED, "price out of range", arr)  # (NaN rows already taken)
            scaled[bad] = 0.0
        return np.rint(scaled).astype(np.int64)  # half to even, as to_fixed(float)
    if pa.types.is_decimal(t):
        arr = pc.cast(arr, pa.string())
    elif not pa.types.is_string(t):
        rej.reject(np.ones(n, dtype=bool), Reason.MALFORMED, f"price must be a number, not {t}")
        return np.zeros(n, dtype=np.int64)
    s = pc.utf8_trim_whitespace(arr)
    out = np.zeros(n, dtype=np.int64)
    simple, dec = _castable(s, pa.decimal128(38, 9), _SIMPLE_DECIMAL)
    if simple.any():
        dec = pc.cast(dec, pa.decimal128(38, 9))
        big = _bools(pc.greater_equal(pc.abs(dec), pa.scalar(Decimal(_MAX_WHOLE), pa.decimal128(38, 9))))
        out[simple] = np.where(big, 0, _unscaled(dec))
        big_rows = np.zeros(n, dtype=bool)
        big_rows[np.flatnonzero(simple)[big]] = True
        rej.reject(big_rows, Reason.MALFORMED, "price out of range", arr)
    rest = np.flatnonzero(_valid(s) & ~simple)
    nan, bad = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for r, text in zip(rest.tolist(), s.take(pa.array(rest)).to_pylist(), strict=True):
        try:  # exponents, more than 9 decimals (rounded half to even), nan/inf, junk
            d = Decimal(text)
            if d.is_nan() or d.is_infinite():
                nan[r] = True
                continue
            out[r] = to_fixed(d)
        except (InvalidOperation, PriceError):
            bad[r] = True
    rej.reject(nan, Reason.NAN_PRICE, "price is NaN or infinite", s)
    rej.reject(bad, Reason.MALFORMED, "price is not a decimal number in range", s)
    return out


def _parse_size(arr: pa.Array, rej: RowRejects, zero_size: ZeroSize) -> np.ndarray:
    n = len(arr)
    t = arr.type
    rej.reject(~_valid(arr), Reason.BAD_SIZE, "size is missing")
    if pa.types.is_integer(t):
        out = _np(arr, np.int64)
    elif pa.types.is_floating(t):
        x = _np(arr, np.float64)
        ok = np.isfinite(x) & (x == np.floor(x)) & (np.abs(x) < 2.0**63)
        rej.reject(~ok, Reason.BAD_SIZE, "size must be an integer", arr)
        out = np.where(ok, x, 0.0).astype(np.int64)
    elif pa.types.is_string(t) or pa.types.is_decimal(t):
        s = pc.utf8_trim_whitespace(pc.cast(arr, pa.string()))
        out = np.zeros(n, dtype=np.int64)
        simple, ints = _castable(s, pa.int64(), _SIMPLE_INT)
        out[simple], fits = _ints(ints)
        overflow = np.zeros(n, dtype=bool)
        overflow[np.flatnonzero(simple)[~fits]] = True
        rej.reject(overflow, Reason.BAD_SIZE, "size is out of int64 range", arr)
        rest = np.flatnonzero(_valid(s) & ~simple)
        bad = np.zeros(n, dtype=bool)
        for r, text in zip(rest.tolist(), s.take(pa.array(rest)).to_pylist(), strict=True):
            try:  # "5.0", "1e2": integral values are fine
                d = Decimal(text)
                if not d.is_finite() or d != d.to_integral_value() or abs(d) >= 2**63:
                    raise InvalidOperation
                out[r] = int(d)
            except InvalidOperation:
                bad[r] = True
        rej.reject(bad, Reason.BAD_SIZE, "size must be an integer", s)
    else:
        rej.reject(np.ones(n, dtype=bool), Reason.BAD_SIZE, f"size must be an integer, not {t}")
        return np.zeros(n, dtype=np.int64)
    rej.reject(out < 0, Reason.BAD_SIZE, "size is negative", arr)
    if zero_size == "reject":
        rej.reject(out == 0, Reason.BAD_SIZE, "size is zero (zero_size='reject')")
    return out


def _parse_kind(arr: pa.Array, rej: RowRejects) -> None:
    """Mark non-trade rows _NON_TRADE; unknown kinds are rejected."""
    if pa.types.is_integer(arr.type):
        k = _np(arr, np.int64, -1)
        trade, quote = k == 0, k == 1
    else:
        s = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(arr, pa.string())))
        trade = _bools(pc.equal(s, "trade"))
        quote = _bools(pc.equal(s, "quote"))
    rej.reason[quote] = _NON_TRADE
    rej.reject(~(trade | quote), Reason.MALFORMED, "kind must be trade or quote (or 0/1)", arr)


def parse_ticks(table: pa.Table, default_instrument: str, zero_size: ZeroSize = "keep") -> tuple[FileTicks,
                                                                                                 RowRejects]:
    """Accepted trades of a table in either input layout, plus the verdict on every row."""
    cols = set(table.column_names)
    tick_file = "ts_event" in cols
    ts_name = "ts_event" if tick_file else "ts"
    missing = [c for c in (ts_name, "price", "size") if c not in cols]
    if tick_file:
        missing += [c for c in ("kind", "instrument") if c not in cols]
    if missing:
        raise ValueError(f"input lacks column(s) {missing}; expected ts, price, size[, instrument] or a commodex "
                         f"tick file (ts_event, kind, instrument, price, size); got {table.column_names}")
    rej = RowRejects(np.zeros(table.num_rows, dtype=np.uint8))
    if tick_file:
        _parse_kind(_column(table, "kind"), rej)
    ts = _parse_ts(_column(table, ts_name), ts_name, rej)
    if "instrument" in cols:
        idx, values = _dictionary(table.column("instrument"))
        blank = np.array([v is None or not v.strip() for v in values] + [True], dtype=bool)  # [-1]: null
        rej.reject(blank[idx], Reason.MALFORMED, "instrument is missing")
    else:
        idx, values = np.zeros(table.num_rows, dtype=np.int64), [default_instrument]
    price = _parse_price(_column(table, "price"), rej, int_is_fixed=tick_file)
    size = _parse_size(_column(table, "size"), rej, zero_size)
    keep = rej.reason == 0
    codes, names = _local_codes(idx[keep], values)
    return FileTicks(names, codes, ts[keep], price[keep], size[keep]), rej


def _dictionary(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    """A column as (int64 index per row, -1 for null; distinct values). Parquet string columns usually come
    dictionary-encoded already, which saves hashing millions of strings."""
    if pa.types.is_dictionary(col.type):
        arr = col.unify_dictionaries().combine_chunks()
        values = pc.cast(arr.dictionary, pa.string()).to_pylist()
        if len(set(values)) == len(values):
            return _np(arr.indices, np.int64, -1), values
        col = pa.chunked_array([arr.dictionary_decode()])
    enc = pc.dictionary_encode(pc.cast(col.combine_chunks(), pa.string()))
    return _np(enc.indices, np.int64, -1), enc.dictionary.to_pylist()


def _local_codes(idx: np.ndarray, values: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """Dictionary indices of accepted rows -> int32 indices into the sorted names those rows use."""
    used = np.flatnonzero(np.bincount(idx, minlength=len(values)))
    names = sorted(str(values[u]) for u in used)
    lut = np.full(len(values), -1, dtype=np.int32)
    lut[sorted(used.tolist(), key=lambda u: str(values[u]))] = np.arange(len(used), dtype=np.int32)
    return lut[idx], names


# -- aggregation (the fast batch path) ------------------------------------------------------------------------


def sort_ticks(ticks: FileTicks) -> FileTicks:
    """Rows in (instrument, ts) order, ties in file order; no copy when already so."""
    inst, ts = ticks.instrument, ticks.ts
    if bk.is_sorted_by_key(inst, ts):
        return ticks
    # A time-ordered file needs only a stable counting sort by instrument; else lexsort (stable).
    order = bk.stable_order_by_key(inst, len(ticks.names)) if bk.is_nondecreasing(ts) else np.lexsort((ts, inst))
    return FileTicks(ticks.names, inst[order], ts[order], ticks.price[order], ticks.size[order])


def compute_bars(ticks: FileTicks, interval_ns: int) -> FileBars:
    """OHLCV bars of all trades, by (instrument, start)."""
    t = sort_ticks(ticks)
    out = np.empty((bk.count_batch_bars(t.instrument, t.ts, interval_ns), bk.N_OUT_FIELDS), dtype=np.int64)
    nb = bk.batch_bars(t.instrument, t.ts, t.price, t.size, interval_ns, out)
    o = out[:nb]
    return FileBars(
        ticks.names, interval_ns, o[:, bk.O_INSTRUMENT].astype(np.int32), o[:, bk.O_START].copy(),
        o[:, bk.O_OPEN].copy(), o[:, bk.O_HIGH].copy(), o[:, bk.O_LOW].copy(), o[:, bk.O_CLOSE].copy(),
        o[:, bk.O_VOLUME].copy(), o[:, bk.O_VWAP].copy(), o[:, bk.O_TRADES].copy(),
    )


# -- writing --------------------------------------------------------------------------------------------------


def format_fixed(values: np.ndarray) -> list[str]:
    """Fixed point -> minimal decimal text ('1313.7', '-37.63', '1300')."""
    out = []
    for v in values.tolist():
        q, r = divmod(abs(v), PRICE_SCALE)
        text = f"{q}.{r:09d}".rstrip("0").rstrip(".") if r else str(q)
        out.append("-" + text if v < 0 else text)
    return out


def format_starts(start: np.ndarray, interval_ns: int) -> list[str] | np.ndarray:
    if interval_ns % NS_PER_S == 0:
        secs = (start // NS_PER_S).astype("datetime64[s]")
        return np.char.add(np.datetime_as_string(secs, unit="s"), "Z")
    return [to_iso(x) for x in start.tolist()]


def bars_table(bars: FileBars, parquet: bool) -> pa.Table:
    names = pa.array(bars.names, pa.string()).take(pa.array(bars.instrument))
    no_volume = pa.array(bars.volume == 0)
    if parquet:
        start = pa.array(bars.start, pa.timestamp("ns", tz="UTC"))
        prices = [_to_decimal128(getattr(bars, c)) for c in ("open", "high", "low", "close", "vwap")]
    else:
        start = pa.array(format_starts(bars.start, bars.interval_ns), pa.string())
        prices = [pa.array(format_fixed(getattr(bars, c)), pa.string()) for c in ("open", "high", "low", "close",
                                                                                   "vwap")]
    vwap = pc.if_else(no_volume, pa.nulls(len(bars), prices[4].type), prices[4])
    return pa.table([names, start, *prices[:4], pa.array(bars.volume), vwap, pa.array(bars.trades)],
                    names=list(OUTPUT_COLUMNS))


def _write(table: pa.Table, path: Path) -> None:
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        pq.write_table(table, path)
        return
    # csv module: quotes only fields that need it (Arrow's writer quotes every string), nulls as empty fields
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(table.column_names)
        w.writerows(zip(*(c.to_pylist() for c in table.columns), strict=True))


def rejects_table(table: pa.Table, rej: RowRejects) -> pa.Table:
    rows = np.flatnonzero((rej.reason != 0) & (rej.reason != _NON_TRADE))
    idx = pa.array(rows)
    cols = [pa.array(rows, pa.int64()), pa.array([Reason(int(rej.reason[r])).label for r in rows], pa.string()),
            pa.array([rej.detail[int(r)] for r in rows], pa.string())]
    cols += [pc.cast(_column(table, c).take(idx), pa.string()) for c in table.column_names]
    names = ["row", "reason", "detail"] + [f"raw_{c}" for c in table.column_names]
    return pa.table(cols, names=names)


def rejects_path_for(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".rejects.csv")


def bars_file(input_path: str | Path, interval: str, out_path: str | Path, *, default_instrument: str | None = None,
              zero_size: ZeroSize = "keep") -> BarFileStats:
    """Bars of a tick file to CSV/Parquet (by extension); rejected rows to `<out>.rejects.csv`."""
    src, dst = Path(input_path), Path(out_path)
    interval_ns = parse_interval(interval)
    table = read_table(src)
    ticks, rej = parse_ticks(table, default_instrument or src.stem, zero_size)
    bars = compute_bars(ticks, interval_ns)
    _write(bars_table(bars, dst.suffix.lower() in _PARQUET_SUFFIXES), dst)
    rejected = rejects_table(table, rej)
    rpath = rejects_path_for(dst)
    _write(rejected, rpath)
    labels = rejected.column("reason").to_pylist()
    by_reason = {label: labels.count(label) for label in sorted(set(labels))}
    return BarFileStats(
        input_path=str(src), out_path=str(dst), rejects_path=str(rpath), interval_ns=interval_ns,
        rows=table.num_rows, trades=len(ticks), non_trades=int((rej.reason == _NON_TRADE).sum()),
        rejected=rejected.num_rows, rejects_by_reason=by_reason, bars=len(bars),
        instruments=len(ticks.names),
    )
