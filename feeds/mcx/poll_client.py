"""The MCX polling feed over HTTP: McxPollProtocol driven by a thin httpx loop.

    client = McxPollClient(McxPollConfig(url=...), on_events=queue.put_nowait)
    await client.run(stop)        # polls until stop is set; FeedFatal on a status retrying cannot fix

One request at a time over a keep-alive connection pool. The protocol decides when to poll next; this loop
only sleeps (waking at once on stop), draws backoff delays (feeds.common.backoff, reset by every 200/304),
stamps ts_recv when a response's body has been read, and hands events to the callback. `on_raw` sees every
response / failure with its ts_recv before the protocol does (feeds.capture records through it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from typing import TypeVar

import httpx

from feeds.common.adapter import FeedEvent, FeedFatal
from feeds.common.backoff import Backoff
from feeds.common.metrics import FeedMetricsSnapshot
from feeds.mcx.poll_config import McxPollConfig
from feeds.mcx.poll_protocol import (
    McxPollProtocol,
    NextPoll,
    PollCounters,
    PollFailure,
    PollRequest,
    PollResponse,
    kept_headers,
)
from market.instruments import Registry

T = TypeVar("T")
RawHook = Callable[[PollResponse | PollFailure, int], None]


class McxPollClient:
    def __init__(
        self,
        config: McxPollConfig,
        on_events: Callable[[list[FeedEvent]], None],
        registry: Registry | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], int] = time.time_ns,
        transport: httpx.AsyncBaseTransport | None = None,
        on_raw: RawHook | None = None,
    ) -> None:
        self.config = config
        self.protocol = McxPollProtocol(config, registry)
        self.backoff = Backoff(config.backoff_initial_ms, config.backoff_max_ms, rng=rng)
        self._on_events = on_events
        self._on_raw = on_raw
        self._clock = clock
        self._transport = transport
        self.last_failure = ""

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop if stop is not None else asyncio.Event()
        cfg = self.config
        timeout = httpx.Timeout(cfg.request_timeout_ms / 1000)  # connect, and each read/write of a response
        async with httpx.AsyncClient(base_url=cfg.url, timeout=timeout, transport=self._transport,
                                     follow_redirects=False, trust_env=False) as http:
            while not stop.is_set():
                got = await _until_stopped(self._fetch(http, self.protocol.next_request()), stop)
                if got is None:
                    break
                item, ts_recv = got
                if self._on_raw is not None:
                    self._on_raw(item, ts_recv)
                if isinstance(item, PollResponse):
                    nxt = self.protocol.on_response(item, ts_recv)
                else:
                    self.last_failure = item.detail
                    nxt = self.protocol.on_failure(item)
                events = self.protocol.events()
                if events:
                    self._on_events(events)
                if self.protocol.fatal is not None:
                    raise FeedFatal(self.protocol.fatal)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._delay_ms(nxt) / 1000)

    def _delay_ms(self, nxt: NextPoll) -> float:
        if nxt.kind == "interval":
            self.backoff.reset()
            return nxt.delay_ms
        if nxt.kind == "retry_after":
            return nxt.delay_ms
        return self.backoff.next_delay_ms()

    async def _fetch(self, http: httpx.AsyncClient, req: PollRequest) -> tuple[PollResponse | PollFailure, int]:
        limit = self.config.max_body_bytes
        try:
            async with http.stream(req.method, req.target, headers=list(req.headers)) as r:
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > limit:  # enough to know it is too big; the protocol dead-letters it
                        break
                resp = PollResponse(r.status_code, kept_headers(r.headers.items()), bytes(body[: limit + 1]))
        except httpx.TimeoutException as e:
            return PollFailure(f"timed out: {type(e).__name__}", timed_out=True), self._clock()
        except httpx.RequestError as e:  # refused, reset, protocol error, undecodable content-encoding
            return PollFailure(f"{type(e).__name__}: {e}"), self._clock()
        return resp, self._clock()

    def metrics(self) -> FeedMetricsSnapshot:
        return self.protocol.metrics.snapshot()

    @property
    def counters(self) -> PollCounters:
        return self.protocol.counters


async def _until_stopped(coro: Coroutine[object, object, T], stop: asyncio.Event) -> T | None:
    """The coroutine's result, or None (it is cancelled) when stop is set first."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if not task.cancelled() else None
