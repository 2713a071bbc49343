"""The CME-style market-data initiator: QuickFIX SocketInitiator + CmeApplication, events handed to asyncio.

    client = CmeClient(CmeFeedConfig(port=...), on_events=handle)
    await client.run(stop)          # start, forward event batches to on_events until stop is set, stop

or without asyncio:

    client.start(); client.wait_logged_on(5.0); batch = client.bridge.get(1.0); client.stop()

QuickFIX runs its own thread. Reconnects are QuickFIX's (ReconnectInterval, every reconnect_interval_s);
on each logon the application resubscribes and every instrument resyncs from its new snapshot.
Settings are generated into a private temporary directory (mode 0700): the session cfg, the CME data
dictionary and, unless `store_dir` is set, the FileStore. The password is added to the Logon in toAdmin,
so it is in no file: the cfg does not hold it, the initiator does not persist its own messages (unless
`persist_messages`: PersistMessages=N, it gap-fills resend requests) and no QuickFIX log is attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import quickfix as fix

from feeds.cme.application import CmeApplication
from feeds.cme.config import CmeFeedConfig
from feeds.cme.dictionary import build_cme_dictionary
from feeds.cme.protocol import CmeMdProtocol, SessionCounters
from feeds.common.adapter import FeedEvent
from feeds.common.metrics import FeedMetricsSnapshot
from market.instruments import Registry

BEGIN_STRING = "FIX.4.4"


def restore_signal_handlers() -> None:
    """Importing quickfix (1.16) resets SIGINT to the default action at the C level, behind Python's back: Ctrl-C
    would then kill the process past Python's handler (no KeyboardInterrupt, no asyncio stop handler, so no
    clean shutdown and no capture manifest). Re-install the handlers Python holds; main thread only (Python sets
    handlers nowhere else). Called once below, right after this module imported quickfix."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None:  # None: set outside Python, nothing to re-install
            signal.signal(sig, handler)


restore_signal_handlers()


class EventBridge:
    """Hands event batches from QuickFIX's thread to one consumer, asyncio or blocking. put() never blocks
    (an unbounded queue: `pending` says how far the consumer is behind)."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[list[FeedEvent]] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self.batches = 0
        self.events = 0

    @property
    def pending(self) -> int:
        return self._q.qsize()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake `loop` on every put (call from the loop's thread, before the producer starts)."""
        self._ready = asyncio.Event()
        self._loop = loop

    def put(self, events: list[FeedEvent]) -> None:
        """From any thread."""
        self.batches += 1
        self.events += len(events)
        self._q.put(events)
        loop, ready = self._loop, self._ready
        if loop is not None and ready is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the batch stays queued for drain()
                loop.call_soon_threadsafe(ready.set)

    def drain(self) -> list[FeedEvent]:
        """Everything queued, in order, without waiting."""
        out: list[FeedEvent] = []
        while True:
            try:
                out.extend(self._q.get_nowait())
            except queue.Empty:
                return out

    def get(self, timeout_s: float) -> list[FeedEvent]:
        """Blocking: wait up to timeout_s for a batch, then return everything queued ([] on timeout)."""
        try:
            first = self._q.get(timeout=timeout_s)
        except queue.Empty:
            return []
        return first + self.drain()

    async def next(self, timeout_s: float | None = None) -> list[FeedEvent]:
        """Async: wait up to timeout_s for a put, then return everything queued (may be [])."""
        ready = self._ready
        if ready is None:
            raise RuntimeError("attach(loop) first")
        if self._q.empty():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), timeout_s)
        ready.clear()  # before draining: a put after this sets it again, so no wake-up is lost
        return self.drain()


def settings_text(config: CmeFeedConfig, dictionary: Path, store: Path) -> str:
    """The QuickFIX initiator cfg (no secrets in it)."""
    yn = "Y" if config.reset_on_logon else "N"
    return "\n".join([
        "[DEFAULT]",
        "ConnectionType=initiator",
        f"BeginString={BEGIN_STRING}",
        f"SenderCompID={config.sender_comp_id}",
        f"TargetCompID={config.target_comp_id}",
        f"SocketConnectHost={config.host}",
        f"SocketConnectPort={config.port}",
        f"HeartBtInt={config.heartbeat_s}",
        f"ReconnectInterval={config.reconnect_interval_s}",
        f"FileStorePath={store}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",  # = StartTime: a 24 h session
        "UseDataDictionary=Y",
        f"DataDictionary={dictionary}",
        f"ResetOnLogon={yn}",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        f"PersistMessages={'Y' if config.persist_messages else 'N'}",
        "CheckLatency=N",
        "LogonTimeout=5",
        "LogoutTimeout=2",
        "SocketNodelay=Y",
        "",
        "[SESSION]",
        "",
    ])


def stop_in_thread(stop: Callable[[], object], timeout_s: float, name: str) -> bool:
    """Run a blocking QuickFIX stop on a daemon thread; False if it did not finish within timeout_s."""
    t = threading.Thread(target=stop, name=name, daemon=True)
    t.start()
    t.join(timeout_s)
    return not t.is_alive()


class CmeClient:
    def __init__(
        self,
        config: CmeFeedConfig,
        on_events: Callable[[list[FeedEvent]], None] | None = None,
        registry: Registry | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        protocol: CmeMdProtocol | None = None,
    ) -> None:
        """`protocol`: a prepared CmeMdProtocol of `config` (feeds.capture passes one that records what drives
        it); default a plain one."""
        self.config = config
        self.protocol = protocol if protocol is not None else CmeMdProtocol(config, registry)
        self.bridge = EventBridge()
        self.application = CmeApplication(self.protocol, self.bridge.put, config.password, clock)
        self._on_events = on_events
        self._initiator: fix.SocketInitiator | None = None
        self._settings: fix.SessionSettings | None = None
        self._store_factory: fix.FileStoreFactory | None = None
        self.work_dir: Path | None = None
        self.stopped_cleanly = True  # False when a stop() timed out (QuickFIX's thread may still run)

    @property
    def logged_on(self) -> bool:
        return self.application.logged_on.is_set()

    def wait_logged_on(self, timeout_s: float) -> bool:
        return self.application.logged_on.wait(timeout_s)

    def metrics(self) -> FeedMetricsSnapshot:
        return self.application.counters()[0]

    def session_counters(self) -> SessionCounters:
        return self.application.counters()[1]

    def seq_nums(self) -> tuple[int, int]:
        """QuickFIX's (next sender MsgSeqNum, next expected target MsgSeqNum); (0, 0) before the session exists."""
        sid = self.application.session_id
        session = fix.Session.lookupSession(sid) if sid is not None else None
        if session is None:
            return 0, 0
        return session.getExpectedSenderNum(), session.getExpectedTargetNum()

    def start(self) -> None:
        if self._initiator is not None:
            raise RuntimeError("already started")
        self.work_dir = Path(tempfile.mkdtemp(prefix="commodex-cme-"))  # 0700
        dictionary = build_cme_dictionary(self.work_dir)
        store = Path(self.config.store_dir) if self.config.store_dir else self.work_dir / "store"
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
        cfg = self.work_dir / "initiator.cfg"
        cfg.write_text(settings_text(self.config, dictionary, store))
        self._settings = fix.SessionSettings(str(cfg))
        self._store_factory = fix.FileStoreFactory(self._settings)
        self._initiator = fix.SocketInitiator(self.application, self._store_factory, self._settings)
        self._initiator.start()

    def stop(self, timeout_s: float | None = None, wait_logout: bool = True) -> bool:
        """Log out and stop QuickFIX's thread; True if it finished in time. Safe to call twice.
        wait_logout=False does not wait for the venue's Logout reply (QuickFIX then calls no onLogout: the
        session end is recorded here)."""
        initiator = self._initiator
        if initiator is None:
            return True
        ok = stop_in_thread(lambda: initiator.stop(not wait_logout), timeout_s or self.config.stop_timeout_s,
                            "cme-initiator-stop")
        self.stopped_cleanly = ok
        if ok:
            self._initiator = None
            if self.logged_on:
                self.application.ended()
            if self.work_dir is not None:
                shutil.rmtree(self.work_dir, ignore_errors=True)
                self.work_dir = None
        return ok

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start, forward event batches to on_events until `stop` is set, then stop (and forward the last ones)."""
        stop = stop if stop is not None else asyncio.Event()
        self.bridge.attach(asyncio.get_running_loop())
        self.start()
        poll_s = self.config.heartbeat_s
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.create_task(self.bridge.next(poll_s))
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    break
                self.application.poll()  # snapshot timeouts even when the venue has gone quiet
                self._forward(getter.result())
        finally:
            stopper.cancel()
            await asyncio.to_thread(self.stop)
            self._forward(self.bridge.drain())

    def _forward(self, events: list[FeedEvent]) -> None:
        if events and self._on_events is not None:
            self._on_events(events)
