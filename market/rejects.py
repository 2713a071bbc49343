"""Reasons an input is rejected to the dead-letter output, and counters kept per reason."""

from __future__ import annotations

from collections import Counter
from enum import IntEnum


class Reason(IntEnum):
    """Numeric codes so numba kernels can report them; `.label` is the wire/API name."""

    OK = 0
    MALFORMED = 1  # did not decode / missing or mistyped field
    UNKNOWN_INSTRUMENT = 2
    NAN_PRICE = 3  # NaN or infinite price
    BAD_SIZE = 4  # negative, zero or non-integer size
    DUPLICATE = 5  # same (instrument, seq) already accepted
    LATE = 6  # event time older than watermark minus allowed lateness
    FUTURE_TIMESTAMP = 7  # ts_event too far ahead of ts_recv
    STALE_SEQ = 8  # seq too far behind the newest seen to tell duplicate from new
    BAD_QUOTE = 9  # negative quote size, missing side

    @property
    def label(self) -> str:
        return self.name.lower()


DETAIL = {
    Reason.MALFORMED: "message could not be decoded",
    Reason.UNKNOWN_INSTRUMENT: "instrument is not in the registry",
    Reason.NAN_PRICE: "price is NaN or infinite",
    Reason.BAD_SIZE: "size must be a positive integer",
    Reason.DUPLICATE: "sequence number already accepted for this instrument",
    Reason.LATE: "event time is beyond the allowed lateness of its window",
    Reason.FUTURE_TIMESTAMP: "event time is too far ahead of receive time",
    Reason.STALE_SEQ: "sequence number too old to check for duplicates",
    Reason.BAD_QUOTE: "quote has a negative size or a missing side",
}


class RejectCounters:
    """Counts of rejected inputs by reason label."""

    def __init__(self) -> None:
        self._c: Counter[str] = Counter()

    def add(self, reason: Reason | str, n: int = 1) -> None:
        self._c[reason.label if isinstance(reason, Reason) else reason] += n

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self._c.items()))

    @property
    def total(self) -> int:
        return sum(self._c.values())
