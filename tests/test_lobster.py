"""LOBSTER replay: the real sample files replay with no mismatches; corrupted or priority-breaking input is caught."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from trading.cli import add_lob_parser
from trading.lobster import DUMMY_PRICE, replay_lobster

AAPL = "lobster_aapl_2012-06-21_level10_first999/AAPL_2012-06-21_34200000_57600000_{}_10.csv"
AMZN = "lobster_amzn_2012-06-21_level1/AMZN_2012-06-21_34200000_57600000_{}_1.csv"


def _files(root: Path, pattern: str) -> tuple[Path, Path]:
    return root / pattern.format("message"), root / pattern.format("orderbook")


@pytest.mark.parametrize("impl", ["numba", "python"])
def test_aapl_level10_replays_exactly_with_price_time_priority(shared_data: Path, impl: str) -> None:
    rep = replay_lobster(*_files(shared_data, AAPL), impl=impl)  # type: ignore[arg-type]
    assert rep.messages == rep.compared_rows == 999 and rep.file_levels == rep.levels == 10
    assert rep.by_type == {"add": 471, "delete": 369, "execute_visible": 98, "execute_hidden": 61}
    assert rep.mismatched_rows == 0 and sum(rep.mismatches_per_level["bid"] + rep.mismatches_per_level["ask"]) == 0
    assert rep.priority_checked and rep.executions_checked > 80 and rep.priority_violations == 0
    assert rep.engine_executions > 80 and rep.engine_mismatches == 0  # fills done by the matching engine
    assert rep.unknown["unmatched_qty"] == 0 and rep.ok
    json.loads(rep.to_json())


def test_aapl_compare_fewer_levels(shared_data: Path) -> None:
    rep = replay_lobster(*_files(shared_data, AAPL), levels=3)
    assert rep.levels == 3 and rep.mismatched_rows == 0 and len(rep.mismatches_per_level["ask"]) == 3


def test_amzn_level1_full_day_has_no_mismatches(shared_data: Path) -> None:
    rep = replay_lobster(*_files(shared_data, AMZN))
    assert rep.messages == 57_515 and rep.compared_rows == 57_514  # row 0 is a hidden execution: the seed
    assert rep.by_type["add"] == 27_845 and rep.by_type["execute_visible"] == 8_974
    assert rep.mismatched_rows == 0
    assert not rep.priority_checked  # deeper levels are hidden, so queue order is not observable
    assert rep.unknown["execute"] > 0 and rep.unknown["unmatched_qty"] == 0 and rep.resync["levels_set"] > 0
    assert rep.engine_executions > 1000 and rep.engine_mismatches == 0


def test_corrupted_execution_size_is_a_mismatch(shared_data: Path, tmp_path: Path) -> None:
    msg, book = _files(shared_data, AAPL)
    lines = msg.read_text().splitlines()
    row = next(i for i, ln in enumerate(lines) if ln.split(",")[1] == "4" and int(ln.split(",")[3]) > 1)
    f = lines[row].split(",")
    f[3] = str(int(f[3]) - 1)  # one share less executed than really was
    lines[row] = ",".join(f)
    bad = tmp_path / "msg.csv"
    bad.write_text("\n".join(lines))
    rep = replay_lobster(bad, book)
    assert rep.mismatched_rows >= 1 and rep.mismatch_examples[0].row == row and not rep.ok


def _write(tmp_path: Path, messages: list[str], books: list[tuple[int, int, int, int]]) -> tuple[Path, Path]:
    m, b = tmp_path / "m.csv", tmp_path / "b.csv"
    m.write_text("\n".join(messages) + "\n")
    rows = []
    for ask, asz, bid, bsz in books:  # level 2 file; the second level is always empty
        rows.append(f"{ask},{asz},{bid},{bsz},{DUMMY_PRICE},0,{-DUMMY_PRICE},0")
    b.write_text("\n".join(rows) + "\n")
    return m, b


@pytest.mark.parametrize(("executed", "violations"), [(1, 0), (2, 1)])
def test_priority_violation_is_reported(tmp_path: Path, executed: int, violations: int) -> None:
    none = (DUMMY_PRICE, 0)
    msgs = ["1.0,1,1,10,1000,1", "1.1,1,2,10,1000,1", f"1.2,4,{executed},10,1000,1", "1.3,1,3,5,1100,-1"]
    books = [(*none, 1000, 10), (*none, 1000, 20), (*none, 1000, 10), (1100, 5, 1000, 10)]
    rep = replay_lobster(*_write(tmp_path, msgs, books), check_priority=True)
    assert rep.mismatched_rows == 0 and rep.priority_violations == violations
    if violations:
        v = rep.priority_examples[0]
        assert (v.row, v.order_id, v.price, v.side, v.ahead) == (2, 2, 1000, "bid", [1])
    else:
        assert rep.engine_executions == 1


def test_cli_json(shared_data: Path) -> None:
    parser = argparse.ArgumentParser()
    add_lob_parser(parser.add_subparsers(dest="command"))
    msg, book = _files(shared_data, AAPL)
    args = parser.parse_args(["lob", "lobster", str(msg), str(book), "--levels", "5", "--json"])
    out = io.StringIO()
    assert args.handler(args, out) == 0
    data = json.loads(out.getvalue())
    assert data["levels"] == 5 and data["mismatched_rows"] == 0
