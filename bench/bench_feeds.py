"""Exchange adapters: decode + normalize messages/s on one core, each against the cryptofeed 2.3.2 reference
measured in the same run (and json.loads, the floor of any Python JSON adapter, in `extra`).

- ICE per frame: `IceProtocol.receive` (typed msgspec decode with the venue contract's checks, symbol map,
  exact decimal -> fixed point, sequencing, metrics, one tick object per frame).
- ICE batch: `IceProtocol.receive_many` on batches of BATCH frames + `drain()` (the same checks and outputs,
  tested equal; in-order updates are scanned straight into TickColumns by a numba kernel).
- CME (FIX 4.4 tag=value market data): `CmeMdProtocol.receive` per 35=X message text, as QuickFIX hands it over.
- MCX polling: `McxPollProtocol.receive` per response document (3 symbols each).
- Coinbase, like for like with cryptofeed: the same capture (shared/data/cryptofeed_ws_captures, 9,946
  messages: 10 book snapshots, 9,719 l2update, 107 ticker, 97 match, 10 last_match) through our msgspec
  decode (CoinbaseNormalizer below: typed structs, decimal strings checked against the Price contract and
  made fixed point exactly (sizes too), ns timestamps, a price -> size map per book side, TradeTick/QuoteTick;
  measured right before and right after the reference) and through cryptofeed 2.3.2's Coinbase handler
  (bench/cryptofeed_ref.py, run in its own venv as a subprocess). Both must produce the same number of book
  updates, tickers and trades or the run fails.
The cryptofeed venv: REF_PIP below (the Makefile's `bench` target builds it); without it the rows say so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from bench.common import Result, best_of
from bench.cryptofeed_ref import read_capture
from feeds.cme.config import CmeFeedConfig
from feeds.cme.protocol import CmeMdProtocol
from feeds.cme.schemas import EntryType, MdEntry, UpdateAction, entry_fields
from feeds.common.decimal_batch import fixed_from_decimals
from feeds.common.wire_types import fixed_from_decimal
from feeds.ice.config import ICE_INSTRUMENTS, IceFeedConfig
from feeds.ice.protocol import IceProtocol
from feeds.ice.schemas import SERVER_DECODER, LoginAck, Snapshot, encode
from feeds.mcx.poll_config import McxPollConfig
from feeds.mcx.poll_protocol import McxPollProtocol
from feeds.mcx.poll_schemas import McxLastTrade, McxQuote, McxTopOfBook, encode_quotes
from market.events import DeadLetter, QuoteTick, Side, TradeTick
from simulators.config import SimConfig
from simulators.ice_server import market_frames

AREA = "feeds"
T0 = 1_767_571_200_000_000_000
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CAPTURE = DATA / "cryptofeed_ws_captures"
REF_PYTHON = Path(os.environ.get("COMMODEX_BENCH_REF_PYTHON", ROOT / ".venv-bench-ref" / "bin" / "python"))
REF_PIP = "python3 -m venv .venv-bench-ref && .venv-bench-ref/bin/pip install -q 'cryptofeed==2.3.2'"
BATCH = 1000  # frames per receive_many call (what a client drains from its socket per wakeup, at most)
_SIDE = {"B": Side.BUY, "S": Side.SELL, "N": Side.NONE}


# -- ICE ----------------------------------------------------------------------------------------------------

def _ice_protocol() -> IceProtocol:
    p = IceProtocol(IceFeedConfig(url="ws://127.0.0.1:1/ice", api_key="bench"))
    p.connection_made(T0)
    p.receive(encode(LoginAck("B", 1000)), T0)
    for sym in ("CT", "B", "SB", "KC"):
        p.receive(encode(Snapshot(sym, 0)), T0)
    p.events()
    p.data_to_send()
    return p


def _clean(p: IceProtocol | CmeMdProtocol | McxPollProtocol) -> None:
    if p.metrics.gaps or p.metrics.dead_letters:
        raise AssertionError("benchmark traffic must be clean")


def ice_per_frame(frames: list[bytes]) -> int:
    p = _ice_protocol()
    n = 0
    for f in frames:
        p.receive(f, T0)
        n += len(p.events())
    _clean(p)
    return n


def ice_batched(frames: list[bytes]) -> int:
    p = _ice_protocol()
    n = 0
    for i in range(0, len(frames), BATCH):
        p.receive_many(frames[i:i + BATCH], T0)
        n += len(p.drain().columns)
    _clean(p)
    return n


# -- CME (FIX) ----------------------------------------------------------------------------------------------

CME_SYMBOLS = ("GC", "CL")
_SOH = "\x01"


def _fix_text(mt: str, body: list[tuple[int, str]]) -> str:
    """A message as QuickFIX's Message.toString() hands it to the application (header, body, trailer)."""
    fields = [(8, "FIX.4.4"), (9, "0"), (35, mt), (34, "7"), (49, "CMESIM"), (52, "20260105-00:00:01.000"),
              (56, "COMMODEX"), (262, "sub-1"), *body, (10, "000")]
    return _SOH.join(f"{t}={v}" for t, v in fields) + _SOH


def cme_messages(n: int) -> list[str]:
    """35=X messages with one event each: a new bid+offer (3 of 4) or a trade."""
    out = []
    seq = dict.fromkeys(CME_SYMBOLS, 0)
    for i in range(n):
        sym = CME_SYMBOLS[i % 2]
        seq[sym] += 1
        q = seq[sym]
        ts = T0 + 1000 * i
        px = 2_000_000_000_000 + (i % 50) * 100_000_000
        if i % 4 == 3:
            entries = [MdEntry(EntryType.TRADE, sym, q, px, 1 + i % 5, ts, UpdateAction.NEW, Side.BUY)]
        else:
            entries = [MdEntry(EntryType.BID, sym, q, px, 5 + i % 7, ts, UpdateAction.CHANGE),
                       MdEntry(EntryType.OFFER, sym, q, px + 100_000_000, 3, ts, UpdateAction.CHANGE)]
        body = [(268, str(len(entries)))]
        for e in entries:
            body += entry_fields(e, incremental=True)
        out.append(_fix_text("X", body))
    return out


def _cme_protocol() -> CmeMdProtocol:
    p = CmeMdProtocol(CmeFeedConfig(port=1, instruments=("GC.COMEX", "CL.NYMEX")))
    p.on_logon(T0)
    for sym in CME_SYMBOLS:  # the first snapshot: nothing published yet (RptSeq 0), the book empty
        p.receive(_fix_text("W", [(55, sym), (83, "0"), (268, "1"),
                                  *entry_fields(MdEntry(EntryType.EMPTY_BOOK, sym, 0), incremental=False)]), T0)
    p.events()
    p.requests()
    return p


def cme_per_message(msgs: list[str]) -> int:
    p = _cme_protocol()
    n = 0
    for m in msgs:
        p.receive(m, T0)
        n += len(p.events())
    _clean(p)
    return n


# -- MCX (polled JSON documents) ----------------------------------------------------------------------------

MCX_SYMBOLS = {"GOLD": ("INR", "10g"), "CRUDEOIL": ("INR", "bbl"), "COTTONCNDY": ("INR", "candy")}


def mcx_bodies(n: int) -> list[bytes]:
    out = []
    for i in range(1, n + 1):
        quotes = []
        for j, (sym, (cur, unit)) in enumerate(MCX_SYMBOLS.items()):
            s = 2 * i
            px = f"{70000 + j * 1000 + i % 97}.{i % 100:02d}"
            quotes.append(McxQuote(sym, cur, unit, s, volume=i, trades=i,
                                   quote=McxTopOfBook(s, T0 + i, px, px + "5", 10, 12),
                                   last_trade=McxLastTrade(s - 1, T0 + i, px, 1, "B")))
        out.append(encode_quotes("S1", T0 + i, quotes))
    return out


def mcx_per_document(bodies: list[bytes]) -> int:
    p = McxPollProtocol(McxPollConfig(url="http://127.0.0.1:1"))
    n = 0
    for b in bodies:
        p.receive(b, T0)
        n += len(p.events())
    _clean(p)
    return n


# -- Coinbase: our decode of cryptofeed's capture -----------------------------------------------------------

_FIXED_CACHE = 1 << 16
# feeds.common.wire_types.Price, checked by CoinbaseNormalizer._fx once per distinct string rather than by the
# decoder on every occurrence (book prices and sizes repeat)
DecimalText = str
_PRICE_RE = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,9})?")


class CbMessage(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class CbSubscriptions(CbMessage, frozen=True, tag="subscriptions"):
    channels: list[msgspec.Raw] = []


class CbSnapshot(CbMessage, frozen=True, tag="snapshot"):
    product_id: str
    bids: list[tuple[DecimalText, DecimalText]]
    asks: list[tuple[DecimalText, DecimalText]]


class CbL2Update(CbMessage, frozen=True, tag="l2update"):
    product_id: str
    changes: list[tuple[Literal["buy", "sell"], DecimalText, DecimalText]]
    time: str


class CbTicker(CbMessage, frozen=True, tag="ticker"):
    sequence: int
    product_id: str
    best_bid: DecimalText
    best_ask: DecimalText
    time: str = ""


class CbMatch(CbMessage, frozen=True, tag="match"):
    trade_id: int
    side: Literal["buy", "sell"]  # the maker's side
    size: DecimalText
    price: DecimalText
    product_id: str
    sequence: int
    time: str


class CbLastMatch(CbMatch, frozen=True, tag="last_match"):
    pass


CB_DECODER = msgspec.json.Decoder(CbSubscriptions | CbSnapshot | CbL2Update | CbTicker | CbMatch | CbLastMatch)
_CB_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError)


class CoinbaseNormalizer:
    """Coinbase websocket JSON -> ticks, per-product L2 books and dead letters (sizes are fixed point 1e-9,
    like prices: crypto sizes are fractional)."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[int, int], dict[int, int]]] = {}  # product -> (bids, asks)
        self.ticks: list[TradeTick | QuoteTick] = []
        self.dead: list[DeadLetter] = []
        self.book_updates = 0
        self.tickers = 0
        self.trades = 0
        self._second = ""
        self._second_ns = 0
        self._fixed: dict[str, int] = {}  # decimal text -> fixed point: book prices and sizes repeat a lot

    def _fx(self, text: str) -> int:
        """Fixed point of a decimal string; the Price contract is checked once per distinct string."""
        v = self._fixed.get(text)
        if v is None:
            if _PRICE_RE.fullmatch(text) is None:
                raise ValueError(f"{text!r} is not a decimal of at most 9+9 digits")
            if len(self._fixed) >= _FIXED_CACHE:
                self._fixed.clear()
            v = self._fixed[text] = fixed_from_decimal(text)
        return v

    def on_message(self, text: str | bytes, ts_recv: int) -> None:
        try:
            msg = CB_DECODER.decode(text)
            tp = type(msg)
            if tp is CbL2Update:
                self._l2update(msg)  # type: ignore[arg-type]
            elif tp is CbTicker:
                t: CbTicker = msg  # type: ignore[assignment]
                self.ticks.append(QuoteTick(t.product_id, self._fx(t.best_bid), self._fx(t.best_ask), 0, 0,
                                            self._ns(t.time) if t.time else ts_recv, ts_recv, t.sequence))
                self.tickers += 1
            elif tp is CbMatch or tp is CbLastMatch:
                m: CbMatch = msg  # type: ignore[assignment]
                self.ticks.append(TradeTick(m.product_id, self._fx(m.price), self._fx(m.size),
                                            self._ns(m.time), ts_recv, m.sequence,
                                            Side.SELL if m.side == "buy" else Side.BUY))
                self.trades += 1
            elif tp is CbSnapshot:
                s: CbSnapshot = msg  # type: ignore[assignment]
                bids = fixed_from_decimals([x for level in s.bids for x in level])  # price, size, price, ...
                asks = fixed_from_decimals([x for level in s.asks for x in level])
                self.books[s.product_id] = (dict(zip(bids[::2], bids[1::2], strict=True)),
                                            dict(zip(asks[::2], asks[1::2], strict=True)))
                self.book_updates += 1
        except _CB_ERRORS as e:
            raw = text if isinstance(text, str) else text.decode("utf-8", "backslashreplace")
            self.dead.append(DeadLetter("coinbase", "malformed", str(e), raw[:4096], ts_recv))

    def _l2update(self, u: CbL2Update) -> None:
        book = self.books.get(u.product_id)
        if book is None:
            raise ValueError(f"l2update for {u.product_id} before its snapshot")
        self._ns(u.time)
        bids, asks = book
        fx = self._fx
        for side, px, qty in u.changes:
            levels = bids if side == "buy" else asks
            size = fx(qty)
            if size:
                levels[fx(px)] = size
            else:
                levels.pop(fx(px), None)
        self.book_updates += 1

    def _ns(self, text: str) -> int:
        """'2021-04-17T16:43:37.075687Z' -> UTC ns; the whole second is cached (messages share it)."""
        head = text[:19]
        if head != self._second:
            if len(text) < 20 or text[10] != "T" or not text[17:19].isdigit():
                raise ValueError(f"bad time {text!r}")
            when = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
            self._second_ns = int(when.timestamp()) * 1_000_000_000
            self._second = head
        frac = text[20:-1]
        if text[-1] != "Z" or (len(text) > 20 and (text[19] != "." or not frac.isdigit() or len(frac) > 9)):
            raise ValueError(f"bad time {text!r}")
        return self._second_ns + (int(frac) * 10 ** (9 - len(frac)) if frac else 0)


def coinbase_messages() -> list[tuple[int, str]]:
    """(ts_recv ns, message) of the Coinbase capture, as cryptofeed_ref reads it."""
    _, _, messages = read_capture(CAPTURE)
    return [(int(round(ts * 1e9)), text) for ts, text in messages]


def coinbase_ours(messages: list[tuple[int, str]]) -> CoinbaseNormalizer:
    norm = CoinbaseNormalizer()
    on = norm.on_message
    for ts, text in messages:
        on(text, ts)
    return norm


def cryptofeed_reference(repeat: int) -> dict[str, object] | str:
    """cryptofeed 2.3.2's numbers from its venv, or why there are none."""
    if not REF_PYTHON.is_file():
        return f"cryptofeed 2.3.2 venv absent ({REF_PYTHON}); make it with: {REF_PIP}"
    proc = subprocess.run([str(REF_PYTHON), str(Path(__file__).with_name("cryptofeed_ref.py")), "--capture",
                           str(CAPTURE), "--repeat", str(repeat)], capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode != 0:
        return f"cryptofeed reference failed (rc {proc.returncode}): {proc.stderr.strip()[-400:]}"
    doc: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc


# -- the run ------------------------------------------------------------------------------------------------

def _rate(fn: Callable[[], object], n: int, repeat: int) -> float:
    return n / best_of(fn, repeat)


def run(quick: bool = False) -> list[Result]:
    import json as stdlib_json

    repeat = 2 if quick else 3
    frames = market_frames(SimConfig(instruments=ICE_INSTRUMENTS, duration_s=60 if quick else 300, rate_scale=10))
    n_ice = len(frames)
    if ice_per_frame(frames) != n_ice or ice_batched(frames) != n_ice:
        raise AssertionError("every ICE frame must become one tick on both paths")
    cme = cme_messages(20_000 if quick else 100_000)
    n_cme_ticks = cme_per_message(cme)
    mcx = mcx_bodies(3000 if quick else 10_000)
    n_mcx_ticks = mcx_per_document(mcx)

    json_ice = _rate(lambda: [stdlib_json.loads(f) for f in frames], n_ice, repeat)
    rates = {
        "ICE decode+normalize per frame (IceProtocol.receive -> tick objects)":
            (_rate(lambda: ice_per_frame(frames), n_ice, repeat), n_ice, {"json.loads msgs/s": json_ice}),
        f"ICE decode+normalize batched (receive_many x{BATCH} -> TickColumns)":
            (_rate(lambda: ice_batched(frames), n_ice, repeat), n_ice, {"json.loads msgs/s": json_ice}),
        "ICE typed decode only (msgspec, contract checks)":
            (_rate(lambda: [SERVER_DECODER.decode(f) for f in frames], n_ice, repeat), n_ice,
             {"json.loads msgs/s": json_ice}),
        "CME FIX 35=X decode+normalize (CmeMdProtocol.receive)":
            (_rate(lambda: cme_per_message(cme), len(cme), repeat), len(cme), {"ticks": float(n_cme_ticks)}),
        "MCX poll document decode+normalize (McxPollProtocol.receive)":
            (_rate(lambda: mcx_per_document(mcx), len(mcx), repeat), len(mcx),
             {"ticks": float(n_mcx_ticks), "entries/s": 0.0}),
    }
    mcx_rate = rates["MCX poll document decode+normalize (McxPollProtocol.receive)"]
    mcx_rate[2]["entries/s"] = mcx_rate[0] * len(MCX_SYMBOLS)

    ref_name = "cryptofeed 2.3.2 Coinbase handler, same run"
    ref_value = 0.0
    ref_note = ""
    cb_row: list[Result] = []
    if CAPTURE.is_dir():
        messages = coinbase_messages()
        ours = coinbase_ours(messages)
        if ours.dead:
            raise AssertionError(f"our Coinbase decode dead-lettered {len(ours.dead)}: {ours.dead[0]}")
        # ours right before and right after the reference, best of both: load on a shared machine drifts
        t_before = best_of(lambda: coinbase_ours(messages), repeat)
        ref = cryptofeed_reference(repeat)
        t_after = best_of(lambda: coinbase_ours(messages), repeat)
        if isinstance(ref, str):
            ref_note = ref
        else:
            counts = ref["callbacks"]
            mine = {"l2_book": ours.book_updates, "ticker": ours.tickers, "trades": ours.trades}
            if counts != mine:
                raise AssertionError(f"cryptofeed and our decode disagree on the capture: {counts} vs {mine}")
            ref_value = float(ref["msgs_per_s"])  # type: ignore[arg-type]
            ref_note = f"cryptofeed {ref['messages']} messages, callbacks {counts}"
        cb = len(messages) / min(t_before, t_after)
        json_cb = _rate(lambda: [stdlib_json.loads(t) for _, t in messages], len(messages), repeat)
        cb_row.append(Result(AREA, "Coinbase capture: our msgspec decode+normalize+L2 book", cb, "msgs/s",
                             ref_name if ref_value else "", ref_value,
                             f"{len(messages):,} messages of {CAPTURE.name}/COINBASE.ws.28.0; {ref_note}",
                             {"json.loads msgs/s": json_cb}))
    else:
        ref_note = f"capture folder {CAPTURE} absent"
    if ref_value:
        cb_row.append(Result(AREA, "cryptofeed 2.3.2 Coinbase handler (reference, own venv)", ref_value, "msgs/s",
                             notes=ref_note))
    else:  # the table shows names, not notes: say it there
        cb_row.append(Result(AREA, f"cryptofeed 2.3.2 reference NOT MEASURED: {ref_note}"[:200], 0.0, "msgs/s",
                             notes=ref_note))
    notes = {n_ice: f"{n_ice:,} frames of 4 ICE instruments at rate_scale 10", len(cme): f"{len(cme):,} 35=X "
             f"messages (1-2 entries)", len(mcx): f"{len(mcx):,} documents of {len(MCX_SYMBOLS)} symbols"}
    rows = [Result(AREA, name, value, "msgs/s", ref_name if ref_value else "", ref_value,
                   f"one core; {notes[n]}" + ("" if ref_value else f"; {ref_note}"), extra)
            for name, (value, n, extra) in rates.items()]
    return rows + cb_row


if __name__ == "__main__":
    for r in run(quick=False):
        ratio = f"{r.ratio:.2f}x" if r.ratio else ""
        print(f"{r.name:70s} {r.value:14,.0f} {r.unit:7s} {ratio:>7s} vs {r.baseline_name} "
              f"({r.baseline_value:,.0f}) {r.extra} {r.notes}")
