"""Exchange adapters: ICE decode + normalize throughput on one core, against json.loads baselines in the same run.

"IceProtocol.receive" is the whole per-frame path of the adapter (typed decode with the venue contract's
checks, symbol map, exact decimal -> fixed point, sequencing, metrics, tick construction). The baseline does
the same normalization from `json.loads` dicts with no checks and no sequencing: what a quick hand-written
adapter would do.
"""

from __future__ import annotations

import json

from bench.common import Result, best_of
from feeds.ice.config import ICE_INSTRUMENTS, IceFeedConfig
from feeds.ice.protocol import IceProtocol
from feeds.ice.schemas import SERVER_DECODER, LoginAck, Snapshot, encode, fixed_from_decimal
from market.events import QuoteTick, Side, TradeTick
from simulators.config import SimConfig
from simulators.ice_server import market_frames

AREA = "feeds"
T0 = 1_767_571_200_000_000_000
_SIDE = {"B": Side.BUY, "S": Side.SELL, "N": Side.NONE}


def _protocol() -> IceProtocol:
    p = IceProtocol(IceFeedConfig(url="ws://127.0.0.1:1/ice", api_key="bench"))
    p.connection_made(T0)
    p.receive(encode(LoginAck("B", 1000)), T0)
    for sym in ("CT", "B", "SB", "KC"):
        p.receive(encode(Snapshot(sym, 0)), T0)
    p.events()
    p.data_to_send()
    return p


def _adapter(frames: list[bytes]) -> int:
    p = _protocol()
    n = 0
    for f in frames:
        p.receive(f, T0)
        n += len(p.events())
    if p.metrics.gaps or p.metrics.dead_letters:
        raise AssertionError("benchmark traffic must be clean")
    return n


def _baseline(frames: list[bytes]) -> int:
    ids = {"CT": "CT.ICE", "B": "B.ICE", "SB": "SB.ICE", "KC": "KC.ICE"}
    out: list[TradeTick | QuoteTick] = []
    for f in frames:
        d = json.loads(f)
        iid = ids[d["symbol"]]
        if d["type"] == "trade":
            out.append(TradeTick(iid, fixed_from_decimal(d["px"]), d["qty"], d["ts"], T0, d["seq"],
                                 _SIDE[d.get("side", "N")]))
        else:
            out.append(QuoteTick(iid, fixed_from_decimal(d["bid"]), fixed_from_decimal(d["ask"]), d["bid_qty"],
                                 d["ask_qty"], d["ts"], T0, d["seq"]))
    return len(out)


def run(quick: bool = False) -> list[Result]:
    duration = 60 if quick else 300
    frames = market_frames(SimConfig(instruments=ICE_INSTRUMENTS, duration_s=duration, rate_scale=10))
    n = len(frames)
    if _adapter(frames) != n or _baseline(frames) != n:
        raise AssertionError("adapter and baseline must turn every frame into one tick")
    repeat = 2 if quick else 3
    t_adapter = best_of(lambda: _adapter(frames), repeat)
    t_base = best_of(lambda: _baseline(frames), repeat)
    t_dec = best_of(lambda: [SERVER_DECODER.decode(f) for f in frames], repeat)
    t_json = best_of(lambda: [json.loads(f) for f in frames], repeat)
    notes = f"{n} frames, {duration} s of 4 ICE instruments at rate_scale 10; one core"
    return [
        Result(AREA, "ICE decode+normalize (IceProtocol.receive)", n / t_adapter, "msgs/s",
               "json.loads + dict -> tick, no checks/sequencing", n / t_base, notes=notes),
        Result(AREA, "ICE typed decode only (msgspec, contract checks)", n / t_dec, "msgs/s", "json.loads only",
               n / t_json),
    ]


if __name__ == "__main__":
    for r in run(quick=False):
        ratio = f"{r.ratio:.2f}x" if r.ratio else ""
        print(f"{r.name:50s} {r.value:14,.0f} {r.unit:7s} {ratio:>7s} vs {r.baseline_name} "
              f"({r.baseline_value:,.0f}) {r.notes}")
