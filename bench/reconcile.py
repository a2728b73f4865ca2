"""Benchmark: one reconciliation of N linked pairs, 1% of them drifted, against the local fakes.

    .venv/bin/python bench/reconcile.py                       # N = 1,000, 10,000 and 100,000
    .venv/bin/python bench/reconcile.py --sizes 1000,5000
    .venv/bin/python bench/reconcile.py --smoke               # a tiny N: that it runs (the tests do this)

(`python -m bench.reconcile` works as well; `python -m bench.run` runs it among the others.)

For each N, from scratch: a private Redis, a migrated SQLite database, and the fake Sentry and Jira in
this process with their webhooks off. N pairs are seeded in both fakes and in the database, in sync
and first seen days ago (outside the backfill window, as most linked issues are). Then 1% of them
drift the ways lost webhooks leave them, in equal parts: closed in Jira, reopened in Jira, resolved
in Sentry, regressed in Sentry, ticket deleted, ticket moved to another project; spread one to a
page of 100, as drift is in life.

The reconciliation is the real command, `syncer reconcile --json`, as a child process: its wall time
and peak RSS are the reconciliation's own (the fakes and their N issues live here, not there). API
calls are counted by the fakes' call logs. Targets: calls <= 2 x ceil(N/100) + repairs; peak memory
flat in N; 100,000 links in under 2 minutes on a 2-core machine.

The client-side rate limits are turned off (the fakes have none): with Jira Cloud's budget of about
10 calls a second, the calls, not this code, set a real deployment's pace.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

try:
    from bench.stack import (
        JIRA_EMAIL,
        JIRA_TOKEN,
        ORG,
        REPO,
        SENTRY_TOKEN,
        Broker,
        Database,
        machine,
        status_kib,
        syncer_command,
        syncer_env,
        workspace,
    )
except ModuleNotFoundError:  # run as a script (`python bench/reconcile.py`): bench/ is on the path
    from stack import (
        JIRA_EMAIL,
        JIRA_TOKEN,
        ORG,
        REPO,
        SENTRY_TOKEN,
        Broker,
        Database,
        machine,
        status_kib,
        syncer_command,
        syncer_env,
        workspace,
    )

from syncer.fakes.jira import FakeJira, start_fake_jira
from syncer.fakes.sentry import FakeSentry, start_fake_sentry
from syncer.store.engine import make_engine
from syncer.store.schema import Link, LinkState

POLICY = """
[defaults]
jira_project = "OPS"

[teams.payments]
jira_project = "PAY"

[[routes]]
name = "billing"
when = { project = "billing-*" }
team = "payments"
"""
# The drift mix: what a lost webhook leaves behind, and what the repair costs in calls.
KINDS = ("closed_in_jira", "resolved_in_sentry", "regressed", "reopened_in_jira", "deleted", "moved")
SEEDED_CLOSED = ("regressed", "reopened_in_jira")  # these start from a resolved issue and a Done ticket
DRIFT = 0.01
PAGE = 100


@dataclass
class Result:
    n: int
    drifted: int
    repaired: int
    failed: int
    unreachable: int  # deleted without a webhook: flagged and kept, for a person to act on
    run_seconds: float
    wall_seconds: float
    sentry_calls: int
    jira_calls: int
    page_reads: int  # Sentry's issue lists and Jira's searches (pages of links, backfill) + serverInfo
    peak_rss_mib: float
    seed_seconds: float
    by_kind: dict[str, int]

    @property
    def calls(self) -> int:
        return self.sentry_calls + self.jira_calls

    @property
    def repair_calls(self) -> int:
        return self.calls - self.page_reads

    @property
    def budget(self) -> int:
        return 2 * math.ceil(self.n / PAGE) + self.repaired + self.unreachable

    @property
    def within(self) -> bool:
        return self.calls <= self.budget


def drifted_positions(n: int) -> dict[int, str]:
    """Which links drift, and how: 1% of them, one to a page, the kinds in turn."""
    count = max(1, round(n * DRIFT))
    step = n / count
    return {int(k * step + step / 2): KINDS[k % len(KINDS)] for k in range(count)}


def seed(n: int, sentry: FakeSentry, jira: FakeJira, database_url: str) -> dict[str, int]:
    """N pairs in sync in both fakes and the database; then the drift. Returns drift by kind."""
    plan = drifted_positions(n)
    long_ago = datetime.now(UTC) - timedelta(days=3)
    issue_ids = sentry.seed_issues(n, project="billing-api", first_seen=long_ago)
    tickets = jira.seed_tickets("PAY", n, labels=lambda k: ["sentry", f"sentry-{issue_ids[k]}"])
    closed = {k for k, kind in plan.items() if kind in SEEDED_CLOSED}
    for k in closed:  # their last sync saw them resolved and Done
        sentry.person_resolve(issue_ids[k])
        jira.person_transition(tickets[k][1], "Done")
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    engine = make_engine(database_url)
    table = Link.__table__  # type: ignore[attr-defined]
    for k in range(n):
        done = k in closed
        rows.append(
            {
                "sentry_issue_id": issue_ids[k],
                "live_sentry_issue_id": issue_ids[k],
                "sentry_project": "billing-api",
                "jira_issue_id": tickets[k][0],
                "jira_key": tickets[k][1],
                "state": LinkState.ACTIVE,
                "route": "billing",
                "team": "payments",
                "sentry_status": "resolved" if done else "unresolved",
                "sentry_substatus": "" if done else "new",
                "sentry_changed_at": now,
                "jira_status": "Done" if done else "To Do",
                "jira_status_category": "done" if done else "new",
                "jira_changed_at": now,
                "synced_at": now,
                "changed_by": "bench",
                "remote_link_done": True,
                "sentry_link_done": True,
                "reopens_since_comment": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        if len(rows) == 10_000 or k == n - 1:
            with engine.begin() as connection:
                connection.execute(table.insert(), rows)
            rows = []
    engine.dispose()
    for k, kind in plan.items():
        issue_id, key = issue_ids[k], tickets[k][1]
        if kind == "closed_in_jira":
            jira.person_transition(key, "Done")
        elif kind == "resolved_in_sentry":
            sentry.person_resolve(issue_id)
        elif kind == "regressed":
            sentry.regress(issue_id)
        elif kind == "reopened_in_jira":
            jira.person_transition(key, "To Do")
        elif kind == "deleted":
            jira.person_delete(key)
        else:
            jira.person_move(key, "OPS")
    return dict(Counter(plan.values()))


def measure(n: int, *, verbose: bool) -> Result:
    with workspace("syncer-bench-reconcile-") as workdir:
        broker = Broker().start()
        database = Database("sqlite", workdir).create()
        sentry = start_fake_sentry(org=ORG, token=SENTRY_TOKEN)
        jira = start_fake_jira(token=JIRA_TOKEN, email=JIRA_EMAIL)
        try:
            for fake in (sentry, jira):
                fake.webhooks.enabled = False
                fake.calls.keep_calls = False  # counts only: 100,000 call records are not free
            started = time.monotonic()
            by_kind = seed(n, sentry, jira, database.url)
            seed_seconds = time.monotonic() - started
            sentry.calls.reset()
            jira.calls.reset()
            policy = workdir / "policy.toml"
            policy.write_text(POLICY)
            env = syncer_env(
                database_url=database.url,
                broker_url=broker.url,
                sentry_url=sentry.url,
                jira_url=jira.url,
                extra={
                    "SYNCER_CONFIG": str(policy),
                    "SYNCER_LOG_LEVEL": "WARNING",
                    "SYNCER_JIRA_MAX_RPS": "0",
                    "SYNCER_SENTRY_MAX_RPS": "0",
                },
            )
            report, wall, rss = run_reconcile(env, workdir)
        finally:
            sentry.stop()
            jira.stop()
            database.drop()
            broker.stop()
    links = report["links"]
    result = Result(
        n=n,
        drifted=links["drifted"],
        repaired=links["repaired"],
        failed=links["failed"],
        unreachable=links.get("unreachable", 0),
        run_seconds=report["duration_seconds"],
        wall_seconds=wall,
        sentry_calls=sentry.calls.count(),
        jira_calls=jira.calls.count(),
        peak_rss_mib=rss,
        seed_seconds=seed_seconds,
        by_kind=by_kind,
        page_reads=sentry.calls.count("GET", r"/issues/$")
        + jira.calls.count("POST", r"/search")
        + jira.calls.count("GET", r"/serverInfo$"),
    )
    if verbose:
        print(
            f"  N={n:,}: seeded in {seed_seconds:.1f}s; drift {by_kind}; "
            f"report {report['drift_by_kind']}; client-side count {report['api_calls']}",
            file=sys.stderr,
        )
    return result


def run_reconcile(env: dict[str, str], workdir: Path) -> tuple[dict[str, Any], float, float]:
    """`syncer reconcile --json` as a child: (its report, wall seconds, peak RSS in MiB).

    The peak is the child's VmHWM, read while it runs: `ru_maxrss` would count the pages of this
    process (the fakes' N issues) that the child shared between fork and exec."""
    out, err = workdir / "reconcile.json", workdir / "reconcile.err"
    peak_kib = 0
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        started = time.monotonic()
        child = subprocess.Popen(
            syncer_command("reconcile", "--json"), env=env, stdout=stdout, stderr=stderr, cwd=REPO
        )
        while child.poll() is None:
            peak_kib = max(peak_kib, status_kib(child.pid, "VmHWM"))
            time.sleep(0.02)
        wall = time.monotonic() - started
    if child.returncode not in (0, 1):
        raise RuntimeError(f"syncer reconcile exited {child.returncode}:\n{err.read_text()[-3000:]}")
    report = json.loads(out.read_text())
    return report, wall, peak_kib / 1024


def table(results: list[Result]) -> str:
    header = (
        "N",
        "drifted",
        "repaired",
        "failed",
        "wall s",
        "run s",
        "Sentry calls",
        "Jira calls",
        "calls",
        "of which reads",
        "of which repairs",
        "target 2*ceil(N/100)+repairs",
        "within target",
        "peak RSS MiB",
    )
    rows = [header] + [
        (
            f"{r.n:,}",
            f"{r.drifted:,}",
            f"{r.repaired:,}",
            f"{r.failed:,}",
            f"{r.wall_seconds:.1f}",
            f"{r.run_seconds:.1f}",
            f"{r.sentry_calls:,}",
            f"{r.jira_calls:,}",
            f"{r.calls:,}",
            f"{r.page_reads:,}",
            f"{r.repair_calls:,}",
            f"{r.budget:,}",
            "yes" if r.within else "no",
            f"{r.peak_rss_mib:.0f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="N, comma-separated (%(default)s)")
    parser.add_argument("--smoke", action="store_true", help="one tiny N, to see that it runs")
    parser.add_argument("--quiet", action="store_true", help="only the table")
    args = parser.parse_args()
    sizes = [600] if args.smoke else [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    command = "bench/reconcile.py " + ("--smoke" if args.smoke else f"--sizes {args.sizes}")
    info = machine()
    print(f"# syncer reconcile benchmark: {command}", file=sys.stderr)
    results = []
    for n in sizes:
        results.append(measure(n, verbose=not args.quiet))
    print(table(results))
    print(
        f"\n{info['cores']} cores, Python {info['python']}, SQLite, fakes in the benchmark's process; "
        f"reconcile as a child process (`syncer reconcile --json`); drift in equal parts: "
        f"{', '.join(KINDS)}.\n"
        "Reads: one call to each side per page of 100 links, one more for a page holding a deleted ticket "
        "(Jira refuses the search), and two per run (Jira's serverInfo, the backfill's search).\n"
        "Repairs cost what the webhook path costs: a Sentry status 1 call; a Jira transition 1 (the "
        "POST; its transitions are cached per project, issue type and status, one GET on a miss; no "
        "read-back); a ticket deleted without its webhook 0 (Jira's 400 naming it is the signal; the link "
        "is flagged unreachable, not repaired); a moved ticket 0."
    )
    # Correctness, not speed: every drifted link found, every repair made.
    broken = [
        r for r in results
        if r.failed or r.drifted != sum(r.by_kind.values()) or r.repaired + r.unreachable != r.drifted
        or r.unreachable != r.by_kind.get("deleted", 0)
    ]
    for r in broken:
        print(
            f"error: N={r.n:,}: {r.drifted} drifted, {r.repaired} repaired, {r.failed} failed; seeded "
            f"{sum(r.by_kind.values())}",
            file=sys.stderr,
        )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
