"""Dead-letter reason labels every venue adapter shares (market.rejects labels where one fits).

A venue adds its own labels next to its protocol; the shared ones are named once, here.
"""

from __future__ import annotations

from market.rejects import Reason

MALFORMED = Reason.MALFORMED.label
UNKNOWN_INSTRUMENT = Reason.UNKNOWN_INSTRUMENT.label
DUPLICATE = Reason.DUPLICATE.label
STALE_SEQ = Reason.STALE_SEQ.label
SEQUENCE_GAP = "sequence_gap"  # messages the venue sent that never arrived (a range, in the detail)
UNSUBSCRIBED = "unsubscribed"  # data for an instrument the adapter did not ask for
SUPERSEDED = "superseded"  # buffered updates made obsolete by a newer snapshot
IMPLAUSIBLE_SEQ = "implausible_seq"  # a sequence jump too large to be a gap
VENUE_ERROR = "venue_error"  # the venue reported an error
