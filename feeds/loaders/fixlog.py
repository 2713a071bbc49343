"""Load a recorded FIX log: decode + validate every message, track sequences, optionally convert market data.

The file is read in chunks through the same sans-I/O splitter a live session would use. Log files carry no
capture time, so ts_recv of every output is the message's SendingTime (52) (dead letters without one get
the last good SendingTime before them): replays are deterministic.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec

from feeds.fix.codec import FixCodecConfig, FixMessage, FixSplitter
from feeds.fix.marketdata import MarketDataConfig, MarketDataConverter
from feeds.fix.session import SeqEvent, SeqEventKind, SessionConfig, SessionTracker, StreamState, rejected_dead_letter
from market.config import Config
from market.events import DeadLetter, QuoteTick, TradeTick
from market.instruments import Registry, default_registry


class FixLogConfig(Config, frozen=True):
    codec: FixCodecConfig = msgspec.field(default_factory=FixCodecConfig)
    session: SessionConfig = msgspec.field(default_factory=SessionConfig)
    marketdata: MarketDataConfig | None = None  # None: no tick conversion
    chunk_bytes: int = 1 << 20
    keep_messages: bool = False  # keep every decoded message in the report (memory: the whole log)


class FixLogReport(msgspec.Struct):
    path: str
    bytes: int
    messages: int  # frames that passed validation
    by_msg_type: dict[str, int]  # validated messages per MsgType (35)
    failures: dict[str, int]  # codec dead letters per reason (bad_checksum, bad_body_length, ...)
    separator_bytes: int  # CR/LF between messages
    accepted: int  # messages that passed the sequence checks too
    duplicates: int  # duplicate + poss_dup + repeat
    gaps: list[SeqEvent]
    events: dict[str, int]  # sequence events per kind
    streams: dict[str, StreamState]
    dead_letters: list[DeadLetter]  # codec, session (duplicates) and market data rejects, in stream order
    ticks: list[TradeTick | QuoteTick]
    ignored_entries: dict[str, int]  # market data entries of types that are not ticks
    messages_list: list[FixMessage] = msgspec.field(default_factory=list)


def load_fix_log(path: str | Path, config: FixLogConfig | None = None,
                 registry: Registry | None = None) -> FixLogReport:
    config = config or FixLogConfig()
    splitter = FixSplitter(config.codec)
    tracker = SessionTracker(config.session)
    converter = (MarketDataConverter(config.marketdata, registry or default_registry())
                 if config.marketdata is not None else None)
    by_type: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    gaps: list[SeqEvent] = []
    dead: list[DeadLetter] = []
    ticks: list[TradeTick | QuoteTick] = []
    kept: list[FixMessage] = []
    accepted = 0
    size = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(config.chunk_bytes)
            size += len(chunk)
            items = splitter.feed(chunk) if chunk else splitter.finish()
            for item in items:
                if isinstance(item, DeadLetter):
                    failures[item.reason] += 1
                    dead.append(item)
                    continue
                by_type[item.msg_type] += 1
                if config.keep_messages:
                    kept.append(item)
                verdict = tracker.on_message(item)
                gaps.extend(e for e in verdict.events if e.kind == SeqEventKind.GAP)
                if not verdict.accept:
                    dead.append(rejected_dead_letter(item, verdict, item.sending_time, config.session.source))
                    continue
                accepted += 1
                if converter is not None:
                    for out in converter.on_message(item, item.sending_time):
                        if isinstance(out, DeadLetter):
                            dead.append(out)
                        else:
                            ticks.append(out)
            if not chunk:
                break
    counts = tracker.counts
    return FixLogReport(
        path=str(path), bytes=size, messages=sum(by_type.values()), by_msg_type=dict(sorted(by_type.items())),
        failures=dict(sorted(failures.items())), separator_bytes=splitter.stats.separator_bytes, accepted=accepted,
        duplicates=counts[SeqEventKind.DUPLICATE] + counts[SeqEventKind.POSS_DUP] + counts[SeqEventKind.REPEAT],
        gaps=gaps, events=dict(sorted(counts.items())), streams=dict(tracker.streams), dead_letters=dead,
        ticks=ticks, ignored_entries=dict(converter.ignored) if converter is not None else {}, messages_list=kept,
    )


def summary(report: FixLogReport) -> str:
    """A few human-readable lines (CLI output)."""
    lines = [
        f"{report.path}: {report.bytes} bytes, {report.messages} valid messages, {report.accepted} accepted",
        "  by MsgType: " + ", ".join(f"{k}={v}" for k, v in report.by_msg_type.items()),
        "  validation failures: " + (", ".join(f"{k}={v}" for k, v in report.failures.items()) or "none"),
        f"  duplicates: {report.duplicates}; gaps: {len(report.gaps)}"
        + "".join(f"\n    {g.stream}: {g.first}..{g.last} missing before seq {g.seq}" for g in report.gaps[:20]),
        "  sequence events: " + (", ".join(f"{k}={v}" for k, v in report.events.items()) or "none"),
    ]
    if report.ticks or report.ignored_entries:
        lines.append(f"  ticks: {len(report.ticks)}; entries not converted: {report.ignored_entries}")
    return "\n".join(lines)
