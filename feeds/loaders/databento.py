"""Databento DBN files (plain or zstd) -> ticks and bars, with a configurable instrument mapping.

Two paths give the same ticks:
- `load_dbn`: records decoded by `databento-dbn` (any DBN version and schema, mixed record types) ->
  TradeTick / QuoteTick / Bar lists. Records with no tick form (definitions, statistics, status, MBO order
  events, ...) are counted in `unconverted` by kind.
- `load_dbn_columns`: the hot path for single-schema trade/quote files: the record bytes are viewed as a numpy
  structured array (DBN records of one schema are fixed size) and become `TickColumns` without a Python
  object per record. Anything else falls back to `load_dbn`.

Mapping: each record's instrument_id -> raw symbol through the file's symbology (metadata mappings, by the
date of ts_recv, else ts_event, as Databento's own symbol mapping does) -> registry id through
`DatabentoConfig.symbols` (exact) or `symbol_prefixes` (longest prefix). Unmapped -> DeadLetter
"unknown_instrument". Prices are already 1e-9 fixed point, as in commodex. Conversion rules:
- trades (mbp-0): TradeTick; side B/A = buy/sell aggressor; seq = venue sequence.
- mbp-1 / tbbo / mbp-10 / bbo-1s / bbo-1m: QuoteTick of level 0; an mbp record with action T also gives a
  TradeTick after it. A side without a price (UNDEF_PRICE) -> DeadLetter "bad_quote".
- mbo: action T -> TradeTick; other actions are order-book events (unconverted).
- ohlcv-*: Bar(start = ts_event, interval from the record type); DBN carries no VWAP or trade count, so
  vwap = 0 and trades = 0; ts_recv = bar end (the file has no receive time; keeps replays deterministic).
- bytes after the last whole record (a cut-off file) -> DeadLetter "truncated".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import databento_dbn as dbn
import msgspec
import numpy as np
import pyarrow as pa

from market.columns import KIND_QUOTE, KIND_TRADE, TickColumns
from market.config import Config
from market.events import Bar, DeadLetter, QuoteTick, Side, TradeTick
from market.instruments import Registry, default_registry
from market.rejects import DETAIL, Reason
from market.timeutil import NS_PER_S

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_TIMESTAMP = dbn.UNDEF_TIMESTAMP
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_NS_PER_DAY = 86_400 * NS_PER_S
_BAR_INTERVAL_NS = {32: NS_PER_S, 33: 60 * NS_PER_S, 34: 3600 * NS_PER_S, 35: _NS_PER_DAY, 36: _NS_PER_DAY}
_SCHEMA_INTERVAL_NS = {"ohlcv-1s": NS_PER_S, "ohlcv-1m": 60 * NS_PER_S, "ohlcv-1h": 3600 * NS_PER_S,
                       "ohlcv-1d": _NS_PER_DAY, "ohlcv-eod": _NS_PER_DAY}
_AGGRESSOR = {"B": Side.BUY, "A": Side.SELL}
_QUOTE_RTYPES = frozenset({1, 10, 195, 196})  # mbp-1 (and tbbo), mbp-10, bbo-1s, bbo-1m
_MBP_RTYPES = frozenset({1, 10})


class DatabentoConfig(Config, frozen=True):
    symbols: dict[str, str] = msgspec.field(default_factory=dict)  # raw symbol -> registry id
    symbol_prefixes: dict[str, str] = msgspec.field(default_factory=dict)  # "BRN " -> "B.ICE" (longest wins)
    source: str = "databento"

    def registry_id(self, symbol: str) -> str | None:
        iid = self.symbols.get(symbol)
        if iid is not None:
            return iid
        best = ""
        for prefix in self.symbol_prefixes:
            if symbol.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.symbol_prefixes[best] if best else None


@dataclass(slots=True)
class DbnData:
    metadata: dbn.Metadata
    records: list[dbn.DBNRecord]
    symbols: SymbolMap
    trailing: bytes = b""  # bytes after the last whole record (a cut-off file)


@dataclass(slots=True)
class DbnLoad:
    ticks: list[TradeTick | QuoteTick]
    bars: list[Bar]
    dead_letters: list[DeadLetter]
    unconverted: dict[str, int]  # records with no tick/bar form, by kind ("definition", "mbo:A", ...)
    records: int


@dataclass(slots=True)
class ColumnLoad:
    columns: TickColumns
    dead_letters: list[DeadLetter]
    unconverted: dict[str, int]
    records: int
    fast: bool  # True: numpy view of the record bytes; False: fell back to decoded records


@dataclass(slots=True)
class SymbolMap:
    """instrument_id -> raw symbol over date intervals (half-open [start, end) in UTC ns)."""

    intervals: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, metadata: dbn.Metadata) -> SymbolMap:
        out: dict[int, list[tuple[int, int, str]]] = {}
        for raw_symbol, spans in (metadata.mappings or {}).items():
            for span in spans:
                target = str(span["symbol"])
                if not target.isdigit():  # an interval without an instrument id maps nothing
                    continue
                out.setdefault(int(target), []).append(
                    (_date_ns(span["start_date"]), _date_ns(span["end_date"]), raw_symbol))
        return cls(out)

    def symbol(self, instrument_id: int, ts: int) -> str | None:
        for start, end, sym in self.intervals.get(instrument_id, ()):
            if start <= ts < end:
                return sym
        return None


def _date_ns(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * NS_PER_S


def _index_ts(rec: Any) -> int:
    ts = getattr(rec, "ts_recv", None)
    return int(ts) if ts is not None and ts != UNDEF_TIMESTAMP else int(rec.ts_event)


def read_bytes(source: str | Path | bytes) -> bytes:
    """The uncompressed DBN stream of a file (or of bytes), zstd detected by its magic number."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if data.startswith(_ZSTD_MAGIC):
        stream = pa.CompressedInputStream(pa.BufferReader(data), "zstd")
        data = stream.read()
    return data


def read_dbn(source: str | Path | bytes) -> DbnData:
    """All records of a DBN file, decoded by databento-dbn (older versions upgraded to the current one)."""
    dec = dbn.DBNDecoder()
    try:
        dec.write(read_bytes(source))
        decoded = dec.decode()
    except dbn.DBNError as e:
        raise ValueError(f"not a decodable DBN stream: {e}") from e
    if not decoded or not isinstance(decoded[0], dbn.Metadata):
        raise ValueError("not a DBN stream with metadata")
    metadata = decoded[0]
    # only the first item of a decoded stream is its Metadata
    return DbnData(metadata, cast(list[dbn.DBNRecord], decoded[1:]), SymbolMap.from_metadata(metadata),
                   bytes(dec.buffer()))


class _Converter:
    def __init__(self, config: DatabentoConfig, registry: Registry, symbols: SymbolMap, schema: str) -> None:
        self.config = config
        self.registry = registry
        self.symbols = symbols
        self.schema = schema
        self.ticks: list[TradeTick | QuoteTick] = []
        self.bars: list[Bar] = []
        self.dead: list[DeadLetter] = []
        self.unconverted: Counter[str] = Counter()
        self._ids: dict[tuple[int, str | None], str | None] = {}

    def instrument(self, rec: Any) -> str | None:
        sym = self.symbols.symbol(int(rec.instrument_id), _index_ts(rec))
        key = (int(rec.instrument_id), sym)
        if key not in self._ids:
            iid = self.config.registry_id(sym) if sym is not None else None
            self._ids[key] = iid if iid is not None and iid in self.registry else None
        iid = self._ids[key]
        if iid is None:
            self._reject(rec, Reason.UNKNOWN_INSTRUMENT,
                         f"{DETAIL[Reason.UNKNOWN_INSTRUMENT]}: instrument_id {rec.instrument_id} = {sym!r} is not "
                         "mapped", "")
        return iid

    def _reject(self, rec: Any, reason: Reason, detail: str, iid: str) -> None:
        self.dead.append(DeadLetter(
            source=self.config.source, reason=reason.label, detail=detail, raw=repr(rec)[:4096],
            ts_recv=_index_ts(rec), instrument_id=iid, ts_event=int(rec.ts_event)))

    def add(self, rec: Any) -> None:
        # Any: which fields a record has depends on its rtype, which the stubs' record union cannot express
        rtype = int(rec.rtype)
        if isinstance(rec, dbn.OHLCVMsg):
            self._bar(rec, rtype)
        elif rtype == 0 or (rtype == 160 and rec.action == "T"):
            iid = self.instrument(rec)
            if iid is not None:
                self._trade(rec, iid)
        elif rtype in _QUOTE_RTYPES:
            iid = self.instrument(rec)
            if iid is None:
                return
            self._quote(rec, iid)
            if rtype in _MBP_RTYPES and rec.action == "T":
                self._trade(rec, iid)
        elif rtype == 160:
            self.unconverted[f"mbo:{rec.action.value}"] += 1
        else:
            self.unconverted[dbn.RType(rtype).name.lower() if rtype in _RTYPE_VALUES else f"rtype:{rtype}"] += 1

    def _trade(self, rec: Any, iid: str) -> None:
        if rec.price == UNDEF_PRICE:
            self._reject(rec, Reason.NAN_PRICE, "trade without a price (UNDEF_PRICE)", iid)
            return
        self.ticks.append(TradeTick(instrument_id=iid, price=int(rec.price), size=int(rec.size),
                                    ts_event=int(rec.ts_event), ts_recv=int(rec.ts_recv), seq=int(rec.sequence),
                                    aggressor=_AGGRESSOR.get(rec.side.value, Side.NONE)))

    def _quote(self, rec: Any, iid: str) -> None:
        lvl = rec.levels[0]
        if lvl.bid_px == UNDEF_PRICE or lvl.ask_px == UNDEF_PRICE:
            self._reject(rec, Reason.BAD_QUOTE, "level 0 has no bid or no ask price (UNDEF_PRICE)", iid)
            return
        self.ticks.append(QuoteTick(instrument_id=iid, bid=int(lvl.bid_px), ask=int(lvl.ask_px),
                                    bid_size=int(lvl.bid_sz), ask_size=int(lvl.ask_sz), ts_event=int(rec.ts_event),
                                    ts_recv=int(rec.ts_recv), seq=int(rec.sequence)))

    def _bar(self, rec: dbn.OHLCVMsg, rtype: int) -> None:
        interval = _BAR_INTERVAL_NS.get(rtype) or _SCHEMA_INTERVAL_NS.get(self.schema)
        if interval is None:
            self.unconverted[f"ohlcv:rtype {rtype} with schema {self.schema}"] += 1
            return
        iid = self.instrument(rec)
        if iid is None:
            return
        start = int(rec.ts_event)
        self.bars.append(Bar(instrument_id=iid, interval_ns=interval, start=start, open=int(rec.open),
                             high=int(rec.high), low=int(rec.low), close=int(rec.close), volume=int(rec.volume),
                             vwap=0, trades=0, ts_event=start + interval, ts_recv=start + interval))


_RTYPE_VALUES = frozenset(int(getattr(dbn.RType, n)) for n in dir(dbn.RType) if n.isupper())


def load_dbn(source: str | Path | bytes | DbnData, config: DatabentoConfig | None = None,
             registry: Registry | None = None) -> DbnLoad:
    data = source if isinstance(source, DbnData) else read_dbn(source)
    conv = _Converter(config or DatabentoConfig(), registry or default_registry(), data.symbols,
                      str(data.metadata.schema) if data.metadata.schema is not None else "")
    for rec in data.records:
        conv.add(rec)
    if data.trailing:
        last = data.records[-1].ts_event if data.records else 0
        conv.dead.append(DeadLetter(source=conv.config.source, reason="truncated",
                                    detail=f"{len(data.trailing)} bytes after the last whole record",
                                    raw=data.trailing[:2048].hex(), ts_recv=int(last), ts_event=int(last)))
    return DbnLoad(conv.ticks, conv.bars, conv.dead, dict(conv.unconverted), len(data.records))


# -- the columnar path ------------------------------------------------------------------------------------

_HD = [("length", "u1"), ("rtype", "u1"), ("publisher_id", "<u2"), ("instrument_id", "<u4"), ("ts_event", "<u8")]
_LEVEL = [("bid_px", "<i8"), ("ask_px", "<i8"), ("bid_sz", "<u4"), ("ask_sz", "<u4"), ("bid_ct", "<u4"),
          ("ask_ct", "<u4")]
_TRADE = _HD + [("price", "<i8"), ("size", "<u4"), ("action", "S1"), ("side", "S1"), ("flags", "u1"),
                ("depth", "u1"), ("ts_recv", "<u8"), ("ts_in_delta", "<i4"), ("sequence", "<u4")]
_BBO = _HD + [("price", "<i8"), ("size", "<u4"), ("_r1", "u1"), ("side", "S1"), ("flags", "u1"), ("_r2", "u1"),
              ("ts_recv", "<u8"), ("_r3", "V4"), ("sequence", "<u4")] + _LEVEL
_MBO = _HD + [("order_id", "<u8"), ("price", "<i8"), ("size", "<u4"), ("flags", "u1"), ("channel_id", "u1"),
              ("action", "S1"), ("side", "S1"), ("ts_recv", "<u8"), ("ts_in_delta", "<i4"), ("sequence", "<u4")]
# record layouts shared by DBN v1-v3 for these schemas: rtype -> numpy dtype
DTYPES: dict[int, np.dtype] = {
    0: np.dtype(_TRADE),
    1: np.dtype(_TRADE + _LEVEL),
    10: np.dtype(_TRADE + [(f"{k}_{i:02d}", t) for i in range(10) for k, t in _LEVEL]),
    160: np.dtype(_MBO),
    195: np.dtype(_BBO),
    196: np.dtype(_BBO),
}


def record_array(data: bytes) -> tuple[dbn.Metadata, np.ndarray] | None:
    """(metadata, structured view of the records) when every record has one known fixed-size layout."""
    if data[:3] != b"DBN" or len(data) < 8:
        raise ValueError("not an uncompressed DBN stream")
    meta_len = int.from_bytes(data[4:8], "little")
    body = memoryview(data)[8 + meta_len:]
    if not body.nbytes:
        return None
    rtype, length = body[1], body[0] * 4
    dtype = DTYPES.get(rtype)
    if dtype is None or dtype.itemsize != length or body.nbytes % length:
        return None
    raw = np.frombuffer(body, dtype=np.uint8).reshape(-1, length)
    if not ((raw[:, 0] == body[0]).all() and (raw[:, 1] == rtype).all()):
        return None  # mixed record types (e.g. a live stream with system or mapping records)
    metadata = dbn.Metadata.decode(bytes(data[:8 + meta_len]))
    return metadata, np.frombuffer(body, dtype=dtype)


def load_dbn_columns(source: str | Path | bytes, config: DatabentoConfig | None = None,
                     registry: Registry | None = None) -> ColumnLoad:
    config = config or DatabentoConfig()
    registry = registry or default_registry()
    data = read_bytes(source)
    view = record_array(data)
    if view is None or int(view[1]["rtype"][0]) == 160:  # MBO needs per-action handling: decoded path
        load = load_dbn(data, config, registry)
        return ColumnLoad(TickColumns.from_ticks(load.ticks, registry), load.dead_letters,
                          {**load.unconverted, **({"ohlcv": len(load.bars)} if load.bars else {})}, load.records,
                          fast=False)
    metadata, rec = view
    return _columns(rec, SymbolMap.from_metadata(metadata), config, registry)


def _columns(rec: np.ndarray, symbols: SymbolMap, config: DatabentoConfig, registry: Registry) -> ColumnLoad:
    n = rec.shape[0]
    rtype = int(rec["rtype"][0])
    ts_event = rec["ts_event"].astype(np.int64)
    ts_recv = rec["ts_recv"].astype(np.int64)
    index_ts = np.where(rec["ts_recv"] == UNDEF_TIMESTAMP, ts_event, ts_recv)
    inst = np.full(n, -1, dtype=np.int32)
    iids = rec["instrument_id"]
    for instrument_id, spans in symbols.intervals.items():
        rows = iids == instrument_id
        if not rows.any():
            continue
        for start, end, sym in spans:
            iid = config.registry_id(sym)
            if iid is not None and iid in registry:
                inst[rows & (index_ts >= start) & (index_ts < end)] = registry.index_of(iid)
    seq = rec["sequence"].astype(np.int64)
    reason = np.zeros(n, dtype=np.uint8)  # per record: why its quote (or trade) row is rejected
    reason[inst < 0] = Reason.UNKNOWN_INSTRUMENT
    if rtype == 0:
        is_quote = np.zeros(n, dtype=bool)
        is_trade = np.ones(n, dtype=bool)
        trade_reason = np.where((reason == 0) & (rec["price"] == UNDEF_PRICE), Reason.NAN_PRICE, reason)
    else:
        bid_px = rec["bid_px" if rtype != 10 else "bid_px_00"]
        ask_px = rec["ask_px" if rtype != 10 else "ask_px_00"]
        is_quote = np.ones(n, dtype=bool)
        reason[(reason == 0) & ((bid_px == UNDEF_PRICE) | (ask_px == UNDEF_PRICE))] = Reason.BAD_QUOTE
        is_trade = (rec["action"] == b"T") if rtype in _MBP_RTYPES else np.zeros(n, dtype=bool)
        trade_reason = np.where(inst < 0, Reason.UNKNOWN_INSTRUMENT,
                                np.where(rec["price"] == UNDEF_PRICE, Reason.NAN_PRICE, 0)).astype(np.uint8)
    # row order: per record its quote row, then its trade row (what load_dbn emits)
    q_ok = is_quote & (reason == 0)
    t_ok = is_trade & (trade_reason == 0)
    per_record = q_ok.astype(np.int64) + t_ok
    first = np.cumsum(per_record) - per_record
    total = int(per_record.sum())
    out = TickColumns.empty(total)
    qi = first[q_ok]
    ti = first[t_ok] + q_ok[t_ok]
    for rows, mask, kind in ((qi, q_ok, KIND_QUOTE), (ti, t_ok, KIND_TRADE)):
        out.instrument[rows] = inst[mask]
        out.kind[rows] = kind
        out.ts_event[rows] = ts_event[mask]
        out.ts_recv[rows] = ts_recv[mask]
        out.seq[rows] = seq[mask]
    if qi.size:
        lvl = "" if rtype != 10 else "_00"
        out.bid[qi] = rec["bid_px" + lvl][q_ok]
        out.ask[qi] = rec["ask_px" + lvl][q_ok]
        out.bid_size[qi] = rec["bid_sz" + lvl][q_ok]
        out.ask_size[qi] = rec["ask_sz" + lvl][q_ok]
    if ti.size:
        out.price[ti] = rec["price"][t_ok]
        out.size[ti] = rec["size"][t_ok]
    dead = _column_dead_letters(rec, symbols, config, is_quote & (reason != 0), reason,
                                is_trade & (trade_reason != 0), trade_reason)
    return ColumnLoad(out, dead, {}, n, fast=True)


_REASON_DETAIL = {
    Reason.UNKNOWN_INSTRUMENT: "",
    Reason.BAD_QUOTE: "level 0 has no bid or no ask price (UNDEF_PRICE)",
    Reason.NAN_PRICE: "trade without a price (UNDEF_PRICE)",
}


def _column_dead_letters(rec: np.ndarray, symbols: SymbolMap, config: DatabentoConfig, q_bad: np.ndarray,
                         q_reason: np.ndarray, t_bad: np.ndarray, t_reason: np.ndarray) -> list[DeadLetter]:
    """Dead letters of the rejected rows, in record order (one per rejected record; an mbp record rejected
    for its instrument yields one, as in load_dbn)."""
    out: list[DeadLetter] = []
    for i in np.flatnonzero(q_bad | t_bad).tolist():
        r = rec[i]
        for bad, reason in ((q_bad[i], q_reason[i]), (t_bad[i], t_reason[i])):
            if not bad:
                continue
            code = Reason(int(reason))
            ts_recv = int(r["ts_recv"]) if int(r["ts_recv"]) != UNDEF_TIMESTAMP else int(r["ts_event"])
            sym = symbols.symbol(int(r["instrument_id"]), ts_recv)
            detail = _REASON_DETAIL[code] or (f"{DETAIL[code]}: instrument_id {int(r['instrument_id'])} = {sym!r} "
                                              "is not mapped")
            iid = "" if code == Reason.UNKNOWN_INSTRUMENT else (config.registry_id(sym or "") or "")
            out.append(DeadLetter(source=config.source, reason=code.label, detail=detail, raw=repr(r.tolist()),
                                  ts_recv=ts_recv, instrument_id=iid, ts_event=int(r["ts_event"])))
            if code == Reason.UNKNOWN_INSTRUMENT:
                break
    return out
