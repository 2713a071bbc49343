"""The dashboard as a trader sees it: `commodex demo` in a subprocess, headless Chromium driven over the
Chrome DevTools Protocol, assertions on the live DOM.

No browser-automation package: Chromium runs with `--remote-debugging-port=0` (the port it picked is in
DevToolsActivePort in its profile folder) and the test speaks CDP (JSON over a websocket) through the small
RFC 6455 client below. (`--dump-dom --virtual-time-budget` cannot be used: the page holds an EventSource
open, so the page never settles and the dump never comes.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from commodex.embedded.storage import StoreCounts
from market.events import Bar, DeadLetter, Signal, TradeTick
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from serving.app import create_app
from serving.config import ServingConfig
from serving.live import LiveHub
from serving.server import DashboardServer
from serving.services import Services

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("COMMODEX_CHROMIUM", "/usr/bin/chromium"))
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (install Debian's `chromium` or set COMMODEX_CHROMIUM)")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,800"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- a minimal CDP client: RFC 6455 websocket over a plain socket ------------------------------------------

class CDPError(RuntimeError):
    pass


class CDP:
    """One page session: `call(method, **params)` returns the result; events seen meanwhile go to `events`."""

    def __init__(self, ws_url: str, timeout_s: float = 10.0) -> None:
        u = urllib.parse.urlsplit(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout_s)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise CDPError(f"websocket upgrade refused: {head[:200]!r}")
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise CDPError("DevTools closed the connection")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])  # FIN, one frame per message
        if n < 126:
            head += bytes([0x80 | n])  # clients must mask
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + masked)

    def _recv_message(self) -> bytes:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            mask = self._take(4) if b1 & 0x80 else b""
            data = self._take(n)
            if mask:
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise CDPError("DevTools sent close")
            if opcode == 0x9:
                self._send_frame(0xA, data)  # ping -> pong
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        self._send_frame(0x1, json.dumps({"id": mid, "method": method, "params": params}).encode())
        while True:
            msg = json.loads(self._recv_message())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg["result"]  # type: ignore[no-any-return]
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise CDPError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def page_errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser-logged errors (failed loads) so far."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, b"")
        self.sock.close()


# ---- processes ---------------------------------------------------------------------------------------------

def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "commodex.cli", "demo", "--duration", "90", "--port", str(port),
         "--state-dir", str(tmp_path / "state")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/api/status", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None:
                raise AssertionError(f"demo exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
            assert time.monotonic() < deadline, "demo did not serve within 30 s"
            time.sleep(0.2)
        yield base
    finally:
        _stop(proc)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[CDP]:
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen([str(CHROMIUM), *CHROMIUM_FLAGS, "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cdp = None
    try:
        active = profile / "DevToolsActivePort"  # "<port>\n/devtools/browser/<id>" once DevTools listens
        deadline = time.monotonic() + 15
        while not (active.exists() and active.read_text().count("\n") >= 1):
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port within 15 s"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        cdp = CDP(ws)
        for domain in ("Page", "Runtime", "Log"):
            cdp.call(f"{domain}.enable")
        yield cdp
    finally:
        if cdp is not None:
            cdp.close()
        _stop(proc)  # type: ignore[arg-type]


# ---- the dashboard -----------------------------------------------------------------------------------------

DOM_STATE = """(() => {
  const conn = document.getElementById("conn");
  if (!conn) return null;  // still about:blank, or the document is not parsed yet
  const sel = document.querySelector("#prices tbody tr.selected");
  return {
    conn: conn.textContent, connClass: conn.className,
    rows: [...document.querySelectorAll("#prices tbody tr")].map((tr) => [...tr.cells].map((td) => td.textContent)),
    selected: sel ? sel.cells[0].textContent : null,
    signals: [...document.querySelectorAll("#signals li")].map((li) => ({cls: li.className, text: li.textContent})),
    legend: document.getElementById("legend").textContent,
    search: location.search,
    barRequests: performance.getEntriesByType("resource").map((e) => e.name).filter((n) => n.includes("/api/bars")),
  };
})()"""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _priced(row: list[str]) -> bool:
    """Instrument, venue, last, bid, ask, time: a row the live ticks filled."""
    return len(row) == 6 and all(_is_number(c) for c in row[2:5]) and len(row[5]) >= 8


def _wait_for(cdp: CDP, ready: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        dom: dict[str, Any] | None = cdp.evaluate(DOM_STATE)
        if dom is not None and ready(dom):
            return dom
        if time.monotonic() > deadline:
            assert dom is not None, "the dashboard page never loaded"
            return dom
        time.sleep(0.3)


@needs_chromium
def test_dashboard_goes_live_with_prices_signals_and_candles(demo: str, page: CDP) -> None:
    page.call("Page.navigate", url=f"{demo}/?instrument=GC.COMEX&interval=1s")

    def live(d: dict[str, Any]) -> bool:
        return (d["conn"] == "live" and any(map(_priced, d["rows"])) and bool(d["signals"])
                and d["legend"].startswith(tuple("0123456789")))

    dom = _wait_for(page, live, 25)
    assert dom["conn"] == "live" and "up" in dom["connClass"].split(), dom["conn"]
    assert len(dom["rows"]) >= 11 and any(map(_priced, dom["rows"])), dom["rows"]
    assert dom["selected"] == "GC.COMEX"
    assert dom["signals"], "no signal listed"
    kinds = {s["cls"] for s in dom["signals"]}
    assert kinds <= {"kind-arbitrage", "kind-anomaly", "kind-crash", "kind-forecast"}, kinds
    # prices in summaries are decimals, never fixed-point floats like "1e+09"
    assert not [s["text"] for s in dom["signals"] if "e+" in s["text"]]
    assert " O " in dom["legend"] and " C " in dom["legend"], dom["legend"]  # a 1s candle is drawn

    # switching instrument reloads that instrument's history and redraws
    page.evaluate('(() => { const s = document.getElementById("instrument"); s.value = "CL.NYMEX";'
                  ' s.dispatchEvent(new Event("change")); })()')
    dom = _wait_for(page, lambda d: d["selected"] == "CL.NYMEX" and bool(d["legend"])
                    and any("instrument=CL.NYMEX" in u for u in d["barRequests"]), 10)
    assert dom["selected"] == "CL.NYMEX" and "instrument=CL.NYMEX" in dom["search"]
    assert any("instrument=CL.NYMEX" in u and "interval=1s" in u for u in dom["barRequests"]), dom["barRequests"]
    assert dom["legend"], "no candle after switching instrument"
    assert page.page_errors() == []


# ---- shutting down with a dashboard open ------------------------------------------------------------------

class _EmptyStore:
    """The stream never reads history; these answers only satisfy the HistoryStore protocol."""

    def bars(self, instrument_id: str, interval_ns: int, start_ns: int | None = None, end_ns: int | None = None,
             limit: int = 500) -> list[Bar]:
        return []

    def signals(self, kind: str | None = None, instrument: str | None = None, since_ns: int | None = None,
                limit: int = 100) -> list[Signal]:
        return []

    def dead_letters(self, reason: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return []

    def counts(self) -> StoreCounts:
        return StoreCounts(0, 0, 0, 0)


async def test_server_exits_while_a_dashboard_stream_is_open() -> None:
    """uvicorn waits for open responses before exiting; an SSE response never ends unless the hub closes it."""
    hub = LiveHub()
    services = Services.build(_EmptyStore(), default_registry(), config=ServingConfig(status_interval_s=0), hub=hub)
    port = _free_port()
    server = DashboardServer(uvicorn.Config(create_app(services), host="127.0.0.1", port=port,
                                            log_level="warning", lifespan="on"), hub)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "server failed to start"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(timeout=10) as client, \
                client.stream("GET", f"http://127.0.0.1:{port}/api/stream?topics=tick") as r:
            chunks = r.aiter_bytes()
            assert b"connected" in await anext(chunks)
            hub.publish(TradeTick("GC.COMEX", to_fixed("2650.1"), 1, 1, 1))
            assert b"event: tick" in await anext(chunks)
            server.should_exit = True

            async def rest() -> bytes:
                return b"".join([c async for c in chunks])

            await asyncio.wait_for(rest(), 10)  # the stream ENDS (before the fix: waited forever)
        await asyncio.wait_for(serving, 10)
        assert hub.closed and hub.stats().clients == 0
    finally:
        if not serving.done():
            server.force_exit = True
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
