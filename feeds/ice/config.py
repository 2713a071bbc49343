"""Configuration of the ICE-style WebSocket feed. The API key is a secret: it never appears in repr/logs."""

from __future__ import annotations

from typing import Any

from market.config import Config

ICE_INSTRUMENTS: tuple[str, ...] = ("CT.ICE", "B.ICE", "SB.ICE", "KC.ICE")


class IceFeedConfig(Config, frozen=True):
    url: str
    api_key: str
    instruments: tuple[str, ...] = ICE_INSTRUMENTS
    heartbeat_ms: int = 1000  # we send one when idle this long; the venue is asked for the same interval
    stale_after_ms: int = 3000  # nothing received this long (heartbeats included): reconnect
    backoff_initial_ms: int = 100
    backoff_max_ms: int = 10_000
    connect_timeout_ms: int = 5000
    resync_timeout_ms: int = 5000  # a requested snapshot that has not come by then: release what is held
    max_resync_buffer: int = 10_000  # updates held per instrument while waiting for its snapshot
    max_seq_jump: int = 1_000_000  # a seq further ahead than this is not trusted (corrupt message)

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError("url must start with ws:// or wss://")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not self.instruments:
            raise ValueError("instruments must not be empty")
        if len(set(self.instruments)) != len(self.instruments):
            raise ValueError("instruments must not repeat")
        positive = ("heartbeat_ms", "stale_after_ms", "backoff_initial_ms", "connect_timeout_ms",
                    "resync_timeout_ms", "max_resync_buffer", "max_seq_jump")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.stale_after_ms <= self.heartbeat_ms:
            raise ValueError("stale_after_ms must exceed heartbeat_ms (a healthy venue heartbeats in between)")
        if self.backoff_max_ms < self.backoff_initial_ms:
            raise ValueError("backoff_max_ms must be >= backoff_initial_ms")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"IceFeedConfig({fields})"

    __str__ = __repr__

    def __rich_repr__(self) -> Any:
        yield from self.redacted().items()

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with the API key masked (for status pages and logs)."""
        return self.to_dict() | {"api_key": "***"}
