"""commodex tick files: Parquet (zstd) or CSV in one Arrow schema, and the edge conversion to TickColumns.

Rows are in delivery order. Prices are decimal floats in the file and become fixed point at ingest; rows
that cannot enter the pipeline (undecodable raw message, unknown instrument, NaN/inf price, unknown kind,
missing field) come out as DeadLetters with a market.rejects reason. Accepted rows keep their order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from market.codec import decode_tick_or_dead_letter
from market.columns import KIND_QUOTE, KIND_TRADE, Ingested, TickColumns
from market.events import DeadLetter, QuoteTick, TradeTick
from market.fixedpoint import PRICE_SCALE
from market.instruments import Registry
from market.rejects import DETAIL, Reason

TICK_SCHEMA = pa.schema([
    pa.field("instrument", pa.string()),
    pa.field("kind", pa.string()),  # "trade" | "quote"
    pa.field("ts_event", pa.int64()),
    pa.field("ts_recv", pa.int64()),
    pa.field("seq", pa.int64()),
    pa.field("price", pa.float64()),
    pa.field("size", pa.int64()),
    pa.field("bid", pa.float64()),
    pa.field("ask", pa.float64()),
    pa.field("bid_size", pa.int64()),
    pa.field("ask_size", pa.int64()),
    pa.field("raw", pa.string()),  # non-null: an undecodable wire message as received
])

KINDS = ("trade", "quote")  # position = market.columns kind code
_PRICE_LIMIT = (2**63 - 1) / PRICE_SCALE  # largest price whose fixed point fits int64
_INT_COLS = ("ts_event", "ts_recv", "seq", "size", "bid_size", "ask_size")
_FLOAT_COLS = ("price", "bid", "ask")
SOURCE = "tickfile"


def write_ticks(table: pa.Table, path: str | Path) -> None:
    pq.write_table(table.select(TICK_SCHEMA.names).cast(TICK_SCHEMA), str(path), compression="zstd")


def read_table(path: str | Path) -> pa.Table:
    """A tick file (.parquet, or .csv with a header of the same columns) in TICK_SCHEMA."""
    return _read(Path(path), dictionary=False)


def read_ticks(path: str | Path, registry: Registry, source: str = SOURCE) -> Ingested:
    return ingest(_read(Path(path), dictionary=True), registry, source)


def _read(path: Path, dictionary: bool) -> pa.Table:
    if path.suffix.lower() == ".csv":
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={f.name: f.type for f in TICK_SCHEMA},
                include_columns=TICK_SCHEMA.names,
                null_values=[""],  # "nan" must stay a NaN price, not a missing one
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        return table.select(TICK_SCHEMA.names)
    if dictionary:
        # the hot path reads low-cardinality strings as dictionaries and maps the dictionary only
        table = pq.read_table(path, columns=TICK_SCHEMA.names, read_dictionary=["instrument", "kind"])
        return table.select(TICK_SCHEMA.names)
    return pq.read_table(path, columns=TICK_SCHEMA.names).select(TICK_SCHEMA.names).cast(TICK_SCHEMA)


def _lookup(col: pa.ChunkedArray, values: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(index of each row's string in `values` or -1, null mask), mapping dictionaries once per chunk."""
    value_set = pa.array(values, pa.string())
    out: list[np.ndarray] = []
    nulls: list[np.ndarray] = []
    res: np.ndarray
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            d = pc.index_in(chunk.dictionary.cast(pa.string()), value_set=value_set).fill_null(-1)
            dmap = d.to_numpy(zero_copy_only=False).astype(np.int32)
            idx = chunk.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            res = dmap[idx] if dmap.shape[0] else np.full(len(chunk), -1, dtype=np.int32)
        else:
            res = pc.index_in(chunk, value_set=value_set).fill_null(-1).to_numpy(zero_copy_only=False)
        out.append(np.asarray(res, dtype=np.int32))
        nulls.append(_null_mask(chunk))
    if not out:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=bool)
    return np.concatenate(out), np.concatenate(nulls)


def _null_mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return pc.is_null(arr).to_numpy(zero_copy_only=False)


def _numbers(col: pa.ChunkedArray, fill: float | int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    nulls = _null_mask(col)
    if nulls.any():
        col = col.fill_null(fill)
    out: np.ndarray = np.asarray(col.to_numpy(), dtype=dtype)
    if not out.flags.writeable:  # zero-copy views of Arrow memory are read-only; kernels get owned arrays
        out = out.copy()
    return out, nulls


def ingest(table: pa.Table, registry: Registry, source: str = SOURCE) -> Ingested:
    """Convert a tick table to fixed-point TickColumns, rejecting at the edge (vectorised)."""
    n = table.num_rows
    inst, inst_null = _lookup(table.column("instrument"), registry.ids)
    kind, kind_null = _lookup(table.column("kind"), KINDS)
    raw_col = table.column("raw")
    has_raw = ~_null_mask(raw_col)

    ints = {name: _numbers(table.column(name), 0, np.int64) for name in _INT_COLS}
    floats = {name: _numbers(table.column(name), np.nan, np.float64) for name in _FLOAT_COLS}
    is_trade = kind == KIND_TRADE
    is_quote = kind == KIND_QUOTE

    missing = inst_null | kind_null | ints["ts_event"][1] | ints["ts_recv"][1] | ints["seq"][1]
    missing |= is_trade & (floats["price"][1] | ints["size"][1])
    missing |= is_quote & (floats["bid"][1] | floats["ask"][1] | ints["bid_size"][1] | ints["ask_size"][1])
    fixed: dict[str, np.ndarray] = {}
    ok_price: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore"):
        for name in _FLOAT_COLS:
            x = floats[name][0]
            ok = np.abs(x) < _PRICE_LIMIT  # False for NaN and inf
            ok_price[name] = ok
            y = x * PRICE_SCALE if ok.all() else np.where(ok, x, 0.0) * PRICE_SCALE
            np.rint(y, out=y)  # = np.round(x * 1e9): half to even
            fixed[name] = y.astype(np.int64)
    bad_price = (is_trade & ~ok_price["price"]) | (is_quote & ~(ok_price["bid"] & ok_price["ask"]))

    reason = np.zeros(n, dtype=np.uint8)
    reason[bad_price] = Reason.NAN_PRICE
    reason[inst < 0] = Reason.UNKNOWN_INSTRUMENT
    reason[(kind < 0) | missing] = Reason.MALFORMED
    reason[has_raw] = Reason.OK  # decided below, one by one

    cols = TickColumns(
        instrument=inst, kind=np.where(kind < 0, 0, kind).astype(np.int8),
        ts_event=ints["ts_event"][0], ts_recv=ints["ts_recv"][0], seq=ints["seq"][0],
        price=fixed["price"], size=ints["size"][0], bid=fixed["bid"], ask=fixed["ask"],
        bid_size=ints["bid_size"][0], ask_size=ints["ask_size"][0],
    )
    dead: list[tuple[int, DeadLetter]] = []
    raw_rows = np.flatnonzero(has_raw)
    if raw_rows.shape[0]:
        raws = raw_col.take(pa.array(raw_rows)).to_pylist()
        for i, text in zip(raw_rows.tolist(), raws, strict=True):
            dl = _decode_raw(cols, i, text, registry, source)
            if dl is not None:
                reason[i] = Reason.MALFORMED if dl.reason == Reason.MALFORMED.label else Reason.UNKNOWN_INSTRUMENT
                dead.append((i, dl))

    rejected = np.flatnonzero((reason != Reason.OK) & ~has_raw)
    if rejected.shape[0]:
        records = table.take(pa.array(rejected)).to_pylist()
        for i, rec in zip(rejected.tolist(), records, strict=True):
            r = Reason(int(reason[i]))
            dead.append((i, DeadLetter(
                source=source, reason=r.label, detail=_detail(r, rec), raw=json.dumps(rec, default=str),
                ts_recv=int(rec.get("ts_recv") or 0), instrument_id=str(rec.get("instrument") or ""),
                ts_event=int(rec.get("ts_event") or 0),
            )))
    dead.sort(key=lambda p: p[0])
    accepted = reason == Reason.OK
    if not accepted.all():
        cols = cols.take(accepted)
    assert len(cols) + len(dead) == n, "every row is accepted or dead-lettered"
    return Ingested(columns=cols, dead_letters=[d for _, d in dead])


def _detail(r: Reason, rec: dict) -> str:
    if r == Reason.MALFORMED:
        if rec.get("kind") not in KINDS:
            return f"unknown kind {rec.get('kind')!r}"
        return "missing field for a " + str(rec.get("kind"))
    if r == Reason.UNKNOWN_INSTRUMENT:
        return f"{DETAIL[r]}: {rec.get('instrument')!r}"
    return DETAIL[r]


def _decode_raw(cols: TickColumns, i: int, text: str, registry: Registry, source: str) -> DeadLetter | None:
    """Decode row i's raw wire message into the columns; a DeadLetter when it cannot enter the pipeline."""
    ts_recv = int(cols.ts_recv[i])
    tick = decode_tick_or_dead_letter(text.encode(), ts_recv, source)
    if isinstance(tick, DeadLetter):
        return tick
    idx = registry.index_of(tick.instrument_id)
    if idx < 0:
        return DeadLetter(source=source, reason=Reason.UNKNOWN_INSTRUMENT.label,
                          detail=f"{DETAIL[Reason.UNKNOWN_INSTRUMENT]}: {tick.instrument_id!r}", raw=text,
                          ts_recv=ts_recv, instrument_id=tick.instrument_id, ts_event=tick.ts_event)
    cols.instrument[i] = idx
    cols.ts_event[i] = tick.ts_event
    cols.ts_recv[i] = tick.ts_recv or ts_recv
    cols.seq[i] = tick.seq
    if isinstance(tick, TradeTick):
        cols.kind[i] = KIND_TRADE
        cols.price[i], cols.size[i] = tick.price, tick.size
    elif isinstance(tick, QuoteTick):
        cols.kind[i] = KIND_QUOTE
        cols.bid[i], cols.ask[i] = tick.bid, tick.ask
        cols.bid_size[i], cols.ask_size[i] = tick.bid_size, tick.ask_size
    return None
