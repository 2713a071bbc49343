"""A loopback CME-style FIX 4.4 market-data venue: a QuickFIX SocketAcceptor fed by the seeded market.

It answers 35=V (SubscriptionRequestType 1: a 35=W snapshot per symbol, then 35=X incrementals; 0: a snapshot
only; 2: unsubscribe; unknown symbols get 35=Y) for its `instruments` (CL.NYMEX, GC.COMEX and ZW.CBOT) from
`simulators.market.MarketGenerator` (by default the whole market, of which the venue keeps its own rows: venues
given one seed, scenario list, rate and epoch show one market), paced so that an event is published when its
receive time is due on the wall clock (epoch + (ts_recv - epoch) / speed). RptSeq is the generator's
per-instrument seq; the bid and offer entries of one quote share it. A restarted venue given the first one's
`epoch_ns` and `store_dir` regenerates the same market, continues the RptSeq streams and the FIX MsgSeqNums: what
was due while it was down is applied to its state but never sent (the client resyncs from the snapshot its
resubscription brings).

The QuickFIX acceptor binds 0.0.0.0 (its C++ socket code takes no bind address): the port is reachable from
other hosts while the venue runs. Tests connect over 127.0.0.1 only; do not run it on an exposed host.

Threads: QuickFIX's acceptor thread calls the Application; every callback only records or queues (and any
exception becomes an entry in `errors`: a Python exception escaping into QuickFIX hangs the process). One
producer thread does all application sends (incrementals, snapshots, rejects) and runs the fault knobs, so a
snapshot is always consistent with the incrementals before it on the wire. The venue persists what it sends
(FileStore), so QuickFIX answers a ResendRequest with the messages themselves (PossDupFlag=Y) and GapFills
for admin messages; with `persist_messages=False` it gap-fills everything and the lost market data is
caught by the client's RptSeq checks.

Fault knobs (run on the producer thread before the next event): `skip_rpt_seq` (an RptSeq gap),
`disconnect` (TCP dropped, no Logout), `logout`, `sequence_reset` (35=4 Reset mode, MsgSeqNum jumps),
`skip_msg_seq` (MsgSeqNum jumps without telling: the client's ResendRequest is gap-filled).

    server = CmeServer(CmeServerConfig())
    port = server.start()      # port 0: a free port is chosen
    ...
    server.stop()              # a hard stop (no Logout), like a crashed venue; stop(graceful=True) logs out
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import quickfix as fix
import quickfix44 as fix44

from feeds.cme.client import BEGIN_STRING, stop_in_thread
from feeds.cme.config import CME_INSTRUMENTS
from feeds.cme.dictionary import build_cme_dictionary
from feeds.cme.schemas import (
    FULL_ENTRY_ORDER,
    INC_ENTRY_ORDER,
    MD_ENTRY_TYPE,
    MD_REQ_ID,
    MD_REQ_REJ_REASON,
    MD_UPDATE_ACTION,
    NO_MD_ENTRIES,
    RPT_SEQ,
    SYMBOL,
    TEXT,
    EntryType,
    MdDecodeError,
    MdEntry,
    MdRequest,
    SubscriptionType,
    UpdateAction,
    decode_request,
    entry_fields,
    split_fields,
)
from market.config import Config
from market.events import Side
from market.fixedpoint import PRICE_SCALE
from market.instruments import Registry, default_registry
from simulators.config import SimConfig
from simulators.market import MarketGenerator, venue_subset
from simulators.microstructure import BUY, KIND_QUOTE, KIND_RAW, SELL, SimRows

PASSWORD = 554
NEW_SEQ_NO = 36
GAP_FILL_FLAG = 123
_SIDE = {BUY: Side.BUY, SELL: Side.SELL}
# exceptions the QuickFIX bindings translate into protocol actions: they must reach QuickFIX
PASS_THROUGH = (fix.RejectLogon, fix.UnsupportedMessageType, fix.DoNotSend)


class CmeServerConfig(Config, frozen=True, kw_only=True):
    port: int = 0  # 0: a free port chosen at start() (QuickFIX cannot report the port it bound)
    sender_comp_id: str = "CMESIM"
    client_comp_ids: tuple[str, ...] = ("COMMODEX",)  # one session per client comp id
    passwords: tuple[str, ...] = ()  # accepted Logon passwords (554); empty: any, or none
    store_dir: str = ""  # FileStore; "" = a temporary directory. Same dir on restart = MsgSeqNums continue
    persist_messages: bool = True  # False: ResendRequests are answered by GapFill only (data lost at session
    # level; the client's RptSeq checks then report it and resync)
    speed: float = 1.0  # simulated seconds per wall second
    epoch_ns: int = 0  # wall-clock start of the simulated market; 0: when start() runs
    stop_timeout_s: float = 5.0
    instruments: tuple[str, ...] = CME_INSTRUMENTS  # what the venue lists (registry ids)
    sim: SimConfig = SimConfig(duration_s=0.0)  # the whole market: the venue keeps its own rows

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        if not self.client_comp_ids:
            raise ValueError("client_comp_ids must not be empty")
        if not 0 <= self.port < 65536:
            raise ValueError("port must be in 0..65535")


@dataclass(frozen=True, slots=True)
class VenueEvent:
    """One market event as the venue publishes it: a trade, or a new best bid and offer."""

    due_ns: int  # wall clock
    symbol: str
    rpt_seq: int
    entries: tuple[MdEntry, ...]


@dataclass(slots=True)
class SymbolState:
    rpt_seq: int = 0  # newest RptSeq published (sent or not)
    bid: MdEntry | None = None
    offer: MdEntry | None = None
    trade: MdEntry | None = None


@dataclass(slots=True)
class Faults:
    """What the venue did on purpose, for tests to check the client against."""

    skipped: list[tuple[str, int]] = field(default_factory=list)  # (symbol, RptSeq) never sent
    disconnects: int = 0
    logouts: int = 0
    sequence_resets: int = 0
    msg_seq_skips: int = 0


@dataclass(slots=True)
class VenueStats:
    logons: int = 0
    logouts: int = 0
    requests: int = 0
    snapshots_sent: int = 0
    updates_sent: int = 0
    rejects_sent: int = 0
    skipped_rows: int = 0  # rows of its instruments with no valid market event (NaN / bad sizes: dirty scenario)
    refused_logons: int = 0  # bad password


def venue_events(rows: SimRows, names: list[str], symbol_of: dict[str, str], epoch_ns: int,
                 speed: float = 1.0) -> tuple[list[VenueEvent], int]:
    """Simulator rows as venue events, each with its wall-clock due time; (events, rows skipped)."""
    due = (epoch_ns + (rows.ts_recv - epoch_ns) / speed).astype(np.int64).tolist()
    ok_px = np.isfinite(rows.price)
    ok_q = np.isfinite(rows.bid) & np.isfinite(rows.ask)
    price = np.round(np.where(ok_px, rows.price, 0.0) * PRICE_SCALE).astype(np.int64).tolist()
    bid = np.round(np.where(ok_q, rows.bid, 0.0) * PRICE_SCALE).astype(np.int64).tolist()
    ask = np.round(np.where(ok_q, rows.ask, 0.0) * PRICE_SCALE).astype(np.int64).tolist()
    ok_px_l, ok_q_l = ok_px.tolist(), ok_q.tolist()
    inst, kind, seq, ts = rows.inst.tolist(), rows.kind.tolist(), rows.seq.tolist(), rows.ts_event.tolist()
    size, bsz, asz, aggr = rows.size.tolist(), rows.bid_size.tolist(), rows.ask_size.tolist(), rows.aggressor.tolist()
    out: list[VenueEvent] = []
    skipped = 0
    for i in range(len(rows)):
        if kind[i] == KIND_RAW or not 0 <= inst[i] < len(names):
            skipped += 1
            continue
        symbol = symbol_of.get(names[inst[i]], "")
        if not symbol:
            skipped += 1
            continue
        s = seq[i]
        entries: tuple[MdEntry, ...]
        if kind[i] == KIND_QUOTE:
            if not ok_q_l[i] or bsz[i] < 0 or asz[i] < 0:
                skipped += 1
                continue
            entries = (MdEntry(EntryType.BID, symbol, s, bid[i], bsz[i], ts[i], UpdateAction.CHANGE),
                       MdEntry(EntryType.OFFER, symbol, s, ask[i], asz[i], ts[i], UpdateAction.CHANGE))
        else:
            if not ok_px_l[i] or size[i] < 1:
                skipped += 1
                continue
            entries = (MdEntry(EntryType.TRADE, symbol, s, price[i], size[i], ts[i], UpdateAction.NEW,
                               _SIDE.get(aggr[i], Side.NONE)),)
        out.append(VenueEvent(due[i], symbol, s, entries))
    return out, skipped


def _group(opener: int, order: tuple[int, ...]) -> fix.Group:
    arr = fix.IntArray(len(order) + 1)
    for k, tag in enumerate(order):
        arr[k] = tag
    arr[len(order)] = 0
    return fix.Group(NO_MD_ENTRIES, opener, arr)


def incremental_message(events: list[VenueEvent]) -> fix.Message:
    msg = fix44.MarketDataIncrementalRefresh()
    for ev in events:
        for e in ev.entries:
            g = _group(MD_UPDATE_ACTION, INC_ENTRY_ORDER)
            for tag, value in entry_fields(e, incremental=True):
                g.setField(tag, value)
            msg.addGroup(g)
    return msg


def snapshot_message(symbol: str, st: SymbolState, md_req_id: str) -> fix.Message:
    msg = fix44.MarketDataSnapshotFullRefresh()
    msg.setField(MD_REQ_ID, md_req_id)
    msg.setField(SYMBOL, symbol)
    msg.setField(RPT_SEQ, str(st.rpt_seq))
    entries = [e for e in (st.bid, st.offer, st.trade) if e is not None]
    if not entries:
        entries = [MdEntry(EntryType.EMPTY_BOOK, symbol, 0)]
    for e in entries:
        g = _group(MD_ENTRY_TYPE, FULL_ENTRY_ORDER)
        for tag, value in entry_fields(e, incremental=False):
            g.setField(tag, value)
        msg.addGroup(g)
    return msg


def reject_message(md_req_id: str, reason: str, text: str) -> fix.Message:
    msg = fix44.MarketDataRequestReject()
    msg.setField(MD_REQ_ID, md_req_id)
    msg.setField(MD_REQ_REJ_REASON, reason)
    msg.setField(TEXT, text)
    return msg


def free_port() -> int:
    """A port free on every interface right now (QuickFIX binds 0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))  # probing what QuickFIX will bind
        return int(s.getsockname()[1])


def settings_text(cfg: CmeServerConfig, port: int, dictionary: Path, store: Path) -> str:
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"BeginString={BEGIN_STRING}",
        f"SenderCompID={cfg.sender_comp_id}",
        f"SocketAcceptPort={port}",
        "SocketReuseAddress=Y",
        f"FileStorePath={store}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={dictionary}",
        f"PersistMessages={'Y' if cfg.persist_messages else 'N'}",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "CheckLatency=N",
        "SocketNodelay=Y",
        "",
    ]
    for comp in cfg.client_comp_ids:
        lines += ["[SESSION]", f"TargetCompID={comp}", ""]
    return "\n".join(lines)


class _VenueApp(fix.Application):  # type: ignore[misc]  # SWIG class
    """QuickFIX callbacks of the venue: record and queue only; exceptions become `server.errors` entries."""

    def __init__(self, server: CmeServer) -> None:
        super().__init__()
        self._server = server

    def _guard(self, callback: str, work: Callable[[], None]) -> None:
        try:
            work()
        except PASS_THROUGH:
            raise
        except Exception as e:  # noqa: BLE001 - must not reach QuickFIX: recorded for the tests
            self._server.errors.append(f"{callback}: {type(e).__name__}: {e}")

    def onCreate(self, sessionID: fix.SessionID) -> None:  # noqa: N802, N803 - QuickFIX's names
        return

    def onLogon(self, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._guard("onLogon", lambda: self._server._inbox.put(("logon", sessionID.getTargetCompID().getValue())))

    def onLogout(self, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._guard("onLogout", lambda: self._server._inbox.put(("logout", sessionID.getTargetCompID().getValue())))

    def toAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        return

    def fromAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._guard("fromAdmin", lambda: self._check_logon(message))

    def toApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        return

    def fromApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._guard("fromApp", lambda: self._on_app(message, sessionID.getTargetCompID().getValue()))

    def _check_logon(self, message: fix.Message) -> None:
        accepted = self._server.config.passwords
        if not accepted or message.getHeader().getField(35) != "A":
            return
        given = message.getField(PASSWORD) if message.isSetField(PASSWORD) else ""
        if given not in accepted:
            self._server.stats.refused_logons += 1
            raise fix.RejectLogon("password not accepted")

    def _on_app(self, message: fix.Message, comp: str) -> None:
        if message.getHeader().getField(35) != "V":
            raise fix.UnsupportedMessageType()
        try:
            req = decode_request(split_fields(message.toString()))
        except MdDecodeError as e:
            self._server.errors.append(f"bad MarketDataRequest: {e}")
            return
        self._server._inbox.put(("request", comp, req))


class CmeServer:
    def __init__(self, config: CmeServerConfig | None = None, registry: Registry | None = None) -> None:
        self.config = cfg = config or CmeServerConfig()
        self.registry = registry or default_registry()
        self.symbols: dict[str, str] = {self.registry.get(iid).symbol: iid for iid in cfg.instruments}
        self._indices = np.array([self.registry.get(iid).index for iid in cfg.instruments], dtype=np.int32)
        self._symbol_of_name = {i.id: i.symbol for i in self.registry}
        self.state: dict[str, SymbolState] = {s: SymbolState() for s in self.symbols}
        self.faults = Faults()
        self.stats = VenueStats()
        self.errors: list[str] = []  # exceptions caught in callbacks or the producer (tests assert it is empty)
        self.epoch_ns = cfg.epoch_ns
        self.started_ns = 0
        self.port = cfg.port
        self.caught_up = threading.Event()  # every event due before start() has been applied
        self.logged_on = threading.Event()  # some client is logged on
        self._inbox: queue.SimpleQueue[tuple[object, ...]] = queue.SimpleQueue()
        self._subs: dict[str, set[str]] = {}  # logged-on client comp id -> subscribed symbols
        self._skip: list[list[object]] = []  # [remaining, symbol or None]
        self._halt = threading.Event()
        self._producer: threading.Thread | None = None
        self._acceptor: fix.ThreadedSocketAcceptor | None = None
        self._keep: list[object] = []  # QuickFIX objects that must outlive the acceptor
        self._work_dir: Path | None = None
        self._sids = {c: fix.SessionID(BEGIN_STRING, cfg.sender_comp_id, c) for c in cfg.client_comp_ids}

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> int:
        if self._acceptor is not None:
            raise RuntimeError("already started")
        self.started_ns = time.time_ns()
        if not self.epoch_ns:
            self.epoch_ns = self.started_ns
        self._work_dir = Path(tempfile.mkdtemp(prefix="commodex-cmesim-"))
        dictionary = build_cme_dictionary(self._work_dir)
        store = Path(self.config.store_dir) if self.config.store_dir else self._work_dir / "store"
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = self.config.port or free_port()
        path = self._work_dir / "acceptor.cfg"
        path.write_text(settings_text(self.config, self.port, dictionary, store))
        settings = fix.SessionSettings(str(path))
        factory = fix.FileStoreFactory(settings)
        app = _VenueApp(self)
        self._keep = [settings, factory, app]
        # Threaded: QuickFIX 1.16's SocketAcceptor.stop() closes its server from the calling thread while its
        # own thread may delete it (a use-after-free, seen as segfaults in stop); the threaded acceptor
        # closes and joins under its mutex
        self._acceptor = fix.ThreadedSocketAcceptor(app, factory, settings)
        self._acceptor.start()
        self._halt.clear()
        self._producer = threading.Thread(target=self._produce, name="cmesim-producer", daemon=True)
        self._producer.start()
        return self.port

    def stop(self, graceful: bool = False) -> bool:
        """Stop the venue (hard: sockets dropped without Logout, unless graceful); True if everything stopped
        within stop_timeout_s."""
        ok = True
        self._halt.set()
        if self._producer is not None:
            self._producer.join(self.config.stop_timeout_s)
            ok = not self._producer.is_alive()
            self._producer = None
        acceptor = self._acceptor
        if acceptor is not None:
            if not graceful:  # drop the connections first: the acceptor's stop then has no session to wait for
                for sid in self._sids.values():
                    session = fix.Session.lookupSession(sid)
                    if session is not None:
                        session.disconnect()
            ok = stop_in_thread(lambda: acceptor.stop(not graceful), self.config.stop_timeout_s,
                                "cmesim-acceptor-stop") and ok
            if ok:
                self._acceptor = None
        self.logged_on.clear()
        if ok and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        return ok

    # -- fault knobs (thread-safe: run on the producer thread before its next event) -----------------

    def skip_rpt_seq(self, n: int = 1, symbol: str | None = None) -> None:
        """Do not send the next n events (of `symbol`, or of any symbol); the state still applies them."""
        self._inbox.put(("skip", n, symbol))

    def disconnect(self) -> None:
        """Drop every client's TCP connection without a Logout."""
        self._inbox.put(("disconnect",))

    def logout(self, text: str = "venue logout") -> None:
        self._inbox.put(("logout_all", text))

    def sequence_reset(self, jump: int = 10) -> None:
        """SequenceReset-Reset (35=4, 123=N): our MsgSeqNum jumps ahead by `jump`, the client is told."""
        self._inbox.put(("seq_reset", jump))

    def skip_msg_seq(self, n: int = 5) -> None:
        """Our MsgSeqNum jumps ahead by n without a word: the client must send a ResendRequest."""
        self._inbox.put(("skip_msg_seq", n))

    def wait_subscribed(self, timeout_s: float, comp: str | None = None) -> bool:
        end = time.monotonic() + timeout_s
        who = comp or self.config.client_comp_ids[0]
        while time.monotonic() < end:
            if self._subs.get(who):
                return True
            time.sleep(0.01)
        return False

    def symbol_state(self, symbol: str) -> SymbolState:
        """A copy of the venue's state of one symbol."""
        return dataclasses.replace(self.state[symbol])

    # -- producer thread ----------------------------------------------------------------------------

    def _produce(self) -> None:
        try:
            cfg = self.config
            gen = MarketGenerator(cfg.sim.replace(start_ns=self.epoch_ns), self.registry)
            for block in gen.blocks():
                rows = venue_subset(block, self._indices)
                events, skipped = venue_events(rows, gen.names, self._symbol_of_name, self.epoch_ns, cfg.speed)
                self.stats.skipped_rows += skipped
                for ev in events:
                    if not self._wait_until(ev.due_ns):
                        return
                    self._apply(ev, send=ev.due_ns >= self.started_ns)
        except Exception as e:  # noqa: BLE001 - a thread's error is an output for the tests, not a hang
            self.errors.append(f"producer: {type(e).__name__}: {e}")

    def _wait_until(self, due_ns: int) -> bool:
        """Serve the inbox until due_ns; False when stopping."""
        while True:
            if self._halt.is_set():
                return False
            self._serve_inbox()
            delay = (due_ns - time.time_ns()) / 1e9
            if delay <= 0:
                return True
            self.caught_up.set()
            try:
                cmd = self._inbox.get(timeout=min(delay, 0.05))
            except queue.Empty:
                continue
            self._command(cmd)

    def _serve_inbox(self) -> None:
        while True:
            try:
                cmd = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._command(cmd)

    def _command(self, cmd: tuple[object, ...]) -> None:
        try:
            kind = cmd[0]
            if kind == "request":
                self._on_request(str(cmd[1]), cmd[2])  # type: ignore[arg-type]
            elif kind == "logon":
                self.stats.logons += 1
                self._subs[str(cmd[1])] = set()
                self.logged_on.set()
            elif kind == "logout":
                self.stats.logouts += 1
                self._subs.pop(str(cmd[1]), None)
                if not self._subs:
                    self.logged_on.clear()
            elif kind == "skip":
                self._skip.append([cmd[1], cmd[2]])
            elif kind == "disconnect":
                self.faults.disconnects += 1
                for comp in list(self._subs):
                    self._session(comp).disconnect()
            elif kind == "logout_all":
                self.faults.logouts += 1
                for comp in list(self._subs):
                    self._session(comp).logout(str(cmd[1]))
            elif kind == "seq_reset":
                self.faults.sequence_resets += 1
                for comp in list(self._subs):
                    session = self._session(comp)
                    new = session.getExpectedSenderNum() + int(cmd[1])  # type: ignore[call-overload]
                    session.setNextSenderMsgSeqNum(new)  # first: a heartbeat slipping in is "too high", healed
                    msg = fix44.SequenceReset()
                    msg.setField(GAP_FILL_FLAG, "N")
                    msg.setField(NEW_SEQ_NO, str(new + 1))
                    fix.Session.sendToTarget(msg, self._sids[comp])
            elif kind == "skip_msg_seq":
                self.faults.msg_seq_skips += 1
                for comp in list(self._subs):
                    session = self._session(comp)
                    session.setNextSenderMsgSeqNum(session.getExpectedSenderNum() + int(cmd[1]))  # type: ignore[call-overload]
        except Exception as e:  # noqa: BLE001 - one bad command must not stop the market
            self.errors.append(f"command {cmd[0]}: {type(e).__name__}: {e}")

    def _session(self, comp: str) -> fix.Session:
        session = fix.Session.lookupSession(self._sids[comp])
        if session is None:
            raise LookupError(f"no QuickFIX session for {comp}")
        return session

    def _on_request(self, comp: str, req: MdRequest) -> None:
        self.stats.requests += 1
        subs = self._subs.get(comp)
        if subs is None:
            return  # logged out meanwhile
        for sym in req.symbols:
            if sym not in self.symbols:
                self._send(comp, reject_message(req.md_req_id, "0", f"unknown symbol {sym!r}"))
                self.stats.rejects_sent += 1
                continue
            if req.subscription is SubscriptionType.UNSUBSCRIBE:
                subs.discard(sym)
                continue
            if req.subscription is SubscriptionType.SNAPSHOT_AND_UPDATES:
                subs.add(sym)
            self._send(comp, snapshot_message(sym, self.state[sym], req.md_req_id))
            self.stats.snapshots_sent += 1

    def _apply(self, ev: VenueEvent, send: bool) -> None:
        st = self.state.get(ev.symbol)
        if st is None:
            return
        if ev.rpt_seq > st.rpt_seq:  # a re-delivered seq (dirty scenario) does not move the state
            st.rpt_seq = ev.rpt_seq
            for e in ev.entries:
                if e.entry_type is EntryType.BID:
                    st.bid = e
                elif e.entry_type is EntryType.OFFER:
                    st.offer = e
                else:
                    st.trade = e
        if not send:
            return
        if self._take_skip(ev.symbol):
            self.faults.skipped.append((ev.symbol, ev.rpt_seq))
            return
        msg: fix.Message | None = None
        for comp, subs in self._subs.items():
            if ev.symbol in subs:
                msg = msg or incremental_message([ev])
                self._send(comp, msg)
        if msg is not None:
            self.stats.updates_sent += 1

    def _take_skip(self, symbol: str) -> bool:
        for k, item in enumerate(self._skip):
            n, sym = item
            if sym is None or sym == symbol:
                if int(n) <= 1:  # type: ignore[call-overload]
                    self._skip.pop(k)
                else:
                    item[0] = int(n) - 1  # type: ignore[call-overload]
                return True
        return False

    def _send(self, comp: str, msg: fix.Message) -> None:
        with contextlib.suppress(fix.SessionNotFound):  # the session went away: nothing to deliver to
            fix.Session.sendToTarget(msg, self._sids[comp])
