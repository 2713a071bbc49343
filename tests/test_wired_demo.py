"""`commodex demo` through the wire: ICE WebSocket, CME FIX and MCX HTTP venue simulators on loopback, read by
the three venue adapters, so the summary's per-venue counts prove the adapters work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from market.instruments import default_registry
from simulators.config import SimConfig
from simulators.market import MarketGenerator, venue_subset

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "commodex.cli"]
FEEDS = ("ice", "cme", "mcx", "fx")


def _demo(tmp_path: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([*CLI, "demo", "--json", "--no-serve", "--state-dir", str(tmp_path / "st"), *extra],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    return _demo(tmp_path_factory.mktemp("wire"), "--duration", "8")


def test_every_venue_delivers_through_its_adapter(wired: dict) -> None:  # type: ignore[type-arg]
    s = wired
    assert s["source"] == "wire"
    venues = s["ticks_by_venue"]
    for venue in ("ICE", "MCX", "COMEX", "NYMEX", "CBOT", "FX"):
        assert venues.get(venue, 0) > 0, venue
    assert set(s["ticks_by_instrument"]) == set(default_registry().ids)  # every instrument is served
    feeds = s["feeds"]
    assert set(feeds) == set(FEEDS)
    for name in ("ice", "cme", "mcx"):
        f = feeds[name]
        assert f["ticks"] > 0 and f["messages"] > 0 and f["error"] == "", (name, f)
        assert f["endpoint"].startswith(("ws://127.0.0.1:", "fix://127.0.0.1:", "http://127.0.0.1:"))
        for key in ("gaps", "reconnects", "decode_errors", "duplicates", "lag_p50_ms"):
            assert key in f
    # the engine saw exactly what the adapters delivered, and each venue's ticks came from its own adapter
    assert s["ticks_in"] == sum(f["ticks"] + f["dead_letters"] for f in feeds.values())
    assert venues["ICE"] <= feeds["ice"]["ticks"]
    assert venues["COMEX"] + venues["NYMEX"] + venues["CBOT"] <= feeds["cme"]["ticks"]
    assert venues["MCX"] <= feeds["mcx"]["ticks"]
    assert venues["FX"] <= feeds["fx"]["ticks"]


def test_the_wired_demo_shows_signals_and_dead_letters(wired: dict) -> None:  # type: ignore[type-arg]
    s = wired
    assert s["bars"] > 0 and s["signals"] > 0 and s["latency_p50_ms"] is not None
    assert s["dead_letters"] > 0
    # the dirty scenario's faults now arrive as venue-level faults the adapters report
    assert sum(s["feeds"][f]["gaps"] + s["feeds"][f]["duplicates"] for f in ("ice", "cme")) > 0


def test_inproc_source_still_works(tmp_path: Path) -> None:
    s = _demo(tmp_path, "--duration", "3", "--source", "inproc")
    assert s["source"] == "inproc" and "feeds" not in s
    assert s["ticks_accepted"] > 0 and len(s["ticks_by_venue"]) >= 5


def test_venues_cut_one_market_out_of_the_whole() -> None:
    """Restricting the generator to a venue's instruments would change the paths (its random draws depend on
    the rows drawn); cutting the venue's rows out of the whole market keeps every venue on one market."""
    reg = default_registry()
    sim = SimConfig(duration_s=130.0, seed=3)
    cme = ("CL.NYMEX", "GC.COMEX", "ZW.CBOT")
    idx = np.array([reg.get(i).index for i in cme], dtype=np.int32)
    whole = [venue_subset(b, idx) for b in MarketGenerator(sim, reg).blocks()]
    alone = list(MarketGenerator(sim.replace(instruments=cme), reg).blocks())
    assert all(set(np.unique(b.inst).tolist()) <= set(idx.tolist()) for b in whole)
    assert len(whole) == len(alone) == 3
    assert not np.array_equal(whole[-1].price, alone[-1].price, equal_nan=True)
    again = [venue_subset(b, idx) for b in MarketGenerator(sim, reg).blocks()]
    assert all(np.array_equal(a.price, b.price, equal_nan=True) and np.array_equal(a.seq, b.seq)
               for a, b in zip(whole, again, strict=True))


_SIGINT_CAUGHT = """
import signal
from pathlib import Path

def caught():
    status = Path("/proc/self/status").read_text()
    return bool(int(status.split("SigCgt:")[1].split()[0], 16) & (1 << (signal.SIGINT - 1)))

signal.signal(signal.SIGINT, lambda signum, frame: None)  # like asyncio's stop handler
before = caught()
import {module}
print(before, caught())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from Linux /proc")
def test_the_fix_modules_keep_ctrl_c() -> None:
    """Importing quickfix resets SIGINT to the default action: the demo would die on Ctrl-C without its clean
    shutdown. feeds.cme.client (imported by the venue too) re-installs Python's handler (a fresh process:
    imports happen once)."""
    out = subprocess.run([sys.executable, "-c", _SIGINT_CAUGHT.format(module="simulators.cme_server")], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True"]
