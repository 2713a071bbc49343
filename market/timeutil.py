"""UTC nanosecond timestamps. Naive datetimes are rejected, never guessed."""

from __future__ import annotations

import time
from datetime import UTC, datetime

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000

_INTERVALS = {"s": NS_PER_S, "m": 60 * NS_PER_S, "h": 3600 * NS_PER_S, "d": 86400 * NS_PER_S, "ms": NS_PER_MS}


def now_ns() -> int:
    return time.time_ns()


def parse_interval(text: str) -> int:
    """'1s', '1m', '5m', '1h', '250ms' -> nanoseconds."""
    t = text.strip().lower()
    for suffix in ("ms", "s", "m", "h", "d"):
        if t.endswith(suffix) and t[: -len(suffix)].isdigit():
            n = int(t[: -len(suffix)])
            if n <= 0:
                break
            return n * _INTERVALS[suffix]
    raise ValueError(f"bad interval {text!r}; use e.g. 1s, 1m, 5m, 1h")


def format_interval(ns: int) -> str:
    for suffix, unit in (("h", 3600 * NS_PER_S), ("m", 60 * NS_PER_S), ("s", NS_PER_S), ("ms", NS_PER_MS)):
        if ns % unit == 0:
            return f"{ns // unit}{suffix}"
    return f"{ns}ns"


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: timestamps must carry a time zone")
    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * NS_PER_US


def parse_iso(text: str) -> int:
    """ISO 8601 with an offset or 'Z' -> ns. Sub-microsecond digits are kept."""
    t = text.strip()
    if t.endswith("Z") or t.endswith("z"):
        t = t[:-1] + "+00:00"
    frac_ns = 0
    # datetime keeps microseconds only; carry nanoseconds separately.
    if "." in t:
        head, rest = t.split(".", 1)
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        tail = rest[i:]
        frac_ns = int((digits + "000000000")[:9])
        t = head + tail
    dt = datetime.fromisoformat(t)
    return from_datetime(dt) + frac_ns


def to_iso(ns: int) -> str:
    """ns -> 'YYYY-MM-DDTHH:MM:SS[.fffffffff]Z'."""
    s, frac = divmod(ns, NS_PER_S)
    base = datetime.fromtimestamp(s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"
