"""The `commodex` command as users run it: simulate -> replay acceptance, and the live demo over real sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "commodex.cli"]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=True)


def _summary(stdout: str) -> dict:  # type: ignore[type-arg]
    line = [ln for ln in stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("scenario", "want", "forbid"),
    [("crash", "crash", ()), ("arbitrage", "arbitrage", ()), ("calm", None, ("crash", "arbitrage"))],
)
def test_simulate_then_replay(tmp_path: Path, scenario: str, want: str | None, forbid: tuple[str, ...]) -> None:
    tick_file = tmp_path / f"{scenario}.parquet"
    _run("simulate", "--scenario", scenario, "--seed", "7", "--duration", "600", "--out", str(tick_file))
    s = _summary(_run("replay", str(tick_file), "--speed", "max", "--json", "--state-dir", str(tmp_path / "st")).stdout)
    assert s["ticks_accepted"] > 100_000 and len(s["ticks_by_venue"]) >= 3
    assert s["bars"] > 0 and s["throughput_ticks_per_s"] > 0
    if want:
        assert s["signals_by_kind"].get(want, 0) >= 1
    for kind in forbid:
        assert s["signals_by_kind"].get(kind, 0) == 0


def test_replay_is_deterministic(tmp_path: Path) -> None:
    f = tmp_path / "d.parquet"
    _run("simulate", "--scenario", "dirty,spike", "--seed", "5", "--duration", "120", "--out", str(f))
    keys = ("ticks_in", "ticks_by_instrument", "bars_by_interval", "signals_by_kind", "dead_letters_by_reason")
    a, b = (_summary(_run("replay", str(f), "--json", "--no-store").stdout) for _ in range(2))
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_serves_live_dashboard_and_summarises(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "demo", "--duration", "20", "--json", "--port", str(port), "--state-dir", str(tmp_path / "st")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/status", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "dashboard did not come up"
            time.sleep(0.3)
        page = httpx.get(f"{base}/", timeout=5)
        assert page.status_code == 200 and "<canvas" in page.text
        assert len(httpx.get(f"{base}/api/instruments", timeout=5).json()["instruments"]) >= 11
        events: list[str] = []
        with httpx.stream("GET", f"{base}/api/stream", timeout=10) as r:
            for line in r.iter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
                if len(events) >= 20:
                    break
        assert "tick" in {e.split(".")[0] for e in events}
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    s = _summary(out)
    assert len(s["ticks_by_instrument"]) >= 6 and len(s["ticks_by_venue"]) >= 3
    assert s["bars"] > 0 and s["signals"] > 0
    assert s["dead_letters"] > 0 and s["latency_p50_ms"] is not None
