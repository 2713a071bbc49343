"""Decoders: FIX tag=value framing (messages/s) and Databento DBN (records/s), each against the straightforward
implementation measured in the same run on the same bytes (outputs are checked to agree before timing counts).

FIX workload: the recorded JSE market data log (shared/data/fix_message_logs/fix.5.0.set.1, 13,888 messages)
repeated; synthetic messages of the same shape when the data folder is absent. Baseline: regex split at
"8=FIX", then per message split on SOH into (tag, value) pairs, BodyLength and a Python `sum` CheckSum.
`extra` has the codec without its numba batch scanner (FixCodecConfig(batch_scan=False)), same run, same output.
DBN workload: the CME ES trades sample's records tiled (ts and sequence advanced) into one uncompressed file.
Baseline: databento-dbn's decoder, one Python record object per record, converted to TradeTicks (`load_dbn`);
measured: the numpy view of the record bytes to TickColumns (`load_dbn_columns`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench.common import Result, best_of
from feeds.fix.codec import FixCodecConfig, FixMessage, FixSplitter, encode_message
from feeds.loaders.databento import DTYPES, DatabentoConfig, load_dbn, load_dbn_columns, read_bytes
from market.columns import TickColumns
from market.instruments import default_registry

AREA = "decoders"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_SPLIT = re.compile(rb"(?:^|(?<=\x01))8=FIX")


def fix_workload(n_messages: int) -> tuple[bytes, str]:
    path = DATA / "fix_message_logs" / "fix.5.0.set.1"
    if path.is_file():
        one = path.read_bytes()
        per = 13_888
        source = "JSE log fix.5.0.set.1"
    else:
        one = b"".join(
            encode_message("FIXT.1.1", [(35, "X"), (52, f"20111124-06:{i // 60 % 60:02d}:{i % 60:02d}.460"),
                                        (1180, "JSEFTSEP"), (1181, str(i)), (268, "1"), (279, "0"), (55, "J200"),
                                        (269, "3"), (270, f"{25929.17 + i / 100:.2f}"), (451, "120.26"),
                                        (273, "07:00:00.000"), (83, str(i))])
            for i in range(1, 2001))
        per = 2000
        source = "synthetic JSE-shaped messages"
    return one * max(1, n_messages // per), source


def naive_fix(data: bytes) -> int:
    """The obvious decoder: split, tag=value pairs, recompute BodyLength and CheckSum. Returns valid count."""
    starts = [m.start() for m in _SPLIT.finditer(data)]
    valid = 0
    for s, e in zip(starts, [*starts[1:], len(data)], strict=True):
        m = data[s:e]
        fields = [f.split(b"=", 1) for f in m.split(b"\x01")[:-1]]
        pairs = [(int(t), v.decode("latin-1")) for t, v in fields]
        trailer = m.rindex(b"10=")
        body_start = len(b"\x01".join(m.split(b"\x01")[:2])) + 1
        if int(pairs[1][1]) == trailer - body_start and int(pairs[-1][1]) == sum(m[:trailer]) % 256:
            valid += 1
    return valid


def dbn_workload(samples: Path, n_records: int) -> bytes:
    path = samples / "raw" / "GLBX.MDP3__test_data.trades.dbn.zst"
    data = read_bytes(path)
    meta_len = int.from_bytes(data[4:8], "little")
    head, body = data[:8 + meta_len], data[8 + meta_len:]
    reps = max(1, n_records // 4)
    rec = np.frombuffer(body * reps, dtype=DTYPES[0]).copy()
    k = np.repeat(np.arange(reps, dtype=np.uint64), 4)
    rec["ts_event"] += k * np.uint64(1_000_000)  # stays inside the mapping's date: 1 ms per repetition
    rec["ts_recv"] += k * np.uint64(1_000_000)
    rec["sequence"] += (k * np.uint64(1000)).astype(np.uint32)
    return head + rec.tobytes()


def run(quick: bool = False) -> list[Result]:
    results: list[Result] = []
    repeat = 2 if quick else 3

    data, source = fix_workload(14_000 if quick else 56_000)
    items = FixSplitter().decode_all(data)
    n = sum(1 for i in items if isinstance(i, FixMessage))
    if naive_fix(data) != n or n != len(items):
        raise AssertionError("FIX decoder and baseline disagree on the benchmark stream")
    item_by_item = FixCodecConfig(batch_scan=False)
    if FixSplitter(item_by_item).decode_all(data) != items:
        raise AssertionError("FIX batch scanner and item-by-item path disagree on the benchmark stream")
    t_ours = best_of(lambda: FixSplitter().decode_all(data), repeat)
    t_items = best_of(lambda: FixSplitter(item_by_item).decode_all(data), repeat)
    t_naive = best_of(lambda: naive_fix(data), repeat)
    results.append(Result(AREA, "FIX codec: framing + BodyLength/CheckSum + typed messages", n / t_ours,
                          "messages/s", "naive split + per-message sum()", n / t_naive,
                          f"{n:,} messages, {len(data) / 1e6:.1f} MB, {source}",
                          {"MB/s": len(data) / 1e6 / t_ours, "batch_scan=False messages/s": n / t_items}))

    samples = DATA / "databento_dbn_samples"
    if (samples / "raw").is_dir():
        n_rec = 200_000 if quick else 1_000_000
        dbn = dbn_workload(samples, n_rec)
        registry = default_registry()
        config = DatabentoConfig(symbols={"ESH1": "GC.COMEX"})
        cols = load_dbn_columns(dbn, config, registry)
        ref = load_dbn(dbn, config, registry)
        expect = TickColumns.from_ticks(ref.ticks, registry)
        if not cols.fast or not all(np.array_equal(getattr(cols.columns, f), getattr(expect, f))
                                    for f in expect.__slots__):
            raise AssertionError("DBN columnar path and record path disagree on the benchmark file")
        t_cols = best_of(lambda: load_dbn_columns(dbn, config, registry), repeat)
        t_recs = best_of(lambda: load_dbn(dbn, config, registry), 1 if quick else 2)
        results.append(Result(AREA, "DBN trades -> TickColumns (numpy record view)", n_rec / t_cols, "records/s",
                              "databento-dbn records -> TradeTicks", n_rec / t_recs,
                              f"{n_rec:,} ES trade records, {len(dbn) / 1e6:.0f} MB uncompressed"))
    return results


if __name__ == "__main__":
    for r in run(quick=True):
        print(r, r.ratio)
