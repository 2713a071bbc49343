"""Configuration of the MCX polling feed (HTTP JSON quotes). Separate from the bhavcopy config in config.py."""

from __future__ import annotations

from typing import Literal

from market.config import Config

MCX_INSTRUMENTS: tuple[str, ...] = ("GOLD.MCX", "COTTONCNDY.MCX", "CRUDEOIL.MCX")
TickSeq = Literal["none", "venue"]


class McxPollConfig(Config, frozen=True):
    url: str  # base URL of the venue, e.g. "http://127.0.0.1:8080"
    path: str = "/api/v1/quotes"
    instruments: tuple[str, ...] = MCX_INSTRUMENTS
    poll_interval_ms: int = 250  # pause between the end of one response and the next request
    request_timeout_ms: int = 2000  # connect + whole response; a stalled venue counts as a transport failure
    backoff_initial_ms: int = 100  # after 5xx, transport failures, or a 429 without a usable Retry-After
    backoff_max_ms: int = 10_000
    max_retry_after_ms: int = 60_000  # a venue's Retry-After is honoured up to this
    max_body_bytes: int = 1 << 20  # a larger body is not decoded (dead letter)
    # seq on the emitted ticks: "none" (0, unsequenced) because polling conflates updates between polls, so
    # venue seqs are never contiguous and the validator would report every poll as a gap; "venue" keeps them
    tick_seq: TickSeq = "none"

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        if not self.path.startswith("/"):
            raise ValueError("path must start with /")
        if not self.instruments:
            raise ValueError("instruments must not be empty")
        if len(set(self.instruments)) != len(self.instruments):
            raise ValueError("instruments must not repeat")
        for name in ("poll_interval_ms", "request_timeout_ms", "backoff_initial_ms", "max_retry_after_ms",
                     "max_body_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_ms < self.backoff_initial_ms:
            raise ValueError("backoff_max_ms must be >= backoff_initial_ms")
        if self.max_retry_after_ms < self.poll_interval_ms:
            raise ValueError("max_retry_after_ms must be >= poll_interval_ms")
