"""Every benchmark, one command, one table: intake, end to end, lanes (status changes mid-storm),
storm (a release's new issues under the rate limits), reconcile, memory.

    .venv/bin/python -m bench.run                  # the figures in docs/benchmarks.md, SQLite and PostgreSQL
    .venv/bin/python -m bench.run --databases sqlite   # one column
    .venv/bin/python -m bench.run --smoke          # everything at toy size (the test suite runs this)
    .venv/bin/python -m bench.run --only intake,e2e --json results.json

Rules the figures follow: one run of this command on one machine; each figure is the median of
several rounds; comparisons (syncer vs the bare endpoint) are ratios of rounds measured side by
side in the same run; the machine's cores and load are printed with the table, since other work on a
2-core machine moves every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import e2e, intake, lanes, memory, stack, storm

SECTIONS = ("intake", "e2e", "e2e2", "lanes", "storm", "reconcile", "memory")
RECONCILE_SCRIPT = Path(__file__).resolve().parent / "reconcile.py"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- reconcile: the reconciliation engineer's script, run as it is documented ----------------------


def run_reconcile(sizes: Sequence[int], rounds: dict[int, int], smoke: bool) -> dict[str, Any]:
    """`bench/reconcile.py` (issue 5's benchmark) for each size; medians over rounds. Its table is
    parsed by column name, so a column added there does not break this."""
    if not RECONCILE_SCRIPT.exists():
        return {"available": False, "why": "bench/reconcile.py is not in this tree"}
    per_size: dict[int, list[dict[str, str]]] = {}
    for n in sizes:
        for r in range(rounds.get(n, 1)):
            argv = [sys.executable, str(RECONCILE_SCRIPT), "--quiet"]
            argv += ["--smoke"] if smoke else ["--sizes", str(n)]
            log(f"  reconcile N={n:,} round {r + 1}/{rounds.get(n, 1)}")
            done = subprocess.run(argv, capture_output=True, text=True, cwd=stack.REPO, timeout=1800,
                                  check=False)
            if done.returncode != 0:
                return {"available": False,
                        "why": f"bench/reconcile.py exited {done.returncode}: {done.stderr.strip()[-500:]}"}
            rows = _markdown_rows(done.stdout)
            if not rows:
                return {"available": False, "why": "bench/reconcile.py printed no table"}
            per_size.setdefault(n, []).extend(rows)
    out: dict[str, Any] = {"available": True, "sizes": {}}
    for n, rows in per_size.items():
        numeric: dict[str, float] = {}
        for key in rows[0]:
            values = [_number(row.get(key, "")) for row in rows]
            if all(v is not None for v in values):
                numeric[key] = statistics.median(v for v in values if v is not None)
        out["sizes"][str(n)] = {"rounds": len(rows), "median": numeric,
                                "within_target": all(row.get("within target") == "yes" for row in rows)}
    return out


def _markdown_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if len(lines) < 3:
        return []
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=False))
            for line in lines[2:]]


def _number(text: str) -> float | None:
    cleaned = text.replace(",", "").strip()
    return float(cleaned) if re.fullmatch(r"-?\d+(\.\d+)?", cleaned) else None


# -- the table --------------------------------------------------------------------------------------


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def _per_ticket(m: dict[str, Any], cores_key: str) -> float:
    """ms of CPU per ticket from a figure in cores over the whole run."""
    return float(m[cores_key] * m["all_done_s"] / m["issues"] * 1000)


DATABASES = ("sqlite", "postgres")
TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# Where a target differs by database (issue 15 asks more of the production path).
INTAKE_P99_MS = {"sqlite": 50.0, "postgres": 100.0}
BURST_P99_MS = 250.0
TICKETS_PER_S = {"sqlite": 100.0, "postgres": 150.0}

Row = tuple[str, str, str, str, str]  # benchmark, what, figure, target, met


def rows(results: dict[str, Any], database: str = "sqlite") -> list[Row]:
    """One database's figures as table rows."""
    rows: list[Row] = []
    p99_target = INTAKE_P99_MS.get(database, 50.0)
    tickets_target = TICKETS_PER_S.get(database, 100.0)
    if "intake" in results:
        r = results["intake"]
        b, s = r["bare"], r["syncer"]
        conc = r["settings"]["concurrency"]
        rows.append(("intake", f"bare endpoint (uvicorn + FastAPI, reads the body, 202), {conc} connections",
                     f"{b['rps']:,.0f} req/s, p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms",
                     "the limit", ""))
        rows.append(("intake", f"`syncer web`, signed `issue.created`, {conc} connections",
                     f"{s['rps']:,.0f} req/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms",
                     f"p99 < {p99_target:.0f} ms", _mark(s["p99_ms"] < p99_target)))
        rows.append(("intake", "throughput ratio syncer / bare (rounds side by side)",
                     f"{r['ratio']:.2f} (rounds: {', '.join(f'{x:.2f}' for x in r['ratios'])})",
                     ">= 0.50", _mark(r["ratio"] >= 0.5)))
        if "burst_p99_ms" in s:
            burst, bconn = int(s["burst_requests"]), int(s["burst_connections"])
            rows.append(("intake", f"bare endpoint, a burst of {burst:,} webhooks over {bconn} connections "
                         "sent as fast as answered",
                         f"p50 {b['burst_p50_ms']:.1f} ms, p99 {b['burst_p99_ms']:.1f} ms, "
                         f"{burst / b['burst_s']:,.0f} req/s", "the limit", ""))
            rows.append(("intake", f"`syncer web`, the same burst of {burst:,} after the steady load",
                         f"p50 {s['burst_p50_ms']:.1f} ms, p99 {s['burst_p99_ms']:.1f} ms, "
                         f"max {s['burst_max_ms']:.0f} ms, {burst / s['burst_s']:,.0f} req/s",
                         f"p99 < {BURST_P99_MS:.0f} ms", _mark(s["burst_p99_ms"] < BURST_P99_MS)))
        stored = sum(x["stored"] for x in r["rounds"]["syncer"])
        accepted = sum(x["accepted_total"] for x in r["rounds"]["syncer"])
        rows.append(("intake", "CPU per request, bare / syncer (ratio)",
                     f"{b['cpu_us_per_request']:.0f} / {s['cpu_us_per_request']:.0f} us "
                     f"({r['cpu_ratio']:.2f})", "", ""))
        rows.append(("intake", "202s that are rows in the database and queued once (all rounds)",
                     f"{stored:,} of {accepted:,}; non-202: {r['non_202']} (bare: {r['bare_non_202']})",
                     "all",
                     _mark(r["all_stored"] and r["all_enqueued"] and r["non_202"] == 0
                           and r["bare_non_202"] == 0)))
    if "e2e" in results:
        r = results["e2e"]
        m = r["median"]
        n = int(m["issues"])
        lat = r["settings"]["latency"]
        rows.append(("end to end", f"{n:,} new issues as webhooks, fakes +{lat * 1000:.0f} ms per call: "
                     "last ticket exists after",
                     f"{m['last_ticket_s']:.1f} s = {m['tickets_per_s']:.0f} tickets/s "
                     f"(everything linked both ways: {m['all_done_s']:.1f} s)",
                     f">= {tickets_target:.0f} tickets/s", _mark(m["tickets_per_s"] >= tickets_target)))
        rows.append(("end to end", "Jira calls per ticket (search, create, remote link) + once per process "
                     "or assignee (serverInfo, user search), or project and issue type (create-meta)",
                     f"{m['jira_calls_per_ticket_steady']:.2f} + {m['jira_one_off_calls']:.0f} once "
                     f"(all calls / tickets: {m['jira_calls_per_ticket']:.3f})",
                     "<= 3", _mark(m["jira_calls_per_ticket_steady"] <= 3.0)))
        rows.append(("end to end", "Sentry calls per ticket", f"{m['sentry_calls_per_ticket']:.2f}", "<= 1",
                     _mark(m["sentry_calls_per_ticket"] <= 1.0)))
        rows.append(("end to end", "duplicate tickets (all rounds)", str(r["duplicates_total"]), "0",
                     _mark(r["duplicates_total"] == 0 and r["complete"])))
        rows.append(("end to end", "fakes' own delay (probe, p50 / p99)",
                     f"{m['probe_p50_ms']:.1f} / {m['probe_p99_ms']:.1f} ms",
                     f"small next to {lat * 1000:.0f} ms", ""))
        rows.append(("end to end", "CPU per ticket: worker (all processes) / web / fakes + generator",
                     " / ".join(f"{_per_ticket(m, key):.1f}" for key in
                                ("cpu_worker", "cpu_web", "cpu_fakes_and_generator"))
                     + f" ms; machine {m['machine_busy_cores']:.2f} of {stack.machine()['cores']} cores busy",
                     "", ""))
    if "e2e2" in results:
        r = results["e2e2"]
        m = r["median"]
        rows.append(("end to end", "the same with one worker process (`syncer worker --processes 1`, 48 "
                     "threads; not the default)",
                     f"{m['last_ticket_s']:.1f} s = {m['tickets_per_s']:.0f} tickets/s, worker "
                     f"{_per_ticket(m, 'cpu_worker'):.1f} ms CPU per ticket; duplicates "
                     f"{r['duplicates_total']}", "", ""))
    if "reconcile" in results:
        r = results["reconcile"]
        if not r.get("available"):
            rows.append(("reconcile", "**NOT MEASURED**", r.get("why", ""), "", ""))
        else:
            for n, size in r["sizes"].items():
                med = size["median"]
                rows.append(("reconcile", f"{int(n):,} links, 1% drifted ({size['rounds']} round(s))",
                             f"{med.get('wall s', float('nan')):.1f} s, {med.get('calls', 0):,.0f} calls, "
                             f"{med.get('repaired', 0):,.0f} repaired, "
                             f"peak RSS {med.get('peak RSS MiB', 0):.0f} MiB",
                             "calls <= 2*ceil(N/100) + repairs + 2", _mark(size["within_target"])))
    if "lanes" in results:
        r = results["lanes"]
        rows.append(("lanes", f"{r['status_changes']} resolves sent during a storm of {r['issues']:,} new "
                     f"issues at SYNCER_JIRA_MAX_RPS={r['jira_max_rps']:g}: webhook to ticket Done, "
                     "p50 / p99 / max",
                     f"{r['status_p50_s']:.2f} / {r['status_p99_s']:.2f} / {r['status_max_s']:.2f} s "
                     f"(storm {r['storm_s']:.0f} s, {r['storm_tickets_per_s']:.1f} tickets/s)",
                     f"p99 <= {lanes.TARGET_SECONDS:g} s", _mark(r["within_target"])))
    if "storm" in results:
        r = results["storm"]
        rows.append(("storm", f"{r['issues']:,} new issues at SYNCER_JIRA_MAX_RPS={r['jira_max_rps']:g}: "
                     "last ticket / all linked, beside the floor (each side's calls / its rate)",
                     f"{r['last_ticket_s']:.1f} / {r['all_linked_s']:.1f} s, floor {r['floor_s']:.1f} s; "
                     f"Jira {r['jira_calls_per_ticket']:.2f}, Sentry {r['sentry_calls_per_ticket']:.2f} "
                     "calls/ticket",
                     f"within {storm.WITHIN:.0%} of the floor", _mark(r["within_target"])))
    if "memory" in results:
        r = results["memory"]
        rows.append(("memory", f"worker peak RSS after {r['step']:,} / {r['events']:,} events, all "
                     f"{r['processes']} processes (the largest one after {r['events']:,})",
                     f"{r['peak_after_first_mib']:.0f} / {r['peak_after_last_mib']:.0f} MiB "
                     f"({r['growth']:+.1%}; {r['largest_process_peak_after_last_mib']:.0f} MiB)",
                     "no growth (< +10%)", _mark(r["growth"] < 0.10)))
    return rows


def table(by_database: dict[str, dict[str, Any] | None]) -> str:
    """Every database's figures side by side: one row per figure, a column per database. A database
    that was skipped has its reason in place of its figures."""
    columns = list(by_database)
    merged: dict[tuple[str, str], dict[str, Row]] = {}
    for database, results in by_database.items():
        for row in rows(results or {}, database):
            merged.setdefault((row[0], row[1]), {})[database] = row
    header = ("benchmark", "what", *(TITLES.get(c, c) for c in columns), "target", "met")
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for (benchmark, what), per in merged.items():
        figures = [per[c][2] if c in per else ("skipped" if by_database[c] is None else "") for c in columns]
        targets = {c: per[c][3] for c in columns if c in per}
        distinct = set(targets.values())
        target = (next(iter(distinct)) if len(distinct) == 1
                  else "; ".join(f"{TITLES.get(c, c)} {t}" for c, t in targets.items()))
        met = " / ".join(per[c][4] if c in per and per[c][4] else "-" for c in columns)
        met = "" if all(not (c in per and per[c][4]) for c in columns) else met
        out.append("| " + " | ".join((benchmark, what, *figures, target, met)) + " |")
    return "\n".join(out)


# -- the command ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="every benchmark at toy size")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--intake-rounds", type=int, default=5)
    parser.add_argument("--e2e-rounds", type=int, default=3)
    parser.add_argument("--e2e-issues", type=int, default=1000)
    parser.add_argument("--databases", default=",".join(DATABASES),
                        help="comma-separated, a column each: sqlite, postgres (PostgreSQL is "
                             "skipped with a message when none answers on 127.0.0.1:5432)")
    parser.add_argument("--database", choices=DATABASES, help="one database only (as --databases X)")
    parser.add_argument("--burst", type=int, default=intake.Settings.burst,
                        help="webhooks in intake's burst (0: none)")
    parser.add_argument("--reconcile-sizes", default="1000,10000,100000")
    parser.add_argument("--memory-events", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write every figure (all rounds) here")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    databases = ([args.database] if args.database
                 else [d.strip() for d in args.databases.split(",") if d.strip()])
    if set(databases) - set(DATABASES) or not databases:
        parser.error(f"--databases takes {', '.join(DATABASES)}")

    command = "python -m bench.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    before = stack.machine()
    started = time.monotonic()
    by_database: dict[str, dict[str, Any] | None] = {}
    skipped: dict[str, str] = {}
    for database in databases:
        if database == "postgres" and not stack.postgres_available():
            skipped[database] = f"no PostgreSQL answers at {stack.POSTGRES_ADMIN}"
            log(f"PostgreSQL column skipped: {skipped[database]} (set SYNCER_BENCH_POSTGRES_URL)")
            by_database[database] = None
        else:
            by_database[database] = {}

    def e2e_settings(database: str) -> e2e.Settings:
        base = e2e.SMOKE if args.smoke else e2e.Settings(issues=args.e2e_issues)
        return dataclasses.replace(base, database=database)

    def intake_settings(database: str) -> intake.Settings:
        base = intake.SMOKE if args.smoke else intake.Settings(burst=args.burst)
        return dataclasses.replace(base, database=database)

    steps: dict[str, Callable[[str], Any]] = {
        "intake": lambda db: intake.run(intake_settings(db), 1 if args.smoke else args.intake_rounds,
                                        log=log),
        "e2e": lambda db: e2e.run(e2e_settings(db), 1 if args.smoke else args.e2e_rounds, log=log),
        "e2e2": lambda db: e2e.run(dataclasses.replace(e2e_settings(db), worker_args=("--processes", "1")),
                                   1 if args.smoke else args.e2e_rounds, log=log),
        "lanes": lambda db: lanes.run(dataclasses.replace(lanes.SMOKE if args.smoke else lanes.Settings(),
                                                          database=db), log=log),
        "storm": lambda db: storm.run(dataclasses.replace(storm.SMOKE if args.smoke else storm.Settings(),
                                                          database=db), log=log),
        "memory": lambda db: memory.run(
            20 if args.smoke else args.memory_events, 10 if args.smoke else 1000, database=db, log=log),
    }
    # Section by section, each database in turn: the two columns of a figure are measured minutes
    # apart, not a whole run apart, so a change in the machine's load moves both.
    for name in SECTIONS:
        if name not in chosen:
            continue
        if name == "reconcile":  # bench/reconcile.py's own figures, on its own database: one column
            log("reconcile:")
            first = next((db for db, r in by_database.items() if r is not None), None)
            if first is not None:
                by_database[first]["reconcile"] = run_reconcile(  # type: ignore[index]
                    *_reconcile_plan(args.reconcile_sizes, args.smoke), smoke=args.smoke)
            continue
        for database, results in by_database.items():
            if results is None:
                continue
            log(f"{name} ({database}):")
            results[name] = steps[name](database)
    after = stack.machine()
    elapsed = time.monotonic() - started

    names = ", ".join(TITLES[db] + (" (skipped)" if db in skipped else "") for db in databases)
    print(f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {before['cores']} cores, Python "
          f"{before['python']}, databases {names}; load average (1 min) {before['load1']} before, "
          f"{after['load1']} after; took {elapsed / 60:.1f} min.\n")
    print(table(by_database))
    for db, why in skipped.items():
        print(f"\n{TITLES[db]}: skipped, {why}.")
    if args.json:
        first_results = next((r for r in by_database.values() if r is not None), {})
        payload = {"command": command, "machine_before": before, "machine_after": after,
                   "databases": databases, "skipped": skipped,
                   # The first database's sections at the top level, as before there were columns.
                   **first_results, "by_database": by_database}
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0 if all(_correct(r) for r in by_database.values() if r is not None) else 1


def _reconcile_plan(sizes: str, smoke: bool) -> tuple[list[int], dict[int, int]]:
    if smoke:
        return [600], {600: 1}
    ns = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
    # Medians of three where a round takes seconds; one round of the largest (minutes, mostly seeding).
    return ns, {n: (3 if n <= 10_000 else 1) for n in ns}


def _correct(results: dict[str, Any]) -> bool:
    """Correctness, not speed: what must hold whatever the machine's load. (bench/reconcile.py checks
    its own and exits non-zero, which shows in the table as NOT MEASURED with its words.)"""
    ok = True
    if "intake" in results:
        ok &= results["intake"]["all_stored"] and results["intake"]["non_202"] == 0
    for name in ("e2e", "e2e2"):
        if name in results:
            ok &= results[name]["complete"] and results[name]["duplicates_total"] == 0
    if "lanes" in results:
        ok &= results["lanes"]["complete"]
    if "storm" in results:
        ok &= results["storm"]["complete"]
    if "memory" in results:
        ok &= results["memory"]["all_linked"]
    return bool(ok)


if __name__ == "__main__":
    sys.exit(main())
