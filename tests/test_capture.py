"""Capture raw venue traffic from the loopback simulators (ICE WebSocket, CME FIX, MCX polling) and replay it
deterministically through the protocols."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from feeds.capture import (
    MANIFEST,
    CaptureError,
    CaptureOptions,
    CaptureWriter,
    Connected,
    Disconnected,
    Frame,
    Logon,
    Response,
    Sent,
    Timer,
    apply_record,
    build_protocol,
    capture,
    ingest_capture,
    read_manifest,
    replay_capture,
    replay_events,
)
from feeds.capture_cli import add_capture_parser, is_capture_dir, read_capture
from feeds.common.adapter import FeedEvent
from feeds.ice.config import IceFeedConfig
from feeds.ice.schemas import LoginAck, QuoteUpdate, Snapshot, encode
from feeds.mcx.poll_config import McxPollConfig
from feeds.mcx.poll_schemas import McxQuote, McxTopOfBook, encode_quotes
from jobs.pipeline import Pipeline, PipelineConfig
from market.codec import encode as encode_event
from market.events import DeadLetter, QuoteTick, TradeTick
from market.instruments import default_registry

T0 = 1_767_571_200_000_000_000


CME_PASSWORD = "hunter2-secret"


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[FeedEvent]]]:
    """2 s of the three simulated venues, and what the live protocols emitted meanwhile."""
    out = tmp_path_factory.mktemp("cap") / "run"
    live: dict[str, list[FeedEvent]] = defaultdict(list)
    capture(["ice", "cme", "mcx"], 2.0, out, options=CaptureOptions(rate_scale=3, mcx_poll_interval_ms=50),
            cme_password=CME_PASSWORD, on_events=lambda feed, evs: live[feed].extend(evs))
    return out, live


def encoded(events: list[FeedEvent]) -> list[bytes]:
    return [encode_event(e) for e in events]


def test_the_manifest_describes_the_files(captured: tuple[Path, dict[str, list[FeedEvent]]]) -> None:
    path, _ = captured
    m = read_manifest(path)
    assert [f.name for f in m.feeds] == ["ice", "cme", "mcx"] and m.start_ns < m.end_ns
    for f in m.feeds:
        lines = (path / f.file).read_bytes().splitlines()
        assert len(lines) == f.records == sum(f.counts.values()) and f.first_ns <= f.last_ns
        assert m.start_ns <= f.first_ns and f.last_ns <= m.end_ns
    ice, cme, mcx = m.feeds
    assert ice.counts["connected"] == 1 and ice.counts["frame"] > 50 and ice.config["api_key"] == "***"
    assert mcx.counts["response"] > 10 and set(mcx.counts) <= {"response", "failure"}
    assert cme.protocol == "cme.fix44.v1" and cme.config["password"] == "***"
    assert cme.counts["logon"] >= 1 and cme.counts["frame"] > 50 and cme.counts["sent"] >= 2  # Logon + 35=V
    assert set(cme.counts) <= {"frame", "logon", "logout", "sent", "timer", "callback_error"}
    assert CME_PASSWORD.encode() not in (path / cme.file).read_bytes()  # the Logon's password is never recorded
    assert is_capture_dir(path) and not is_capture_dir(path / "ice.jsonl")


def test_replay_reproduces_what_the_live_protocols_emitted(
        captured: tuple[Path, dict[str, list[FeedEvent]]]) -> None:
    path, live = captured
    for feed in ("ice", "cme", "mcx"):
        replayed = list(replay_events(path, [feed]))
        assert len(replayed) > 20
        assert encoded(replayed) == encoded(live[feed]), feed
    every = list(replay_events(path))
    venues = {e.instrument_id.split(".")[1] for e in every if not isinstance(e, DeadLetter)}
    assert venues == {"ICE", "MCX", "NYMEX", "COMEX", "CBOT"}


def test_replay_twice_is_byte_identical(captured: tuple[Path, dict[str, list[FeedEvent]]]) -> None:
    path, _ = captured
    first, second = encoded(list(replay_events(path))), encoded(list(replay_events(path)))
    assert first == second and len(first) > 40
    cme_first, cme_second = (encoded(list(replay_events(path, ["cme"]))) for _ in range(2))
    assert cme_first == cme_second and len(cme_first) > 20
    assert any(b"GC.COMEX" in x for x in cme_first) and any(b"CL.NYMEX" in x for x in cme_first)


def test_a_record_of_another_protocol_is_refused(captured: tuple[Path, dict[str, list[FeedEvent]]]) -> None:
    path, _ = captured
    m = read_manifest(path)
    ice = build_protocol(m.feeds[0], default_registry())
    mcx = build_protocol(m.feeds[2], default_registry())
    with pytest.raises(CaptureError, match="'sent' record cannot drive the ice"):
        apply_record(ice, Sent(T0, "ice", "0"))
    with pytest.raises(CaptureError, match="'logon' record cannot drive the mcx"):
        apply_record(mcx, Logon(T0, "mcx"))


def test_edge_batches_do_not_depend_on_the_batch_size(captured: tuple[Path, dict[str, list[FeedEvent]]]) -> None:
    path, _ = captured
    whole = ingest_capture(path)
    parts = list(replay_capture(path, batch_ticks=7))
    assert len(parts) > 3 and sum(len(p.columns) for p in parts) == len(whole.columns)
    for name in ("instrument", "kind", "ts_event", "ts_recv", "seq", "price", "size", "bid", "ask"):
        assert np.array_equal(np.concatenate([getattr(p.columns, name) for p in parts]), getattr(whole.columns, name))
    ticks = [e for e in replay_events(path) if isinstance(e, TradeTick | QuoteTick)]
    reg = default_registry()
    assert [whole.columns.row(i, reg).ts_recv for i in range(len(whole.columns))] == [t.ts_recv for t in ticks]
    assert read_capture(path, reg).rows_in == whole.rows_in


def run_pipeline(path: Path) -> list[bytes]:
    p = Pipeline(PipelineConfig())
    out: list[bytes] = []
    for batch in replay_capture(path, batch_ticks=100):
        res = p.process(batch.columns)
        out += [encode_event(x) for x in [*batch.dead_letters, *res.bars, *res.signals, *res.dead_letters]]
    end = p.finish()
    out += [encode_event(x) for x in [*end.bars, *end.signals, *end.dead_letters]]
    return out


def test_pipeline_output_of_a_replay_is_reproducible(captured: tuple[Path, dict[str, list[FeedEvent]]]) -> None:
    path, _ = captured
    first, second = run_pipeline(path), run_pipeline(path)
    assert first == second
    assert sum(b'"type":"bar.v1"' in x for x in first) > 10


def test_a_changed_or_unfinished_capture_is_refused(tmp_path: Path,
                                                    captured: tuple[Path, dict[str, list[FeedEvent]]]) -> None:
    path, _ = captured
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in (MANIFEST, "ice.jsonl", "cme.jsonl", "mcx.jsonl"):
        (copy / f).write_bytes((path / f).read_bytes())
    data = (copy / "mcx.jsonl").read_bytes()
    (copy / "mcx.jsonl").write_bytes(data[:-10])  # truncated
    with pytest.raises(CaptureError, match="sha256"):
        list(replay_events(copy))
    (copy / MANIFEST).unlink()
    with pytest.raises(CaptureError, match="no manifest.json"):
        list(replay_events(copy))
    with pytest.raises(FileExistsError):
        CaptureWriter(path)


def test_hand_made_capture_replays_faults_through_the_protocols(tmp_path: Path) -> None:
    """Offline: records written directly (text and binary frames, a reconnect, HTTP errors, garbage)."""
    w = CaptureWriter(tmp_path / "c")
    ice = w.feed("ice", IceFeedConfig(url="ws://x", api_key="k", instruments=("CT.ICE",)).redacted())
    mcx = w.feed("mcx", McxPollConfig(url="http://x", instruments=("GOLD.MCX",)).to_dict())
    quote = McxQuote("GOLD", "INR", "10g", 4, quote=McxTopOfBook(4, T0, "75000", "75001", 1, 1))
    ice.write(Connected(T0, "ice"))
    ice.write(Frame(T0 + 1, "ice", encode(LoginAck("S", 1000)), text=True))
    ice.write(Frame(T0 + 2, "ice", encode(Snapshot("CT", 5))))
    ice.write(Frame(T0 + 3, "ice", b"\xffgarbage"))
    ice.write(Frame(T0 + 4, "ice", encode(QuoteUpdate("CT", 6, T0, "70.1", "70.2", 1, 1)), text=True))
    ice.write(Disconnected(T0 + 5, "ice", "closed: test"))
    ice.write(Timer(T0 + 6, "ice"))
    mcx.write(Response(T0 + 10, "mcx", 503, {"retry-after": "1"}, b"warming up"))
    mcx.write(Response(T0 + 11, "mcx", 200, {"etag": '"a"'}, encode_quotes("S", T0, [quote])))
    mcx.write(Response(T0 + 12, "mcx", 304, {}, b""))
    mcx.write(Response(T0 + 13, "mcx", 200, {}, b"{not json"))
    w.close(T0, T0 + 20)
    out = list(replay_events(tmp_path / "c"))
    assert [(type(e).__name__, getattr(e, "reason", ""), e.ts_recv) for e in out] == [
        ("DeadLetter", "malformed", T0 + 3), ("QuoteTick", "", T0 + 4), ("DeadLetter", "venue_error", T0 + 10),
        ("QuoteTick", "", T0 + 11), ("DeadLetter", "malformed", T0 + 13)]
    assert out[1] == QuoteTick("CT.ICE", 70_100_000_000, 70_200_000_000, 1, 1, T0, T0 + 4, 6)
    assert isinstance(out[4], DeadLetter) and out[4].raw == "{not json" and out[4].source == "mcx"
    assert encoded(out) == encoded(list(replay_events(tmp_path / "c")))
    with pytest.raises(CaptureError, match="no feed"):
        list(replay_events(tmp_path / "c", ["fix"]))


def test_cli_capture_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_capture_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["capture", "--feeds", "mcx", "--duration", "0.6", "--out", str(out),
                              "--poll-interval-ms", "50", "--rate-scale", "3"])
    assert args.handler(args) == 0
    assert "mcx:" in capsys.readouterr().out and [f.name for f in read_manifest(out).feeds] == ["mcx"]
    assert args.handler(args) == 2  # never overwrites a capture
    with pytest.raises(SystemExit):
        parser.parse_args(["capture", "--feeds", "ice,fix", "--duration", "1", "--out", str(out)])
    every = parser.parse_args(["capture", "--feeds", "ice,cme,mcx", "--duration", "1", "--out", str(out)])
    assert every.feeds == ("ice", "cme", "mcx") and every.cme_port == 0
