"""Capture raw venue traffic, and replay it through the same sans-I/O protocols, deterministically.

A capture is a directory: `manifest.json` plus one `<feed>.jsonl` per feed, one record per line (msgspec JSON,
kind in "kind", byte payloads base64). Records are what drives a protocol object, with the receive time the
live runner stamped:
- ice (WebSocket, feeds.ice.protocol.IceProtocol): `frame` (a received frame), `connected`, `disconnected`
  and `timer` (the runner's timer hook, which times out resyncs), recorded by wrapping the protocol
  (`RecordingFeed`): feeds/ice has no raw hook and is not changed;
- mcx (HTTP polling, feeds.mcx.poll_protocol.McxPollProtocol): `response` (status, the headers the protocol
  reads, body) and `failure` (no response), recorded through McxPollClient's `on_raw` hook;
- cme (FIX 4.4 over QuickFIX, feeds.cme.protocol.CmeMdProtocol): what the QuickFIX application hands the
  protocol, recorded by a protocol subclass (`RecordingCmeProtocol`, given to CmeClient): `frame` (every FIX
  message received, admin or application, as QuickFIX's text), `logon`, `logout`, `sent` (the MsgType of each
  message QuickFIX sends: only counted, so only the type is kept; the Logon's password never reaches the
  file), `timer` (the application's throttled poll) and `callback_error`. Replay needs no QuickFIX and no socket:
  the session layer already ran live, its effects are in the records.
The manifest names each feed's protocol, its config (secrets masked), record counts, first/last receive
time and the file's SHA-256 (checked before replay).

Replay builds each feed's protocol from the manifest's config and feeds it the records in file order;
feeds are merged by (ts_recv, feed order, record order). No clock is read, so a capture always replays to
the same ticks and dead letters, and to the same events the live protocol produced while capturing.

    manifest = capture(["ice", "cme", "mcx"], 10.0, "captures/run1")     # starts loopback simulators
    for batch in replay_capture("captures/run1"): engine.offer(batch.columns, batch.dead_letters)
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from feeds.cme.config import CmeFeedConfig
from feeds.cme.protocol import CmeMdProtocol, redact
from feeds.common.adapter import FeedEvent, SansIOFeed
from feeds.ice.config import IceFeedConfig
from feeds.ice.protocol import IceProtocol
from feeds.mcx.poll_config import McxPollConfig
from feeds.mcx.poll_protocol import McxPollProtocol, PollFailure, PollResponse
from jobs.edge import ingest_ticks
from market.columns import Ingested, TickColumns
from market.config import Config
from market.events import DeadLetter, QuoteTick, TradeTick
from market.instruments import Registry, default_registry

FORMAT = "commodex.capture"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FEEDS = ("ice", "cme", "mcx")
PROTOCOLS = {"ice": "ice.ws.v1", "cme": "cme.fix44.v1", "mcx": "mcx.poll.v1"}


class CaptureError(ValueError):
    """The directory is not a readable capture (missing manifest, changed or truncated file, bad record)."""


# -- records ------------------------------------------------------------------------------------------------

class Record(msgspec.Struct, frozen=True, tag_field="kind"):
    ts_recv_ns: int  # the live runner's clock when this happened (UTC ns)
    feed: str


class Frame(Record, frozen=True, tag="frame"):
    raw: bytes
    text: bool = False  # the transport handed it over as str


class Connected(Record, frozen=True, tag="connected"):
    pass


class Disconnected(Record, frozen=True, tag="disconnected"):
    reason: str


class Timer(Record, frozen=True, tag="timer"):
    pass


class Response(Record, frozen=True, tag="response"):
    status: int
    headers: dict[str, str]
    raw: bytes


class Failure(Record, frozen=True, tag="failure"):
    detail: str
    timed_out: bool = False


class Logon(Record, frozen=True, tag="logon"):
    pass


class Logout(Record, frozen=True, tag="logout"):
    pass


class Sent(Record, frozen=True, tag="sent"):
    msg_type: str  # FIX MsgType (35) of a message QuickFIX sent


class CallbackError(Record, frozen=True, tag="callback_error"):
    callback: str
    error_type: str
    error: str
    raw: str  # password fields masked


CaptureRecord = Frame | Connected | Disconnected | Timer | Response | Failure | Logon | Logout | Sent | CallbackError
RECORD_KINDS = ("frame", "connected", "disconnected", "timer", "response", "failure", "logon", "logout", "sent",
                "callback_error")
_RECORD_DECODER = msgspec.json.Decoder(CaptureRecord)
_ENCODER = msgspec.json.Encoder()


class FeedManifest(msgspec.Struct, frozen=True):
    name: str
    file: str
    protocol: str  # PROTOCOLS[name]
    config: dict[str, Any]  # the protocol's config, secrets masked
    records: int
    counts: dict[str, int]  # records by kind
    first_ns: int
    last_ns: int
    sha256: str


class CaptureManifest(msgspec.Struct, frozen=True):
    format: str
    version: int
    start_ns: int
    end_ns: int
    feeds: list[FeedManifest]
    source: str = ""  # where the traffic came from ("loopback simulators", URLs)


# -- writing ------------------------------------------------------------------------------------------------

class FeedRecorder:
    """Appends one feed's records to its file, keeping counts and the running hash."""

    def __init__(self, name: str, path: Path, config: dict[str, Any]) -> None:
        self.name = name
        self.path = path
        self.config = config
        self._file: IO[bytes] = path.open("xb")
        self._hash = hashlib.sha256()
        self.counts: Counter[str] = Counter()
        self.first_ns = 0
        self.last_ns = 0

    def write(self, rec: CaptureRecord) -> None:
        line = _ENCODER.encode(rec) + b"\n"
        self._file.write(line)
        self._hash.update(line)
        if not self.counts:
            self.first_ns = rec.ts_recv_ns
        self.last_ns = rec.ts_recv_ns
        self.counts[type(rec).__struct_config__.tag] += 1  # type: ignore[index]

    def close(self) -> FeedManifest:
        self._file.close()
        return FeedManifest(self.name, self.path.name, PROTOCOLS[self.name], self.config, sum(self.counts.values()),
                            dict(sorted(self.counts.items())), self.first_ns, self.last_ns, self._hash.hexdigest())


class CaptureWriter:
    def __init__(self, out_dir: str | Path) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if any(self.dir.iterdir()):  # never mix with, or overwrite, an earlier capture
            raise FileExistsError(f"{self.dir} is not empty")
        self.recorders: dict[str, FeedRecorder] = {}

    def feed(self, name: str, config: dict[str, Any]) -> FeedRecorder:
        if name not in PROTOCOLS:
            raise ValueError(f"unknown feed {name!r}; known: {', '.join(FEEDS)}")
        rec = self.recorders[name] = FeedRecorder(name, self.dir / f"{name}.jsonl", config)
        return rec

    def close(self, start_ns: int, end_ns: int, source: str = "") -> CaptureManifest:
        manifest = CaptureManifest(FORMAT, FORMAT_VERSION, start_ns, end_ns,
                                   [r.close() for r in self.recorders.values()], source)
        tmp = self.dir / (MANIFEST + ".tmp")
        tmp.write_bytes(msgspec.json.format(_ENCODER.encode(manifest)) + b"\n")
        os.replace(tmp, self.dir / MANIFEST)  # the manifest appears complete or not at all
        return manifest


class RecordingFeed(SansIOFeed):
    """A protocol wrapped so that everything the runner feeds it is recorded first (state stays in `inner`)."""

    def __init__(self, inner: SansIOFeed, record: Callable[[CaptureRecord], None], feed: str,
                 clock: Callable[[], int] = time.time_ns) -> None:  # no super().__init__: inner holds the state
        self.inner = inner
        self.name = inner.name
        self.metrics = inner.metrics
        self._record = record
        self._feed = feed
        self._clock = clock

    @property  # type: ignore[override]
    def fatal(self) -> str | None:
        return self.inner.fatal

    @fatal.setter
    def fatal(self, value: str | None) -> None:
        self.inner.fatal = value

    @property  # type: ignore[override]
    def logged_in(self) -> bool:
        return self.inner.logged_in

    @logged_in.setter
    def logged_in(self, value: bool) -> None:
        self.inner.logged_in = value

    def connection_made(self, now_ns: int) -> None:
        self._record(Connected(now_ns, self._feed))
        self.inner.connection_made(now_ns)

    def connection_lost(self, reason: str) -> None:
        self._record(Disconnected(self._clock(), self._feed, reason))
        self.inner.connection_lost(reason)

    def receive(self, frame: bytes | str, ts_recv: int) -> None:
        text = isinstance(frame, str)
        self._record(Frame(ts_recv, self._feed, frame.encode() if isinstance(frame, str) else bytes(frame), text))
        self.inner.receive(frame, ts_recv)

    def heartbeat(self, now_ns: int) -> None:
        self.inner.heartbeat(now_ns)  # outbound only: nothing to record

    def poll(self, now_ns: int) -> None:
        self._record(Timer(now_ns, self._feed))
        self.inner.poll(now_ns)

    def events(self) -> list[FeedEvent]:
        return self.inner.events()

    def data_to_send(self) -> list[bytes]:
        return self.inner.data_to_send()


class RecordingCmeProtocol(CmeMdProtocol):
    """CmeMdProtocol recording every call that drives it before running it. The application calls it under its
    lock, from QuickFIX's thread or the runner's, so records are written one at a time and in call order.
    `on_events` (optional) sees each batch of events as the application takes it, under that lock: exactly what
    the live protocol emitted, in emission order (the batches then cross threads to the consumer)."""

    def __init__(self, config: CmeFeedConfig, registry: Registry | None,
                 record: Callable[[CaptureRecord], None], feed: str = "cme",
                 clock: Callable[[], int] = time.time_ns,
                 on_events: Callable[[list[FeedEvent]], None] | None = None) -> None:
        super().__init__(config, registry)
        self._record = record
        self._feed = feed
        self._clock = clock
        self._on_events = on_events

    def events(self) -> list[FeedEvent]:
        out = super().events()
        if out and self._on_events is not None:
            self._on_events(out)
        return out

    def receive(self, frame: bytes | str, ts_recv: int) -> None:
        raw = frame.encode() if isinstance(frame, str) else bytes(frame)
        self._record(Frame(ts_recv, self._feed, raw, isinstance(frame, str)))
        super().receive(frame, ts_recv)

    def on_logon(self, now_ns: int) -> None:
        self._record(Logon(now_ns, self._feed))
        super().on_logon(now_ns)

    def on_logout(self, now_ns: int) -> None:
        self._record(Logout(now_ns, self._feed))
        super().on_logout(now_ns)

    def sent(self, raw: str) -> None:
        self._record(Sent(self._clock(), self._feed, fix_msg_type(raw)))
        super().sent(raw)

    def poll(self, now_ns: int) -> None:
        self._record(Timer(now_ns, self._feed))
        super().poll(now_ns)

    def callback_error(self, callback: str, error: BaseException, raw: str, ts_recv: int) -> None:
        self._record(CallbackError(ts_recv, self._feed, callback, type(error).__name__, str(error), redact(raw)))
        super().callback_error(callback, error, raw, ts_recv)


def fix_msg_type(raw: str) -> str:
    """The MsgType (35) of a FIX message text ("" if it has none)."""
    i = raw.find("\x0135=")
    if i < 0:
        return ""
    j = raw.find("\x01", i + 4)
    return raw[i + 4:j if j >= 0 else None]


def captured_error(error_type: str, message: str) -> Exception:
    """An exception whose type name and text are the recorded ones (what callback_error reports)."""
    return type(error_type, (Exception,), {})(message)  # type: ignore[no-any-return]


def poll_record(feed: str, item: PollResponse | PollFailure, ts_recv: int) -> Response | Failure:
    if isinstance(item, PollResponse):
        return Response(ts_recv, feed, item.status, item.headers, item.body)
    return Failure(ts_recv, feed, item.detail, item.timed_out)


# -- capturing live traffic ---------------------------------------------------------------------------------

class CaptureOptions(Config, frozen=True):
    ice_url: str = ""  # "": start the loopback ICE simulator
    mcx_url: str = ""  # "": start the loopback MCX simulator
    cme_host: str = "127.0.0.1"
    cme_port: int = 0  # 0: start the loopback CME simulator
    seed: int = 0  # simulators' market (the loopback venues share one: same seed, scenarios, rate and epoch)
    scenarios: tuple[str, ...] = ("calm",)
    rate_scale: float = 1.0
    ice_heartbeat_ms: int = 1000
    ice_stale_after_ms: int = 3000
    mcx_poll_interval_ms: int = 250
    cme_heartbeat_s: int = 1


EventSink = Callable[[str, list[FeedEvent]], None]


def capture(feeds: Sequence[str], duration_s: float, out_dir: str | Path, *, options: CaptureOptions | None = None,
            ice_api_key: str = "", cme_password: str = "", on_events: EventSink | None = None,
            registry: Registry | None = None) -> CaptureManifest:
    """Record `duration_s` of raw traffic of `feeds` into `out_dir` (blocking; see capture_async)."""
    return asyncio.run(capture_async(feeds, duration_s, out_dir, options=options, ice_api_key=ice_api_key,
                                     cme_password=cme_password, on_events=on_events, registry=registry))


async def capture_async(feeds: Sequence[str], duration_s: float, out_dir: str | Path, *,
                        options: CaptureOptions | None = None, ice_api_key: str = "", cme_password: str = "",
                        on_events: EventSink | None = None, registry: Registry | None = None) -> CaptureManifest:
    """Run each feed's client against its venue (a loopback simulator unless options name a URL / port),
    recording everything its protocol is fed. `on_events(feed, events)` sees what the live protocols emitted
    (on the event loop's thread; for cme on QuickFIX's thread, as the protocol emits them). The loopback
    simulators show one market: the whole generated market with one seed, scenario list, rate and epoch, each
    venue publishing its own instruments. The manifest is written even when a feed fails; the failure (e.g.
    FeedFatal) is raised after it."""
    from feeds.common.adapter import FeedRunner
    from feeds.common.backoff import Backoff
    from feeds.ice.client import connect_websocket
    from feeds.mcx.poll_client import McxPollClient
    from simulators.config import SimConfig
    from simulators.ice_server import IceServer, IceServerConfig
    from simulators.mcx_server import McxServer, McxServerConfig

    opts = options or CaptureOptions()
    names = list(dict.fromkeys(feeds))
    unknown = [f for f in names if f not in PROTOCOLS]
    if not names or unknown:
        raise ValueError(f"feeds must be some of {', '.join(FEEDS)}, got {list(feeds)}")
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    reg = registry or default_registry()
    writer = CaptureWriter(out_dir)
    stop = asyncio.Event()
    servers: list[IceServer | McxServer] = []
    cme_servers: list[Any] = []  # simulators.cme_server.CmeServer (QuickFIX: imported only when asked for)
    tasks: list[asyncio.Task[None]] = []
    sources: list[str] = []

    def sink(feed: str) -> Callable[[list[FeedEvent]], None]:
        return (lambda evs: on_events(feed, evs)) if on_events is not None else (lambda evs: None)

    start_ns = time.time_ns()
    market = SimConfig(duration_s=0.0, seed=opts.seed, scenarios=opts.scenarios, rate_scale=opts.rate_scale)
    epoch_ns = start_ns
    failure: BaseException | None = None
    try:
        if "ice" in names:
            ice_url, key = opts.ice_url, ice_api_key
            if not ice_url:
                ice_server = IceServer(IceServerConfig(sim=market, epoch_ns=epoch_ns), reg)
                await ice_server.start()
                servers.append(ice_server)
                ice_url, key = ice_server.url, key or "loopback"
            ice_cfg = IceFeedConfig(url=ice_url, api_key=key, heartbeat_ms=opts.ice_heartbeat_ms,
                                    stale_after_ms=opts.ice_stale_after_ms)
            sources.append(f"ice: {ice_url}")
            rec = writer.feed("ice", ice_cfg.redacted())
            proto = RecordingFeed(IceProtocol(ice_cfg, reg), rec.write, "ice")
            timeout_s = ice_cfg.connect_timeout_ms / 1000
            runner = FeedRunner(proto, lambda: connect_websocket(ice_url, timeout_s), sink("ice"),
                                heartbeat_ms=ice_cfg.heartbeat_ms, stale_after_ms=ice_cfg.stale_after_ms,
                                backoff=Backoff(ice_cfg.backoff_initial_ms, ice_cfg.backoff_max_ms),
                                connect_timeout_ms=ice_cfg.connect_timeout_ms)
            tasks.append(asyncio.create_task(runner.run(stop)))
        if "cme" in names:
            from feeds.cme.client import CmeClient
            from simulators.cme_server import CmeServer, CmeServerConfig

            host, port = opts.cme_host, opts.cme_port
            if not port:
                cme_server = CmeServer(CmeServerConfig(sim=market, epoch_ns=epoch_ns), reg)
                cme_servers.append(cme_server)
                host, port = "127.0.0.1", await asyncio.to_thread(cme_server.start)
            cme_cfg = CmeFeedConfig(host=host, port=port, heartbeat_s=opts.cme_heartbeat_s, password=cme_password)
            sources.append(f"cme: fix://{host}:{port}")
            crec = writer.feed("cme", cme_cfg.redacted())
            # events are taken where the protocol emits them (QuickFIX's thread, under the application's lock):
            # what the live protocol produced, in order, whatever the hand-over to this loop does afterwards
            proto_cme = RecordingCmeProtocol(cme_cfg, reg, crec.write, on_events=sink("cme"))
            client = CmeClient(cme_cfg, None, reg, protocol=proto_cme)
            tasks.append(asyncio.create_task(client.run(stop)))
        if "mcx" in names:
            mcx_url = opts.mcx_url
            if not mcx_url:
                mcx_server = McxServer(McxServerConfig(sim=market, epoch_ns=epoch_ns, warmup_retry_after_s=0), reg)
                await mcx_server.start()
                servers.append(mcx_server)
                mcx_url = mcx_server.url
            mcx_cfg = McxPollConfig(url=mcx_url, poll_interval_ms=opts.mcx_poll_interval_ms)
            sources.append(f"mcx: {mcx_url}")
            mrec = writer.feed("mcx", mcx_cfg.to_dict())
            mcx_client = McxPollClient(mcx_cfg, sink("mcx"), reg,
                                       on_raw=lambda item, ts: mrec.write(poll_record("mcx", item, ts)))
            tasks.append(asyncio.create_task(mcx_client.run(stop)))
        done, _ = await asyncio.wait(tasks, timeout=duration_s, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                failure = t.exception()
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and failure is None and not isinstance(r, asyncio.CancelledError):
                failure = r
        for s in servers:
            await s.stop()
        for cs in cme_servers:
            await asyncio.to_thread(cs.stop)
        manifest = writer.close(start_ns, time.time_ns(), "; ".join(sources))
    if failure is not None:
        raise failure
    return manifest


# -- reading and replay -------------------------------------------------------------------------------------

def is_capture(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def read_manifest(path: str | Path) -> CaptureManifest:
    p = Path(path) / MANIFEST
    try:
        manifest = msgspec.json.decode(p.read_bytes(), type=CaptureManifest)
    except FileNotFoundError:
        raise CaptureError(f"{path}: no {MANIFEST} (not a capture, or the capture did not finish)") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise CaptureError(f"{p}: {e}") from None
    if manifest.format != FORMAT or manifest.version != FORMAT_VERSION:
        raise CaptureError(f"{p}: format {manifest.format} v{manifest.version}, this reader knows {FORMAT}"
                           f" v{FORMAT_VERSION}")
    for f in manifest.feeds:
        if PROTOCOLS.get(f.name) != f.protocol:
            raise CaptureError(f"{p}: feed {f.name!r} with protocol {f.protocol!r} is not replayable here")
    return manifest


def verify(path: str | Path, manifest: CaptureManifest | None = None) -> CaptureManifest:
    """Check every feed file against the manifest's hash (a changed or truncated capture is refused)."""
    manifest = manifest or read_manifest(path)
    for f in manifest.feeds:
        h = hashlib.sha256()
        with (Path(path) / f.file).open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        if h.hexdigest() != f.sha256:
            raise CaptureError(f"{path}/{f.file}: content does not match the manifest's sha256")
    return manifest


def read_records(path: str | Path, feed: FeedManifest) -> Iterator[CaptureRecord]:
    file = Path(path) / feed.file
    with file.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                rec = _RECORD_DECODER.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise CaptureError(f"{file}:{n}: {e}") from None
            if rec.feed != feed.name:
                raise CaptureError(f"{file}:{n}: record of feed {rec.feed!r} in the {feed.name!r} file")
            yield rec


def build_protocol(feed: FeedManifest, registry: Registry) -> SansIOFeed:
    if feed.name == "ice":
        return IceProtocol(IceFeedConfig.from_dict(feed.config), registry)
    if feed.name == "cme":
        return CmeMdProtocol(CmeFeedConfig.from_dict(feed.config), registry)
    return McxPollProtocol(McxPollConfig.from_dict(feed.config), registry)


def apply_record(proto: SansIOFeed, rec: CaptureRecord) -> None:
    """Drive the protocol exactly as the live runner did."""
    if isinstance(rec, Frame):
        proto.receive(rec.raw.decode() if rec.text else rec.raw, rec.ts_recv_ns)
    elif isinstance(rec, Timer):
        proto.poll(rec.ts_recv_ns)
    elif isinstance(rec, Connected):
        proto.connection_made(rec.ts_recv_ns)
    elif isinstance(rec, Disconnected):
        proto.connection_lost(rec.reason)
    elif isinstance(proto, McxPollProtocol) and isinstance(rec, Response):
        proto.on_response(PollResponse(rec.status, rec.headers, rec.raw), rec.ts_recv_ns)
    elif isinstance(proto, McxPollProtocol) and isinstance(rec, Failure):
        proto.on_failure(PollFailure(rec.detail, rec.timed_out))
    elif isinstance(proto, CmeMdProtocol) and isinstance(rec, Sent):
        proto.sent(f"\x0135={rec.msg_type}\x01")
    elif isinstance(proto, CmeMdProtocol) and isinstance(rec, Logon):
        proto.on_logon(rec.ts_recv_ns)
    elif isinstance(proto, CmeMdProtocol) and isinstance(rec, Logout):
        proto.on_logout(rec.ts_recv_ns)
    elif isinstance(proto, CmeMdProtocol) and isinstance(rec, CallbackError):
        proto.callback_error(rec.callback, captured_error(rec.error_type, rec.error), rec.raw, rec.ts_recv_ns)
    else:
        raise CaptureError(f"a {type(rec).__struct_config__.tag!r} record cannot drive the {proto.name} protocol")
    if isinstance(proto, CmeMdProtocol):
        proto.requests()  # what it asked QuickFIX to send: the live session sent it (its `sent` records follow)


def replay_events(path: str | Path, feeds: Iterable[str] | None = None,
                  registry: Registry | None = None) -> Iterator[FeedEvent]:
    """Every tick and dead letter the captured traffic decodes to, feeds merged by receive time."""
    reg = registry or default_registry()
    manifest = verify(path)
    wanted = set(feeds) if feeds is not None else None
    chosen = [f for f in manifest.feeds if wanted is None or f.name in wanted]
    if wanted is not None and wanted - {f.name for f in chosen}:
        raise CaptureError(f"{path}: no feed(s) {sorted(wanted - {f.name for f in chosen})} in the capture")
    protos = [build_protocol(f, reg) for f in chosen]

    def keyed(k: int) -> Iterator[tuple[int, int, int, CaptureRecord]]:
        for n, rec in enumerate(read_records(path, chosen[k])):
            yield rec.ts_recv_ns, k, n, rec

    for _, k, _, rec in heapq.merge(*(keyed(k) for k in range(len(chosen)))):
        apply_record(protos[k], rec)
        yield from protos[k].events()


def replay_capture(path: str | Path, registry: Registry | None = None, batch_ticks: int = 65_536,
                   feeds: Iterable[str] | None = None) -> Iterator[Ingested]:
    """The replayed events as edge batches (jobs.edge: each tick keeps its captured ts_recv); the protocols'
    dead letters ride along in the batch where they occurred."""
    if batch_ticks < 1:
        raise ValueError("batch_ticks must be >= 1")
    reg = registry or default_registry()
    ticks: list[TradeTick | QuoteTick] = []
    dead: list[DeadLetter] = []
    for e in replay_events(path, feeds, reg):
        if isinstance(e, DeadLetter):
            dead.append(e)
        else:
            ticks.append(e)
            if len(ticks) >= batch_ticks:
                yield _batch(ticks, dead, reg)
                ticks, dead = [], []
    if ticks or dead:
        yield _batch(ticks, dead, reg)


def ingest_capture(path: str | Path, registry: Registry | None = None) -> Ingested:
    """The whole capture as one batch (what `commodex replay` takes from a tick file)."""
    parts = list(replay_capture(path, registry))
    return Ingested(TickColumns.concat([p.columns for p in parts]), [d for p in parts for d in p.dead_letters])


def _batch(ticks: list[TradeTick | QuoteTick], dead: list[DeadLetter], registry: Registry) -> Ingested:
    ing = ingest_ticks(ticks, registry)  # type: ignore[arg-type]
    return Ingested(ing.columns, dead + ing.dead_letters)
