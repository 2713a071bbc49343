"""Backtester end to end: simulated arbitrage and crash days -> pipeline -> trade module -> venues -> report."""

from __future__ import annotations

import argparse
import json
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from feeds.tickfile import write_ticks
from market.fixedpoint import PRICE_SCALE
from market.instruments import default_registry
from market.units import default_units
from simulators.config import SimConfig
from simulators.market import simulate
from trading.backtest import BacktestReport, run_backtest
from trading.backtest_cli import add_backtest_parser
from trading.config import (
    BacktestConfig,
    CrashStrategyConfig,
    ExecutionConfig,
    RiskConfig,
    TradeConfig,
    VenueConfig,
)
from trading.positions import point_value

REG = default_registry()
UNITS = default_units()
LATENCY_MS = 20


@pytest.fixture(scope="module")
def arb_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ticks") / "arbitrage.parquet"
    write_ticks(simulate(SimConfig(scenarios=("arbitrage",), seed=3, duration_s=600)), path)
    return path


@pytest.fixture(scope="module")
def runs(arb_day: Path, tmp_path_factory: pytest.TempPathFactory) -> list[BacktestReport]:
    return [run_backtest("arbitrage", arb_day, LATENCY_MS, tmp_path_factory.mktemp(f"run{k}")) for k in range(2)]


def load(report: BacktestReport) -> dict[str, Any]:
    return json.loads(report.files.report_json.read_bytes())  # type: ignore[no-any-return]


def test_writes_report_files(runs: list[BacktestReport]) -> None:
    files = runs[0].files
    for png in (files.equity_png, files.positions_png):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        w, h = struct.unpack(">II", data[16:24])
        assert w > 100 and h > 100
    page = files.index_html.read_text()
    for ref in ('src="equity.png"', 'src="positions.png"', 'href="report.json"', "GC.COMEX", "GOLD.MCX"):
        assert ref in page
    assert f"{runs[0].summary.pnl_usd}" in page


def test_report_is_deterministic(runs: list[BacktestReport]) -> None:
    a, b = runs[0].files, runs[1].files
    assert a.report_json.read_bytes() == b.report_json.read_bytes()
    assert a.equity_png.read_bytes() == b.equity_png.read_bytes()
    assert a.positions_png.read_bytes() == b.positions_png.read_bytes()
    assert a.index_html.read_bytes() == b.index_html.read_bytes()


def test_trades_the_arbitrage_episode(runs: list[BacktestReport]) -> None:
    rep = load(runs[0])
    assert rep["counts"]["signals_by_kind"]["arbitrage"] == 2  # open + close of the scenario's episode
    fills = rep["fills"]
    assert fills
    first = {f["instrument_id"]: f["side"] for f in fills[:2]}
    assert first == {"GC.COMEX": "buy", "GOLD.MCX": "sell"}  # MCX gold was rich: buy COMEX, sell MCX
    assert all(r["position"] == 0 for r in rep["instruments"])  # unwound on the close signal
    assert rep["summary"]["pnl_usd"] > 0  # the 100 bps dislocation pays for spreads and slippage
    assert rep["summary"]["fills"] == len(fills) and rep["summary"]["orders"] == len(rep["orders"])


def check_pnl_against_fills(rep: dict[str, Any]) -> None:
    """Recompute every instrument's P&L from the fills in report.json, independently of trading.positions."""
    total_usd = Decimal(0)
    for r in rep["instruments"]:
        fills = [f for f in rep["fills"] if f["instrument_id"] == r["instrument_id"]]
        pv = point_value(REG.get(r["instrument_id"]), UNITS)
        mark = Decimal(r["mark"])
        signed = [(f["qty"] if f["side"] == "buy" else -f["qty"]) for f in fills]
        gross = sum((q * (mark - f["price"]) for q, f in zip(signed, fills, strict=True)), Decimal(0))
        fees = sum((Decimal(f["fee"]) for f in fills), Decimal(0))
        assert Decimal(r["pnl"]) == gross * pv / PRICE_SCALE - fees
        assert Decimal(r["realised"]) + Decimal(r["unrealised"]) == Decimal(r["pnl"])
        assert r["position"] == sum(signed) and r["fills"] == len(fills)
        turnover = sum((abs(f["qty"] * f["price"] * pv / PRICE_SCALE * Decimal(f["usd_per_quote"])) for f in fills),
                       Decimal(0))
        assert r["turnover_usd"] == pytest.approx(float(turnover))
        total_usd += Decimal(str(r["pnl_usd"]))
    assert rep["summary"]["pnl_usd"] == pytest.approx(float(total_usd), abs=1e-5)
    assert rep["equity"][-1][1] == pytest.approx(rep["summary"]["pnl_usd"], abs=1e-5)
    assert rep["summary"]["max_drawdown_usd"] >= 0


def test_pnl_matches_the_fills(runs: list[BacktestReport]) -> None:
    check_pnl_against_fills(load(runs[0]))


def test_passive_orders_fill_as_makers_through_the_queue(arb_day: Path, tmp_path: Path) -> None:
    cfg = BacktestConfig(trade=TradeConfig(execution=ExecutionConfig(style="passive")),
                         venue=VenueConfig(fee_bps=0.5))
    rep = load(run_backtest("arbitrage", arb_day, LATENCY_MS, tmp_path, cfg))
    fills = rep["fills"]
    assert all(Decimal(f["fee"]) > 0 for f in fills)
    makers = [f for f in fills if f["liquidity"] == "maker"]
    assert len(makers) > len(fills) / 2  # mostly filled while resting (a few orders were marketable on arrival)
    orders = {o["order_id"]: o for o in rep["orders"]}
    assert all(o["tif"] == "day" for o in orders.values())
    for f in fills:
        o = orders[f["order_id"]]
        assert f["ts_event"] >= o["sent_ns"] + LATENCY_MS * 1_000_000  # only after it reached the book
        if f["liquidity"] == "maker":
            assert f["price"] == o["price"]  # a resting order fills at its own limit
        else:  # marketable on arrival: at its limit or better
            assert f["price"] <= o["price"] if f["side"] == "buy" else f["price"] >= o["price"]
    check_pnl_against_fills(rep)


@pytest.mark.parametrize("policy", ["approve", "reject"])
def test_parked_orders_follow_the_approval_policy(arb_day: Path, tmp_path: Path, policy: str) -> None:
    cfg = BacktestConfig(trade=TradeConfig(risk=RiskConfig(auto_threshold=0.01)), approval=policy,  # type: ignore[arg-type]
                         approval_delay_ms=3000)
    rep = load(run_backtest("arbitrage", arb_day, 0, tmp_path, cfg))
    assert rep["counts"]["parked"] >= 2  # both opening legs waited for a human
    if policy == "reject":
        assert rep["fills"] == [] and rep["counts"]["approved"] == 0
        assert {o["status"] for o in rep["orders"]} == {"rejected"}
        return
    assert rep["counts"]["approved"] >= 2
    orders = {o["order_id"]: o for o in rep["orders"]}
    for f in rep["fills"]:
        o = orders[f["order_id"]]
        if o["approved"]:
            assert o["sent_ns"] - o["created_ns"] == 3000 * 1_000_000 and f["ts_event"] >= o["sent_ns"]
    check_pnl_against_fills(rep)


def test_orders_reach_the_book_after_the_latency(runs: list[BacktestReport]) -> None:
    rep = load(runs[0])
    orders = {o["order_id"]: o for o in rep["orders"]}
    for f in rep["fills"]:
        o = orders[f["order_id"]]
        arrival = o["sent_ns"] + LATENCY_MS * 1_000_000
        if f["liquidity"] == "taker":
            assert f["ts_event"] == arrival
        else:
            assert f["ts_event"] >= arrival


def test_directory_input_and_batch_size_do_not_change_the_trades(arb_day: Path, runs: list[BacktestReport],
                                                                 tmp_path: Path) -> None:
    table = pq.read_table(arb_day)
    data = tmp_path / "days"
    data.mkdir()
    cut = table.num_rows // 3
    write_ticks(table.slice(0, cut), data / "part-0.parquet")
    write_ticks(table.slice(cut), data / "part-1.parquet")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"batch_rows": 10_007}))
    parser = argparse.ArgumentParser()
    add_backtest_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["backtest", "--strategy", "arbitrage", "--data", str(data), "--latency-ms",
                              str(LATENCY_MS), "--config", str(cfg), "--out", str(tmp_path / "out"), "--json"])
    assert args.handler(args) == 0
    got = json.loads((tmp_path / "out" / "report.json").read_bytes())
    want = load(runs[0])
    assert got["data_files"] == ["part-0.parquet", "part-1.parquet"]
    for key in ("fills", "orders", "instruments", "summary", "equity"):
        assert got[key] == want[key], key


def test_bad_inputs(tmp_path: Path, arb_day: Path) -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        run_backtest("momentum", arb_day, 0, tmp_path)
    with pytest.raises(FileNotFoundError):
        run_backtest("arbitrage", tmp_path / "missing.parquet", 0, tmp_path)
    with pytest.raises(ValueError, match="latency_ms"):
        run_backtest("arbitrage", arb_day, -1, tmp_path)


def test_crash_strategy_shorts_on_the_warning_and_goes_flat_after_cooldown(tmp_path: Path) -> None:
    path = tmp_path / "crash.parquet"
    write_ticks(simulate(SimConfig(scenarios=("crash",), seed=3, duration_s=600)), path)
    cfg = BacktestConfig(trade=TradeConfig(crash=CrashStrategyConfig(mode="short", cooldown_s=120)))
    rep = load(run_backtest("crash", path, 5, tmp_path / "out", cfg))
    assert rep["counts"]["signals_by_kind"].get("crash", 0) >= 1
    fills = rep["fills"]
    assert fills and fills[0]["side"] == "sell"
    crude = {i.id for i in REG.by_commodity("crude_oil")}
    assert {f["instrument_id"] for f in fills} <= crude  # the scenario crashes crude oil only
    for r in rep["instruments"]:
        assert r["position"] == 0  # flat again once the cooldown ran out
    first_buy = min(f["ts_event"] for f in fills if f["side"] == "buy")
    assert first_buy - fills[0]["ts_event"] >= 120 * 10**9 - 10**9  # held short through the cooldown
