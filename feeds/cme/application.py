"""The quickfix.Application of the CME-style market-data session: a thin shell around CmeMdProtocol.

QuickFIX calls these methods on its own thread. A Python exception escaping a callback is fatal in the QuickFIX
bindings (the process prints it and hangs in Py_Exit from a non-main thread), so every callback runs inside
`_run`, which turns any exception into a "callback_error" dead letter. The protocol is touched only under
`_lock`, and nothing calls back into QuickFIX while holding it (a send waits for QuickFIX's session mutex, and
QuickFIX holds that while it calls us: sending under our lock could deadlock with another thread).

Events go to `sink` (feeds.cme.client.EventBridge.put: thread-safe, never blocks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import msgspec
import quickfix as fix
import quickfix44 as fix44

from feeds.cme.protocol import CmeMdProtocol, SessionCounters
from feeds.cme.schemas import (
    MARKET_DEPTH,
    MD_ENTRY_TYPE,
    MD_REQ_ID,
    MD_UPDATE_TYPE,
    SUBSCRIPTION_REQUEST_TYPE,
    SYMBOL,
    MdRequest,
    SubscriptionType,
)
from feeds.common.adapter import FeedEvent
from feeds.common.metrics import FeedMetricsSnapshot

PASSWORD = 554
NS_PER_MS = 1_000_000


def request_message(req: MdRequest) -> fix.Message:
    """35=V for a MdRequest (MDUpdateType 1 = incremental refresh when subscribing)."""
    msg = fix44.MarketDataRequest()
    msg.setField(MD_REQ_ID, req.md_req_id)
    msg.setField(SUBSCRIPTION_REQUEST_TYPE, req.subscription.value)
    msg.setField(MARKET_DEPTH, str(req.market_depth))
    if req.subscription is SubscriptionType.SNAPSHOT_AND_UPDATES:
        msg.setField(MD_UPDATE_TYPE, "1")
    for t in req.entry_types:
        g = fix44.MarketDataRequest.NoMDEntryTypes()
        g.setField(MD_ENTRY_TYPE, t.value)
        msg.addGroup(g)
    for sym in req.symbols:
        g = fix44.MarketDataRequest.NoRelatedSym()
        g.setField(SYMBOL, sym)
        msg.addGroup(g)
    return msg


class CmeApplication(fix.Application):  # type: ignore[misc]  # SWIG class: no type information
    def __init__(self, protocol: CmeMdProtocol, sink: Callable[[list[FeedEvent]], None], password: str = "",
                 clock: Callable[[], int] = time.time_ns, poll_every_ms: int = 100) -> None:
        super().__init__()
        self.protocol = protocol
        self._sink = sink
        self._password = password
        self._clock = clock
        self._poll_every_ns = poll_every_ms * NS_PER_MS
        self._last_poll = 0
        self._lock = threading.Lock()
        self.session_id: fix.SessionID | None = None
        self.logged_on = threading.Event()  # set while a session is logged on (tests wait on it)
        self.sink_errors = 0  # the consumer's sink raised: nothing else can report it
        self.send_failures = 0  # sendToTarget returned False or raised (the session was not logged on)
        self.last_error = ""

    # -- QuickFIX callbacks (QuickFIX's thread) -----------------------------------------------------

    def onCreate(self, sessionID: fix.SessionID) -> None:  # noqa: N802, N803 - QuickFIX's names
        self._run("onCreate", None, lambda now: self._created(sessionID))

    def onLogon(self, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._run("onLogon", None, self._logon)

    def onLogout(self, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._run("onLogout", None, self._logout)

    def toAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._run("toAdmin", message, lambda now: self._to_admin(message))

    def fromAdmin(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._run("fromAdmin", message, lambda now: self.protocol.receive(message.toString(), now))

    def toApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._run("toApp", message, lambda now: self.protocol.sent(message.toString()))

    def fromApp(self, message: fix.Message, sessionID: fix.SessionID) -> None:  # noqa: N802, N803
        self._run("fromApp", message, lambda now: self.protocol.receive(message.toString(), now))

    # -- for other threads --------------------------------------------------------------------------

    def poll(self) -> None:
        """Timer hook for a runner thread (snapshot timeouts when the venue has gone quiet)."""
        self._run("poll", None, lambda now: None)

    def ended(self) -> None:
        """The session ended without QuickFIX calling onLogout (a stop that did not wait for the Logout)."""
        self._run("ended", None, self._logout)

    def counters(self) -> tuple[FeedMetricsSnapshot, SessionCounters]:
        """(metrics, a copy of the session counters), read under the lock."""
        with self._lock:
            return self.protocol.metrics.snapshot(), msgspec.structs.replace(self.protocol.session)

    # -- internals ------------------------------------------------------------------------------------

    def _run(self, callback: str, message: fix.Message | None, work: Callable[[int], None]) -> None:
        """Run `work` on the protocol, hand out its events, send its requests; never raise."""
        now = self._clock()
        try:
            with self._lock:
                work(now)
                if now - self._last_poll >= self._poll_every_ns:
                    self._last_poll = now
                    self.protocol.poll(now)
                events = self.protocol.events()
                requests = self.protocol.requests()
                # under the lock: QuickFIX's thread and the poll/stop thread must hand out batches in order
                self._hand_out(events)
            for req in requests:
                self._send(req)
        except Exception as e:  # noqa: BLE001 - must not reach QuickFIX: becomes a dead letter
            self._failed(callback, e, message, now)

    def _failed(self, callback: str, error: Exception, message: fix.Message | None, now: int) -> None:
        try:
            raw = message.toString() if message is not None else ""
        except Exception as e:  # noqa: BLE001
            raw = f"<message text unavailable: {type(e).__name__}>"
        try:
            with self._lock:
                self.protocol.callback_error(callback, error, raw, now)
                events = self.protocol.events()
                self._hand_out(events)
        except Exception as e:  # noqa: BLE001 - the last line of defence: count it, keep it for status
            self.sink_errors += 1
            self.last_error = f"{callback}: {type(e).__name__}: {e}"

    def _hand_out(self, events: list[FeedEvent]) -> None:
        if events:
            self._sink(events)

    def _send(self, req: MdRequest) -> None:
        sid = self.session_id
        if sid is None or not fix.Session.sendToTarget(request_message(req), sid):
            self.send_failures += 1

    def _created(self, sid: fix.SessionID) -> None:
        # a copy: the SessionID passed in belongs to QuickFIX
        self.session_id = fix.SessionID(sid.getBeginString().getValue(), sid.getSenderCompID().getValue(),
                                        sid.getTargetCompID().getValue())

    def _logon(self, now: int) -> None:
        self.protocol.on_logon(now)
        self.logged_on.set()

    def _logout(self, now: int) -> None:
        self.logged_on.clear()
        self.protocol.on_logout(now)

    def _to_admin(self, message: fix.Message) -> None:
        if self._password and message.getHeader().getField(35) == "A":
            message.setField(PASSWORD, self._password)  # added here so it is in no cfg file and no log
        self.protocol.sent(_type_only(message))


def _type_only(message: fix.Message) -> str:
    """Just enough text for counting (the Logon carries the password: its text is never taken)."""
    return f"\x0135={message.getHeader().getField(35)}\x01"
