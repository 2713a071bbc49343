"""Many decimal-string prices to fixed point at once (numba kernel, pure-Python reference of the same function).

The rule is feeds.common.wire_types.Price: `-?[0-9]{1,9}(.[0-9]{1,9})?`, made exact fixed point (1e-9) without
a float, as `fixed_from_decimal` does one string at a time. A book snapshot carries thousands of them; one
kernel call over the joined text replaces a regex check and a Python conversion per string.
"""

from __future__ import annotations

import numba
import numpy as np

_DIGITS = 9
_POW10 = np.array([10**k for k in range(_DIGITS + 1)], dtype=np.int64)


def parse_fixed_py(buf: np.ndarray, ends: np.ndarray, out: np.ndarray) -> int:
    """String i = buf[ends[i-1]:ends[i]] (ends[-1] for i = 0 is 0). Writes out[i]; returns the index of the
    first string that breaks the rule, or len(ends) when all hold."""
    start = 0
    for i in range(ends.shape[0]):
        end = ends[i]
        q = start
        neg = q < end and buf[q] == 45
        if neg:
            q += 1
        whole = 0
        nd = 0
        while q < end and 48 <= buf[q] <= 57:
            whole = whole * 10 + (int(buf[q]) - 48)
            nd += 1
            q += 1
        if nd == 0 or nd > _DIGITS:
            return i
        frac = 0
        nf = 0
        if q < end:
            if buf[q] != 46:
                return i
            q += 1
            while q < end and 48 <= buf[q] <= 57:
                frac = frac * 10 + (int(buf[q]) - 48)
                nf += 1
                q += 1
            if nf == 0 or nf > _DIGITS or q != end:
                return i
        value = whole * 1_000_000_000 + frac * int(_POW10[_DIGITS - nf])
        out[i] = -value if neg else value
        start = end
    return ends.shape[0]


parse_fixed = numba.njit(cache=True, nogil=True)(parse_fixed_py)


def fixed_from_decimals(texts: list[str]) -> list[int]:
    """fixed_from_decimal of each text; ValueError naming the first text that is not a Price."""
    joined = "".join(texts)
    if not joined.isascii():  # a non-ASCII character never matches; find which text it is in
        bad = next(t for t in texts if not t.isascii())
        raise ValueError(f"{bad!r} is not a decimal of at most 9+9 digits")
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    out = np.empty(len(texts), dtype=np.int64)
    k = parse_fixed(np.frombuffer(joined.encode("ascii") or b"\0", dtype=np.uint8), ends, out)
    if k < len(texts):
        raise ValueError(f"{texts[k]!r} is not a decimal of at most 9+9 digits")
    return out.tolist()  # type: ignore[no-any-return]
