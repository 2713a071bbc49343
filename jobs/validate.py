"""Tick validation: the first stateful stage after the edge (numba kernel, pure-Python reference).

`Validator.on_batch(cols)` returns a reason code per row (0 = accepted) and the sequence gaps found;
`dead_letters` and `gap_signals` turn those into records. The accepted rows are `cols.take(out.accepted)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np

from jobs.validate_kernel import GAP_EXPECTED, GAP_GOT, GAP_INSTRUMENT, GAP_ROW, validate_batch, window_mask
from jobs.validate_reference import validate_rows
from market.codec import encode
from market.columns import TickColumns
from market.config import Config
from market.events import AnomalySignal, AnomalyType, DeadLetter, Tick
from market.instruments import Registry
from market.rejects import DETAIL, Reason

Impl = Literal["numba", "python"]
NS_PER_MS = 1_000_000


class ValidateConfig(Config, frozen=True):
    max_future_ms: int = 5000  # ts_event may lead ts_recv by at most this much (clock skew allowance)
    seq_window: int = 64  # seqs this far behind the newest are checked for duplicates; older ones are stale

    def __post_init__(self) -> None:
        if not 1 <= self.seq_window <= 64:
            raise ValueError("seq_window must be in 1..64 (one 64-bit bitmap per instrument)")
        if self.max_future_ms < 0:
            raise ValueError("max_future_ms must be >= 0")


class ValidatorSnapshot(msgspec.Struct, frozen=True, tag="validator.v1"):
    max_seq: list[int]  # newest accepted seq per instrument index (0 = none yet)
    seen: list[int]  # bitmap per instrument: bit d set = seq max_seq - d accepted


@dataclass(slots=True)
class ValidateOutput:
    reasons: np.ndarray  # uint8 market.rejects.Reason per row, 0 = accepted
    gap_instrument: np.ndarray  # int32
    gap_expected: np.ndarray  # int64: the seq that should have come next
    gap_got: np.ndarray  # int64: the seq that came
    gap_row: np.ndarray  # int64: row of the batch that revealed the gap (it is accepted)

    @property
    def accepted(self) -> np.ndarray:
        return self.reasons == Reason.OK

    @property
    def n_gaps(self) -> int:
        return int(self.gap_row.shape[0])

    def reject_counts(self) -> dict[str, int]:
        """Rejected rows by reason label (for market.rejects.RejectCounters)."""
        counts = np.bincount(self.reasons, minlength=len(Reason))
        return {Reason(code).label: int(c) for code, c in enumerate(counts) if code and c}


class Validator:
    def __init__(self, config: ValidateConfig, n_instruments: int, impl: Impl = "numba") -> None:
        if impl not in ("numba", "python"):
            raise ValueError(f"unknown impl {impl!r}")
        self.config = config
        self.impl: Impl = impl
        self._max_future_ns = config.max_future_ms * NS_PER_MS
        self._wmask = window_mask(config.seq_window)
        self._max_seq = np.zeros(n_instruments, dtype=np.int64)
        self._seen = np.zeros(n_instruments, dtype=np.uint64)

    @property
    def n_instruments(self) -> int:
        return int(self._max_seq.shape[0])

    def on_batch(self, cols: TickColumns) -> ValidateOutput:
        if self.impl == "numba":
            return self._on_batch_numba(cols)
        return self._on_batch_python(cols)

    def _on_batch_numba(self, cols: TickColumns) -> ValidateOutput:
        reasons, gaps = validate_batch(
            cols.instrument, cols.kind, cols.ts_event, cols.ts_recv, cols.seq, cols.size, cols.bid_size,
            cols.ask_size, self._max_future_ns, self.config.seq_window, self._wmask, self._max_seq, self._seen,
        )
        return ValidateOutput(reasons, gaps[GAP_INSTRUMENT].astype(np.int32), gaps[GAP_EXPECTED], gaps[GAP_GOT],
                              gaps[GAP_ROW])

    def _on_batch_python(self, cols: TickColumns) -> ValidateOutput:
        max_seq = self._max_seq.tolist()
        seen = [int(x) for x in self._seen]
        reasons, gaps = validate_rows(
            cols.instrument.tolist(), cols.kind.tolist(), cols.ts_event.tolist(), cols.ts_recv.tolist(),
            cols.seq.tolist(), cols.size.tolist(), cols.bid_size.tolist(), cols.ask_size.tolist(),
            self._max_future_ns, self.config.seq_window, max_seq, seen,
        )
        self._max_seq[:] = max_seq
        self._seen[:] = np.array(seen, dtype=np.uint64)
        return ValidateOutput(
            np.array(reasons, dtype=np.uint8), np.array(gaps.instrument, dtype=np.int32),
            np.array(gaps.expected, dtype=np.int64), np.array(gaps.got, dtype=np.int64),
            np.array(gaps.row, dtype=np.int64),
        )

    def snapshot(self) -> ValidatorSnapshot:
        return ValidatorSnapshot(max_seq=self._max_seq.tolist(), seen=[int(x) for x in self._seen])

    @classmethod
    def restore(cls, config: ValidateConfig, snap: ValidatorSnapshot, impl: Impl = "numba") -> Validator:
        v = cls(config, len(snap.max_seq), impl)
        v._max_seq[:] = snap.max_seq
        v._seen[:] = np.array(snap.seen, dtype=np.uint64) & v._wmask
        return v


def _detail(reason: Reason, cols: TickColumns, i: int, iid: str) -> str:
    if reason == Reason.FUTURE_TIMESTAMP:
        lead_ms = (int(cols.ts_event[i]) - int(cols.ts_recv[i])) / NS_PER_MS
        return f"{DETAIL[reason]}: ts_event leads ts_recv by {lead_ms:g} ms"
    if reason in (Reason.DUPLICATE, Reason.STALE_SEQ):
        return f"{DETAIL[reason]}: seq {int(cols.seq[i])} of {iid}"
    if reason == Reason.BAD_SIZE:
        return f"{DETAIL[reason]}: size {int(cols.size[i])}"
    if reason == Reason.BAD_QUOTE:
        return f"{DETAIL[reason]}: bid_size {int(cols.bid_size[i])}, ask_size {int(cols.ask_size[i])}"
    if reason == Reason.MALFORMED:
        return f"{DETAIL[reason]}: kind {int(cols.kind[i])}, seq {int(cols.seq[i])}"
    if reason == Reason.UNKNOWN_INSTRUMENT:
        return f"{DETAIL[reason]}: index {int(cols.instrument[i])}"
    return DETAIL.get(reason, reason.label)


def dead_letters(output: ValidateOutput, cols: TickColumns, registry: Registry,
                 source: str = "validate") -> list[DeadLetter]:
    """One DeadLetter per rejected row, in row order; raw = the row as wire JSON."""
    out: list[DeadLetter] = []
    for i in np.flatnonzero(output.reasons).tolist():
        reason = Reason(int(output.reasons[i]))
        k = int(cols.instrument[i])
        known = 0 <= k < len(registry)
        tick = cols.row(i, registry) if known else _unknown_row(cols, i, registry)
        iid = tick.instrument_id
        out.append(DeadLetter(
            source=source, reason=reason.label, detail=_detail(reason, cols, i, iid),
            raw=encode(tick).decode(), ts_recv=int(cols.ts_recv[i]), instrument_id=iid if known else "",
            ts_event=int(cols.ts_event[i]),
        ))
    return out


def _unknown_row(cols: TickColumns, i: int, registry: Registry) -> Tick:
    # TickColumns.row maps only -1 to "?"; any other out-of-range index is shown as -1 too
    one = cols.take(slice(i, i + 1))
    one.instrument = np.full(1, -1, dtype=np.int32)
    return one.row(0, registry)


def gap_signals(output: ValidateOutput, cols: TickColumns, registry: Registry) -> list[AnomalySignal]:
    """SEQUENCE_GAP anomaly per gap: value = count of missing seqs, times from the row that revealed it."""
    out: list[AnomalySignal] = []
    for k, exp, got, row in zip(output.gap_instrument.tolist(), output.gap_expected.tolist(),
                                output.gap_got.tolist(), output.gap_row.tolist(), strict=True):
        missing = got - exp
        out.append(AnomalySignal(
            instrument_id=registry.by_index(k).id, anomaly=AnomalyType.SEQUENCE_GAP, value=float(missing),
            threshold=0.0, detail=f"expected seq {exp}, got {got}: {missing} missing",
            ts_event=int(cols.ts_event[row]), ts_recv=int(cols.ts_recv[row]),
        ))
    return out
