"""The benchmarks still run: `python -m bench.run --smoke` end to end, at toy size.

No timed assertions (the figures depend on the machine and its load); only what must hold at any
speed: every 202 is a stored row, every issue gets exactly one ticket, memory is read, and the table
is printed with every section in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadgen import LoadResult
from bench.run import _markdown_rows, _number

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_every_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    results = json.loads(out.read_text())

    intake = results["intake"]
    assert intake["all_stored"], intake["rounds"]["syncer"]
    assert intake["non_202"] == 0
    assert intake["all_enqueued"], intake["rounds"]["syncer"]
    assert intake["bare_non_202"] == 0, intake["rounds"]["bare"]  # a bare 422 went unnoticed once
    assert intake["bare"]["rps"] > 0 and intake["syncer"]["rps"] > 0

    e2e = results["e2e"]
    assert e2e["complete"], e2e["rounds"]
    assert e2e["duplicates_total"] == 0
    assert e2e["median"]["sentry_calls_per_ticket"] == 1.0
    assert e2e["median"]["jira_calls_per_ticket_steady"] == 3.0  # search, create, remote link

    assert results["e2e2"]["complete"] and results["e2e2"]["duplicates_total"] == 0

    memory = results["memory"]
    assert memory["all_linked"]
    assert len(memory["samples"]) == 2 and memory["peak_after_last_mib"] > 0

    lanes = results["lanes"]
    assert lanes["complete"], lanes["samples"]
    assert len(lanes["samples"]) == 3

    storm = results["storm"]
    assert storm["complete"], storm
    assert storm["jira_bulk_creates"] >= 1
    assert storm["sentry_calls_per_ticket"] == 1.0

    reconcile = results["reconcile"]
    assert reconcile["available"], reconcile.get("why")

    table = done.stdout
    for section in ("| intake |", "| end to end |", "| lanes |", "| reconcile |", "| memory |"):
        assert section in table, table


def test_percentiles_are_nearest_rank() -> None:
    result = LoadResult(latencies=[i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert result.percentile(50) == pytest.approx(0.050)
    assert result.percentile(99) == pytest.approx(0.099)
    assert result.percentile(100) == pytest.approx(0.100)
    assert LoadResult().percentile(99) == 0.0


def test_reconcile_table_is_read_by_column_name() -> None:
    text = (
        "|      N | drifted | wall s | within target |\n"
        "|-------:|--------:|-------:|--------------:|\n"
        "| 10,000 |     100 |    3.5 |           yes |\n"
        "\n2 cores, ...\n"
    )
    (row,) = _markdown_rows(text)
    assert row["N"] == "10,000" and row["within target"] == "yes"
    assert _number(row["N"]) == 10_000 and _number(row["wall s"]) == 3.5
    assert _number("yes") is None


@pytest.mark.slow
def test_message_cost_benchmark_runs_in_smoke_mode() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.message_cost", "--smoke"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if "us per delivery" in line]
    assert len(lines) == 2 and "one per message" in lines[0] and "per message" in lines[1], done.stdout


@pytest.mark.slow
def test_soak_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--smoke", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    result = json.loads(out.read_text())
    assert result["during_outage"]["tickets"] == 0  # Jira really was down
    assert result["issues"] == result["exactly_one_linked"] == result["tickets"] == 30
    assert result["duplicates"] == 0 and result["dead_letters"] == 0
    assert result["attempts_max"] > 1  # the outage made every delivery retry
    assert result["reconcile"]["exit_code"] == 0 and result["reconcile"]["backfilled"] == 0


@pytest.mark.slow
def test_reconcile_benchmark_runs_both_modes_in_smoke_mode() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconcile", "--smoke", "--quiet", "--mode", "incremental,full"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    # The script exits 1 when a findable change was missed or a repair not made.
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    first_table = done.stdout.split("\n\n")[0]  # the calls-per-run table follows
    rows = {row["mode"]: row for row in _markdown_rows(first_table)}
    assert set(rows) == {"incremental", "full"}, done.stdout
    # The incremental run reads its slice, not every link.
    assert _number(rows["incremental"]["slice links"]) == 5 and _number(rows["full"]["slice links"]) == 0
    assert "Calls per run" in done.stdout
