"""Pure-Python reference of jobs/validate_kernel.py: same checks, same order, same state, plain ints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from market.columns import KIND_QUOTE, KIND_TRADE
from market.rejects import Reason


@dataclass(slots=True)
class Gaps:
    instrument: list[int] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)
    got: list[int] = field(default_factory=list)
    row: list[int] = field(default_factory=list)


def validate_rows(
    instrument: Sequence[int], kind: Sequence[int], ts_event: Sequence[int], ts_recv: Sequence[int],
    seq: Sequence[int], size: Sequence[int], bid_size: Sequence[int], ask_size: Sequence[int],
    max_future_ns: int, window: int, max_seq: list[int], seen: list[int],
) -> tuple[list[int], Gaps]:
    """Reason code per row and the gap events; updates max_seq/seen (bitmaps as ints) in place."""
    wmask = (1 << window) - 1
    reasons: list[int] = []
    gaps = Gaps()
    n_inst = len(max_seq)
    for i in range(len(ts_event)):
        reasons.append(_check(i, instrument, kind, ts_event, ts_recv, seq, size, bid_size, ask_size,
                              max_future_ns, window, wmask, n_inst, max_seq, seen, gaps))
    return reasons, gaps


def _check(
    i: int, instrument: Sequence[int], kind: Sequence[int], ts_event: Sequence[int], ts_recv: Sequence[int],
    seq: Sequence[int], size: Sequence[int], bid_size: Sequence[int], ask_size: Sequence[int],
    max_future_ns: int, window: int, wmask: int, n_inst: int, max_seq: list[int], seen: list[int], gaps: Gaps,
) -> int:
    k = instrument[i]
    if not 0 <= k < n_inst:
        return Reason.UNKNOWN_INSTRUMENT
    if kind[i] == KIND_TRADE:
        if size[i] <= 0:
            return Reason.BAD_SIZE
    elif kind[i] == KIND_QUOTE:
        if bid_size[i] < 0 or ask_size[i] < 0 or (bid_size[i] == 0 and ask_size[i] == 0):
            return Reason.BAD_QUOTE
    else:
        return Reason.MALFORMED
    if ts_event[i] - ts_recv[i] > max_future_ns:
        return Reason.FUTURE_TIMESTAMP
    s = seq[i]
    if s < 0:
        return Reason.MALFORMED
    if s == 0:  # unsequenced publisher: nothing to deduplicate against
        return Reason.OK
    m = max_seq[k]
    if m == 0:
        max_seq[k], seen[k] = s, 1
    elif s > m:
        seen[k] = ((seen[k] << (s - m)) | 1) & wmask
        max_seq[k] = s
        if s > m + 1:
            gaps.instrument.append(k)
            gaps.expected.append(m + 1)
            gaps.got.append(s)
            gaps.row.append(i)
    elif s <= m - window:
        return Reason.STALE_SEQ
    elif seen[k] >> (m - s) & 1:
        return Reason.DUPLICATE
    else:
        seen[k] |= 1 << (m - s)
    return Reason.OK
