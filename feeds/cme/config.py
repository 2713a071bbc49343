"""Configuration of the CME-style FIX 4.4 market-data session. The password never appears in repr/logs/files."""

from __future__ import annotations

import re
from typing import Any

from market.config import Config

CME_INSTRUMENTS: tuple[str, ...] = ("CL.NYMEX", "GC.COMEX", "ZW.CBOT")
CME_VENUES: frozenset[str] = frozenset({"NYMEX", "COMEX", "CBOT", "CME"})  # the CME Group exchanges
_COMP_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}\Z")  # also keeps the generated QuickFIX cfg file well formed


class CmeFeedConfig(Config, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int
    sender_comp_id: str = "COMMODEX"  # us
    target_comp_id: str = "CMESIM"  # the venue
    password: str = ""  # Logon Password (554), added in toAdmin: never written to the cfg file or the store
    heartbeat_s: int = 1  # HeartBtInt (108): FIX counts in whole seconds
    instruments: tuple[str, ...] = CME_INSTRUMENTS
    store_dir: str = ""  # QuickFIX FileStore (sequence numbers); "" = a private temporary directory per client
    # True (market-data practice): MsgSeqNum restarts at 1 on every logon (141=Y), so a reconnect never replays
    # or gap-fills stale market data (RptSeq + snapshots recover it); ResendRequest / SequenceReset within a
    # session are still QuickFIX's. False: MsgSeqNums continue across reconnects (FileStore); then set
    # persist_messages, or a gap fill answering the venue's ResendRequest can swallow our MarketDataRequest
    reset_on_logon: bool = True
    persist_messages: bool = False  # True: QuickFIX stores what we send (the Logon, password included) to resend
    reconnect_interval_s: int = 1  # QuickFIX initiator ReconnectInterval
    resync_timeout_ms: int = 3000  # a requested snapshot that has not come by then: release what is held
    max_resync_buffer: int = 10_000  # incrementals held per instrument while waiting for its snapshot
    max_seq_jump: int = 1_000_000  # an RptSeq further ahead than this is not trusted (corrupt message)
    stop_timeout_s: float = 5.0  # longest wait for QuickFIX to log out and join its threads

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError("port must be in 1..65535")
        if not self.host:
            raise ValueError("host must not be empty")
        for name in ("sender_comp_id", "target_comp_id"):
            if not _COMP_ID.match(getattr(self, name)):
                raise ValueError(f"{name} must be 1-32 characters of [A-Za-z0-9_.-]")
        if self.sender_comp_id == self.target_comp_id:
            raise ValueError("sender_comp_id and target_comp_id must differ")
        if "\x01" in self.password or "\n" in self.password:
            raise ValueError("password must not contain SOH or newlines")
        if not self.instruments:
            raise ValueError("instruments must not be empty")
        if len(set(self.instruments)) != len(self.instruments):
            raise ValueError("instruments must not repeat")
        positive = ("heartbeat_s", "reconnect_interval_s", "resync_timeout_ms", "max_resync_buffer",
                    "max_seq_jump")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.stop_timeout_s <= 0:
            raise ValueError("stop_timeout_s must be positive")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"CmeFeedConfig({fields})"

    __str__ = __repr__

    def __rich_repr__(self) -> Any:
        yield from self.redacted().items()

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with the password masked (for status pages and logs)."""
        return self.to_dict() | {"password": "***" if self.password else ""}
