"""ClickHouse storage against a real chdb engine in a temporary directory.

chdb hosts one data path per process: this module opens one path (an anchor client keeps the engine up)
and gives every test its own database on it; the path is released at module teardown by closing every
client, so other modules can open their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from clickhouse_connect.driver.exceptions import ProgrammingError

from commodex.embedded.storage import (
    ClickHouseStore,
    MigrationError,
    StorageConfig,
    record_id,
    split_statements,
    sql_dir,
)
from market import codec
from market.columns import KIND_QUOTE, TickColumns
from market.events import (
    AnomalySignal,
    AnomalyType,
    ArbitrageSignal,
    Bar,
    CrashWarning,
    DeadLetter,
    Forecast,
    QuoteTick,
    Signal,
    Tick,
    TradeTick,
)
from market.fixedpoint import to_fixed
from market.instruments import default_registry
from market.timeutil import parse_iso

MIN = 60 * 10**9
T0 = parse_iso("2020-04-20T18:00:00Z")


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("chdb_storage")
    anchor = ClickHouseStore(StorageConfig(dsn=f"chdb://{path}", database="anchor"))
    yield path
    anchor.close()


_db_counter = iter(range(10_000))


@pytest.fixture
def store(chdb_dir: Path) -> Iterator[ClickHouseStore]:
    s = ClickHouseStore(StorageConfig(dsn=f"chdb://{chdb_dir}", database=f"t{next(_db_counter)}"))
    assert s.migrate() == ["001_core.sql"]
    yield s
    s.close()


def bar(start: int, close: str, revision: int = 0, instrument: str = "CL.NYMEX", interval: int = MIN) -> Bar:
    c = to_fixed(close)
    return Bar(instrument, interval, start, open=c + to_fixed("0.5"), high=c + to_fixed("1"), low=c - to_fixed("1"),
               close=c, volume=100 + revision, vwap=c, trades=7, ts_event=start + interval,
               ts_recv=start + interval + 5, revision=revision)


def test_sql_dir_found_from_the_package_location() -> None:
    folder = sql_dir(StorageConfig())
    assert (folder / "001_core.sql").is_file()
    assert folder.parent.name == "sql"


def test_split_statements_drops_comments_and_keeps_inner_semicolons() -> None:
    text = "-- header; not a statement\nCREATE TABLE a (x String DEFAULT ';')\nENGINE = Log;\n\nSELECT 1;\n"
    assert split_statements(text) == ["CREATE TABLE a (x String DEFAULT ';')\nENGINE = Log", "SELECT 1"]


def test_migrate_is_idempotent_and_refuses_an_edited_file(store: ClickHouseStore, tmp_path: Path) -> None:
    assert store.migrate() == []
    tables = {r[0] for r in store.client.query("SHOW TABLES").result_rows}
    assert {"bars", "signals", "dead_letters", "ticks", "schema_migrations"} <= tables

    edited = tmp_path / "sql"
    shutil.copytree(sql_dir(store.config), edited)
    (edited / "001_core.sql").write_text((edited / "001_core.sql").read_text() + "\n-- edited\n")
    other = ClickHouseStore(msgspec.structs.replace(store.config, sql_dir=str(edited)))
    try:
        with pytest.raises(MigrationError, match="001_core.sql changed"):
            other.migrate()
    finally:
        other.close()


def test_bars_round_trip_with_negative_prices_range_and_limit(store: ClickHouseStore) -> None:
    bars = [bar(T0 + i * MIN, close) for i, close in enumerate(["18.27", "-2.5", "-37.63", "-37.630000001", "10"])]
    bars.append(bar(T0, "1800.1", instrument="GC.COMEX"))
    bars.append(bar(T0, "17", interval=10**9))
    assert store.insert_bars(bars) == 7

    got = store.bars("CL.NYMEX", MIN)
    assert got == bars[:5]  # exact structs back, ascending, only this instrument and interval
    assert got[2].close == -37_630_000_000
    assert got[3].close == -37_630_000_001

    assert store.bars("CL.NYMEX", MIN, start_ns=T0 + MIN, end_ns=T0 + 3 * MIN) == bars[1:3]  # [start, end)
    assert store.bars("CL.NYMEX", MIN, limit=2) == bars[3:5]  # the most recent ones, still ascending
    assert store.bars("CL.NYMEX", 10**9) == [bars[6]]
    assert store.bars("ZW.CBOT", MIN) == []


def test_higher_revision_replaces_and_lower_never_wins(store: ClickHouseStore) -> None:
    store.insert_bars([bar(T0, "70.00"), bar(T0 + MIN, "71.00")])
    store.insert_bars([bar(T0, "69.50", revision=1)])  # late tick corrected the first window
    store.insert_bars([bar(T0, "70.00", revision=0)])  # a replay re-sends the stale revision afterwards
    got = store.bars("CL.NYMEX", MIN)
    assert [(b.revision, b.close) for b in got] == [(1, to_fixed("69.50")), (0, to_fixed("71.00"))]
    assert store.counts().bars == 2


def test_reinserting_everything_is_idempotent(store: ClickHouseStore) -> None:
    bars = [bar(T0 + i * MIN, "5") for i in range(3)]
    sig = CrashWarning("GC.COMEX", 3.5, 5 * MIN, 2.0, to_fixed("2050"), to_fixed("1978.25"), "rule", T0, T0 + 1)
    dl = DeadLetter("codec", "malformed", "expected object", "{oops", T0)
    for _ in range(3):
        store.insert_bars(bars)
        store.insert_signals([sig])
        store.insert_dead_letters([dl])
    c = store.counts()
    assert (c.bars, c.signals, c.dead_letters) == (3, 1, 1)
    assert store.bars("CL.NYMEX", MIN) == bars


def signals_fixture() -> list[Signal]:
    return [
        CrashWarning("CL.NYMEX", 12.5, 5 * MIN, 3.1, to_fixed("18"), to_fixed("-37.63"), "rule", T0 + 3, T0 + 4),
        ArbitrageSignal("GC.COMEX/GOLD.MCX", "GC.COMEX", "GOLD.MCX", "open", to_fixed("-1.25"), to_fixed("0.75"),
                        3.7, "oz", "USD", T0 + 1, T0 + 2, duration_ns=0),
        AnomalySignal("GC.COMEX", AnomalyType.RETURN_ZSCORE, 5.2, 4.0, "1m return", T0 + 2, T0 + 3),
        Forecast("CL.NYMEX", 5 * MIN, to_fixed("-30"), "naive", T0, T0 + 1, lower=to_fixed("-40"), upper=0),
    ]


def test_signals_round_trip_filters_and_newest_first(store: ClickHouseStore) -> None:
    sigs = signals_fixture()
    assert store.insert_signals(sigs) == 4
    got = store.signals()
    assert got == sorted(sigs, key=lambda s: -s.ts_event)  # decoded back to the exact typed records
    assert store.signals(kind="crash") == [sigs[0]]
    # an arbitrage signal is found from its pair id and from either leg
    assert store.signals(instrument="GOLD.MCX") == [sigs[1]]
    assert store.signals(instrument="GC.COMEX/GOLD.MCX") == [sigs[1]]
    assert store.signals(instrument="GC.COMEX") == [sigs[2], sigs[1]]
    assert store.signals(since_ns=T0 + 2) == [sigs[0], sigs[2]]
    assert store.signals(limit=1) == [sigs[0]]
    assert store.signals(kind="anomaly", instrument="CL.NYMEX") == []


def test_signal_payload_is_the_codec_json_under_a_deterministic_id(store: ClickHouseStore) -> None:
    sig = signals_fixture()[0]
    store.insert_signals([sig])
    row = store.client.query("SELECT signal_id, kind, instrument, ts_event, payload FROM signals").result_rows[0]
    assert row == (record_id(codec.encode(sig)), "crash", "CL.NYMEX", sig.ts_event, codec.encode(sig).decode())


def test_dead_letters_round_trip_filter_and_newest_first(store: ClickHouseStore) -> None:
    letters = [
        DeadLetter("codec", "malformed", "not json", "\x00\xff garbage", T0),
        DeadLetter("bars", "late", "beyond allowed lateness", "{...}", T0 + 10, "GC.COMEX", T0 - MIN),
        DeadLetter("validate", "nan_price", "price NaN", "NaN", T0 + 5, "CL.NYMEX", T0),
    ]
    assert store.insert_dead_letters(letters) == 3
    assert store.dead_letters() == [letters[1], letters[2], letters[0]]
    assert store.dead_letters(reason="late") == [letters[1]]
    assert store.dead_letters(limit=1) == [letters[1]]
    assert store.dead_letters(reason="duplicate") == []


def test_ticks_columnar_insert_and_unknown_instrument_refused(store: ClickHouseStore) -> None:
    reg = default_registry()
    ticks: list[Tick] = [
        TradeTick("CL.NYMEX", to_fixed("-37.63"), 5, T0, T0 + 1, seq=1),
        QuoteTick("GC.COMEX", to_fixed("1800.1"), to_fixed("1800.2"), 3, 4, T0 + 1, T0 + 2, seq=7),
        TradeTick("USDINR.FX", to_fixed("76.6335"), 1, T0 + 2, T0 + 3),
    ]
    cols = TickColumns.from_ticks(ticks, reg)
    assert store.insert_ticks(cols, reg) == 3
    rows = store.client.query(
        "SELECT instrument_id, kind, ts_event, seq, price, bid, ask FROM ticks ORDER BY ts_event"
    ).result_rows
    assert rows == [
        ("CL.NYMEX", 0, T0, 1, -37_630_000_000, 0, 0),
        ("GC.COMEX", KIND_QUOTE, T0 + 1, 7, 0, 1_800_100_000_000, 1_800_200_000_000),
        ("USDINR.FX", 0, T0 + 2, 0, 76_633_500_000, 0, 0),
    ]
    assert store.counts().ticks == 3

    bad = cols.take(np.array([0]))
    bad.instrument[0] = -1
    with pytest.raises(ValueError, match="unknown instrument"):
        store.insert_ticks(bad, reg)
    assert store.counts().ticks == 3


def test_large_batches_are_split_into_several_inserts(chdb_dir: Path) -> None:
    s = ClickHouseStore(StorageConfig(dsn=f"chdb://{chdb_dir}", database="batched", insert_batch_rows=7))
    try:
        s.migrate()
        bars = [bar(T0 + i * MIN, "1") for i in range(50)]
        s.insert_bars(bars)
        assert s.bars("CL.NYMEX", MIN, limit=100) == bars
    finally:
        s.close()


def test_a_second_data_path_is_refused_while_one_is_open(chdb_dir: Path, tmp_path: Path) -> None:
    # The chdb limit this module is built around (INFRA.md): one engine path per process.
    with pytest.raises(ProgrammingError, match="already initialized"):
        ClickHouseStore(StorageConfig(dsn=f"chdb://{tmp_path / 'other'}"))


def test_default_dsn_is_chdb_under_the_state_dir(tmp_path: Path) -> None:
    cfg = StorageConfig(state_dir=str(tmp_path / "state"))
    assert cfg.resolved_dsn() == f"chdb://{tmp_path / 'state' / 'chdb'}"
    assert StorageConfig(dsn="http://localhost:8123").resolved_dsn() == "http://localhost:8123"
