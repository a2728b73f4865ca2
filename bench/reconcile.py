"""Benchmark: one reconciliation of N linked pairs, some changed since the last run, against the local fakes.

    .venv/bin/python bench/reconcile.py                       # the full design, N = 1,000, 10,000, 100,000
    .venv/bin/python bench/reconcile.py --sizes 10000,100000,1000000 --changed 0.001 \\
        --mode incremental,full --full-up-to 100000           # issue 15's table
    .venv/bin/python bench/reconcile.py --smoke               # a tiny N: that it runs (the tests do this)
    .venv/bin/python bench/reconcile.py --database postgres   # PostgreSQL at SYNCER_BENCH_POSTGRES_URL

(`python -m bench.reconcile` works as well; `python -m bench.run` runs it among the others.)

For each N and mode, from scratch: a private Redis, a migrated database, and the fake Sentry and Jira
in this process with their webhooks off. N links are inserted in one transaction (Core executemany),
in sync and last synced days ago (outside every window, as most links are). Then a fraction of them
(`--changed`) change the ways lost webhooks leave them, in equal parts: closed in Jira, reopened in
Jira, resolved in Sentry, regressed in Sentry, ticket deleted, ticket moved to another of the
policy's projects; spread one to a page of 100.

`full` (`syncer reconcile --full`, the design before issue 15) reads every link: the fakes hold all N
pairs. `incremental` (`syncer reconcile`, the default) reads what changed since the last run (stored
as one interval ago) and the rolling full pass's next slice (stored as half way through its cycle):
the fakes hold only the pairs it can ask about, the changed ones and the slice's (see `seed` for why
that is faithful), which is what lets 1,000,000 links fit in a benchmark.

The reconciliation is the real command as a child process: its wall time and peak RSS are its own
(the fakes live here, not there). API calls are counted by the fakes' call logs. Targets: full,
calls <= 2 x ceil(N/100) + repairs + 2; incremental, calls <= 2 x ceil(changed/100) + 2 x ceil(slice/100)
+ repairs + 2 (the 2: serverInfo and the backfill, per run), 1,000,000 links in under 2 minutes;
peak memory flat in N.

The client-side rate limits are turned off (the fakes have none): with Jira Cloud's budget of about
10 calls a second, the calls, not this code, set a real deployment's pace.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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

from sqlalchemy import text

from syncer.fakes.jira import FakeJira, start_fake_jira
from syncer.fakes.sentry import FakeSentry, start_fake_sentry
from syncer.store.engine import make_engine
from syncer.store.schema import Link, LinkState, ReconcileCursor

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
# What the change reads see: Jira's search finds tickets updated in the window (a transition, a move
# to another of the policy's projects), Sentry's finds issues with new events (a regression). A ticket
# deleted or an issue resolved in Sentry changes nothing either search can find: the full pass's.
SEEN_BY_CHANGE_READS = ("closed_in_jira", "regressed", "reopened_in_jira", "moved")
MODES = ("incremental", "full")
PAGE = 100
PER_RUN_READS = 2  # Jira's serverInfo and the backfill's Sentry search, whatever N
# The policy's defaults (`reconcile.full_pass_hours`, `reconcile.interval_minutes`): the last run was
# one interval ago, and the slice a run reads is links / (runs in a full pass).
FULL_PASS_HOURS = 24
INTERVAL = timedelta(minutes=10)
RUNS_PER_PASS = FULL_PASS_HOURS * 60 // int(INTERVAL.total_seconds() // 60)
LONG_AGO = timedelta(days=3)  # when the pairs were last in sync: outside every window
# Synthetic ids of pairs the fakes do not hold (incremental mode): far above any id the fakes give.
UNSEEN_ID = 10**9


@dataclass
class Result:
    mode: str
    n: int
    database: str
    changed: int  # links seeded as changed since the last run
    expected: int  # of those, the ones this run can find (seen by a change read, or in its slice)
    expected_unreachable: int  # of those, the deleted tickets
    changed_read: int  # links the run read for the changes (the report's `changed_links`)
    changed_by_side: tuple[int, int, int]  # of those: found by Jira's search, by Sentry's, by our rows
    slice_links: int
    drifted: int
    repaired: int
    failed: int
    unreachable: int  # deleted without a webhook: flagged and kept, for a person to act on
    run_seconds: float
    wall_seconds: float
    sentry_calls: int
    jira_calls: int
    page_reads: int  # Sentry's issue lists, Jira's searches (links, changes, backfill), serverInfo
    peak_rss_mib: float
    seed_seconds: float
    bench_rss_mib: float  # this process's peak (the fakes and the seeding), not the run's
    by_kind: dict[str, int]

    @property
    def calls(self) -> int:
        return self.sentry_calls + self.jira_calls

    @property
    def repair_calls(self) -> int:
        return self.calls - self.page_reads

    @property
    def budget(self) -> int:
        """Full: a page of links costs one read of each side. Incremental: the changes cost one read of
        each side per 100 (the change read, then the other side of each page), the slice one of each
        per page. Both: plus the repairs, one refused search for each page holding a deleted ticket, and
        the run's own two reads."""
        read = self.n if self.mode == "full" else self.slice_links
        # Each side's changes: its change read, then a read of the other side, 100 at a time.
        changes = sum(2 * math.ceil(count / PAGE) for count in self.changed_by_side)
        return changes + 2 * math.ceil(read / PAGE) + self.repaired + self.unreachable + PER_RUN_READS

    @property
    def budget_formula(self) -> str:
        if self.mode == "full":
            return "2*ceil(N/100)+repairs+2"
        return "2*ceil(changed/100) per side+2*ceil(slice/100)+repairs+2"

    @property
    def within(self) -> bool:
        return self.calls <= self.budget


def changed_positions(n: int, fraction: float) -> dict[int, str]:
    """Which links changed since the last run, and how: spread one to a page, the kinds in turn."""
    count = max(1, round(n * fraction))
    step = n / count
    return {int(k * step + step / 2): KINDS[k % len(KINDS)] for k in range(count)}


def slice_range(n: int) -> range:
    """The positions (link id - 1) of the slice the incremental run reads: mid-table, where the pass
    stands half way through its cycle."""
    want = math.ceil(n / RUNS_PER_PASS)
    start = n // 2
    return range(start, min(n, start + want))


def seed(
    n: int, mode: str, fraction: float, sentry: FakeSentry, jira: FakeJira, database: Database
) -> tuple[dict[str, int], dict[str, int]]:
    """N pairs in sync in the database, last synced days ago; in the fakes, every pair (full) or only
    the pairs the incremental run can ask about (the changed ones and its slice). Then the changes.
    Returns the changes by kind, all and those this run can find.

    Seeding only what the run can see is faithful: the run reads Jira and Sentry by the tickets' and
    issues' ids (its slice, the changes' other side) and by the change searches, never by listing
    everything. Should it ask about a pair the fakes lack, Jira would refuse that ticket as deleted and
    the run would report more unreachable links than were deleted: `main` checks that it does not."""
    plan = changed_positions(n, fraction)
    in_slice = slice_range(n) if mode == "incremental" else range(0)
    seen = range(n) if mode == "full" else sorted(set(plan) | set(in_slice))
    # The fakes' own clocks say when: days ago for the pairs in sync, so no change search finds them.
    jira.clock_skew = -LONG_AGO.total_seconds()
    long_ago = datetime.now(UTC) - LONG_AGO
    issue_ids = sentry.seed_issues(len(seen), project="billing-api", first_seen=long_ago, last_seen=long_ago)
    tickets = jira.seed_tickets("PAY", len(seen), labels=lambda k: ["sentry", f"sentry-{issue_ids[k]}"])
    pair = {k: (issue_ids[i], *tickets[i]) for i, k in enumerate(seen)}
    closed = {k for k, kind in plan.items() if kind in SEEDED_CLOSED}
    for k in closed:  # their last sync saw them resolved and Done
        sentry.person_resolve(pair[k][0])
        jira.person_transition(pair[k][2], "Done")
    jira.clock_skew = 0
    insert_links(n, pair, closed, database, long_ago)
    if mode == "incremental":
        write_cursor(database.url, after_link_id=in_slice.start, now=datetime.now(UTC))
    for k, kind in plan.items():
        issue_id, key = pair[k][0], pair[k][2]
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
    findable = Counter(
        kind for k, kind in plan.items() if mode == "full" or kind in SEEN_BY_CHANGE_READS or k in in_slice
    )
    return dict(Counter(plan.values())), dict(findable)


def insert_links(
    n: int, pair: dict[int, tuple[str, str, str]], closed: set[int], database: Database, synced: datetime
) -> None:
    """N links, ids 1..N, in one transaction of multi-row INSERTs (SQLAlchemy Core's executemany),
    built a chunk at a time so the bench's own memory does not grow with N."""
    engine = make_engine(database.url)
    table = Link.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        for start in range(0, n, 20_000):
            chunk = range(start, min(n, start + 20_000))
            rows = [link_row(k, pair.get(k), k in closed, synced) for k in chunk]
            connection.execute(table.insert(), rows)
        if database.kind == "postgres":  # ids given, not drawn: the sequence must follow
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), {n})"))
    if database.kind == "postgres":
        # What autovacuum does within a minute or so of a bulk load; before it, PostgreSQL plans a
        # slice's keyset page through `ix_links_state` and reads every link for each page.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"ANALYZE {table.name}"))
    engine.dispose()


def link_row(k: int, seen: tuple[str, str, str] | None, done: bool, synced: datetime) -> dict[str, Any]:
    issue_id, ticket_id, key = seen or (str(UNSEEN_ID + k), str(UNSEEN_ID + k), f"PAY-{UNSEEN_ID + k}")
    return {
        "id": k + 1,
        "sentry_issue_id": issue_id,
        "live_sentry_issue_id": issue_id,
        "sentry_project": "billing-api",
        "jira_issue_id": ticket_id,
        "jira_key": key,
        "state": LinkState.ACTIVE,
        "route": "billing",
        "team": "payments",
        "sentry_status": "resolved" if done else "unresolved",
        "sentry_substatus": "" if done else "new",
        "sentry_changed_at": synced,
        "jira_status": "Done" if done else "To Do",
        "jira_status_category": "done" if done else "new",
        "jira_changed_at": synced,
        "synced_at": synced,
        "changed_by": "bench",
        "remote_link_done": True,
        "sentry_link_done": True,
        "reopens_since_comment": 0,
        "created_at": synced,
        "updated_at": synced,
    }


def write_cursor(database_url: str, *, after_link_id: int, now: datetime) -> None:
    """The last run: one interval ago, its changes read, the pass half way through its cycle."""
    engine = make_engine(database_url)
    table = ReconcileCursor.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(
            table.insert().values(
                id=1, after_link_id=after_link_id,
                cycle_started_at=now - timedelta(hours=FULL_PASS_HOURS / 2),
                changes_read_at=now - INTERVAL, updated_at=now,
            )
        )
    engine.dispose()


def measure(n: int, mode: str, fraction: float, database_kind: str, *, verbose: bool) -> Result:
    with workspace("syncer-bench-reconcile-") as workdir:
        broker = Broker().start()
        database = Database(database_kind, workdir).create()
        sentry = start_fake_sentry(org=ORG, token=SENTRY_TOKEN)
        jira = start_fake_jira(token=JIRA_TOKEN, email=JIRA_EMAIL)
        try:
            for fake in (sentry, jira):
                fake.webhooks.enabled = False
                fake.calls.keep_calls = False  # counts only: 100,000 call records are not free
            started = time.monotonic()
            by_kind, findable = seed(n, mode, fraction, sentry, jira, database)
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
            args = ("--full",) if mode == "full" else ()
            report, wall, rss = run_reconcile(env, workdir, args)
        finally:
            sentry.stop()
            jira.stop()
            database.drop()
            broker.stop()
    links, read = report["links"], report.get("read", {})
    result = Result(
        mode=mode,
        n=n,
        database=database_kind,
        changed=sum(by_kind.values()),
        expected=sum(findable.values()),
        expected_unreachable=findable.get("deleted", 0),
        changed_read=read.get("changed_links", 0),
        changed_by_side=(
            read.get("changed_in_jira", 0), read.get("changed_in_sentry", 0), read.get("changed_here", 0)
        ),
        slice_links=read.get("slice_links", 0),
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
        bench_rss_mib=status_kib(os.getpid(), "VmHWM") / 1024,
        by_kind=by_kind,
        page_reads=sentry.calls.count("GET", r"/issues/$")
        + jira.calls.count("POST", r"/search")
        + jira.calls.count("GET", r"/serverInfo$"),
    )
    if verbose:
        print(
            f"  {mode} N={n:,}: seeded in {seed_seconds:.1f}s; changed {by_kind}; report "
            f"{report['drift_by_kind']}; read {read}; client-side count {report['api_calls']}"
            + (f"; errors {report['errors']}" if report.get("errors") else ""),
            file=sys.stderr,
        )
    return result


def run_reconcile(
    env: dict[str, str], workdir: Path, args: tuple[str, ...] = ()
) -> tuple[dict[str, Any], float, float]:
    """`syncer reconcile --json` as a child: (its report, wall seconds, peak RSS in MiB).

    The peak is the child's VmHWM, read while it runs: `ru_maxrss` would count the pages of this
    process (the fakes' N issues) that the child shared between fork and exec."""
    out, err = workdir / "reconcile.json", workdir / "reconcile.err"
    peak_kib = 0
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        started = time.monotonic()
        child = subprocess.Popen(
            syncer_command("reconcile", "--json", *args), env=env, stdout=stdout, stderr=stderr, cwd=REPO
        )
        while child.poll() is None:
            peak_kib = max(peak_kib, status_kib(child.pid, "VmHWM"))
            time.sleep(0.02)
        wall = time.monotonic() - started
    if child.returncode not in (0, 1):
        raise RuntimeError(f"syncer reconcile exited {child.returncode}:\n{err.read_text()[-3000:]}")
    report = json.loads(out.read_text())
    return report, wall, peak_kib / 1024


def markdown(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.rjust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    header = (
        "mode", "N", "changed", "findable", "drifted", "repaired", "unreachable", "failed", "wall s", "run s",
        "changed read", "slice links", "Sentry calls", "Jira calls", "calls", "of which reads",
        "of which repairs", "target", "target calls", "within target", "peak RSS MiB", "seed s",
        "bench RSS MiB",
    )
    return markdown(header, [
        (
            r.mode, f"{r.n:,}", f"{r.changed:,}", f"{r.expected:,}", f"{r.drifted:,}", f"{r.repaired:,}",
            f"{r.unreachable:,}", f"{r.failed:,}", f"{r.wall_seconds:.1f}", f"{r.run_seconds:.1f}",
            f"{r.changed_read:,}", f"{r.slice_links:,}", f"{r.sentry_calls:,}", f"{r.jira_calls:,}",
            f"{r.calls:,}", f"{r.page_reads:,}", f"{r.repair_calls:,}", r.budget_formula, f"{r.budget:,}",
            "yes" if r.within else "no", f"{r.peak_rss_mib:.0f}", f"{r.seed_seconds:.1f}",
            f"{r.bench_rss_mib:.0f}",
        )
        for r in results
    ])


def side_by_side(results: list[Result], fraction: float) -> str:
    """Calls per run by N, one column per mode. A size the full design was not run at is computed from
    the formula its reads follow, the repairs scaled from the largest measured size, and says so."""
    sizes = sorted({r.n for r in results})
    by = {(r.mode, r.n): r for r in results}
    modes = [m for m in MODES if any(r.mode == m for r in results)]
    rows = []
    for n in sizes:
        cells = [f"{n:,}", f"{max(1, round(n * fraction)):,}"]
        for mode in modes:
            r = by.get((mode, n))
            cells.append(f"{r.calls:,} ({r.wall_seconds:.1f} s)" if r else computed(results, mode, n))
        rows.append(tuple(cells))
    return markdown(("N", "changed", *(f"{m}: calls (wall)" for m in modes)), rows)


def computed(results: list[Result], mode: str, n: int) -> str:
    measured = [r for r in results if r.mode == mode]
    if mode != "full" or not measured:
        return "not run"
    base = max(measured, key=lambda r: r.n)
    scale = n / base.n
    fixed = base.page_reads - 2 * math.ceil(base.n / PAGE) - base.unreachable
    calls = 2 * math.ceil(n / PAGE) + fixed + round((base.repair_calls + base.unreachable) * scale)
    return f"{calls:,} (computed)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="N, comma-separated (%(default)s)")
    parser.add_argument("--changed", type=float, default=0.01,
                        help="the fraction of links changed since the last run (%(default)s)")
    parser.add_argument("--mode", default="full",
                        help="incremental, full or both, comma-separated (%(default)s)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--full-up-to", type=int, default=None, metavar="N",
                        help="run the full design only up to N links; larger sizes are computed")
    parser.add_argument("--smoke", action="store_true", help="one tiny N, to see that it runs")
    parser.add_argument("--quiet", action="store_true", help="only the table")
    args = parser.parse_args()
    sizes = [600] if args.smoke else [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    command = "bench/reconcile.py " + " ".join(sys.argv[1:])
    info = machine()
    print(f"# syncer reconcile benchmark: {command}; load {info['load1']} / {info['load5']}", file=sys.stderr)
    results = []
    for n in sizes:
        for mode in modes:
            if mode == "full" and args.full_up_to is not None and n > args.full_up_to:
                continue
            results.append(measure(n, mode, args.changed, args.database, verbose=not args.quiet))
    print(table(results))
    if len(modes) > 1 or len(sizes) > 1:
        print("\nCalls per run:\n")
        print(side_by_side(results, args.changed))
    after = machine()
    print(
        f"\n{info['cores']} cores, Python {info['python']}, {args.database}, "
        "fakes in the benchmark's process; "
        f"reconcile as a child process (`syncer reconcile --json`, `--full` for the full design); "
        f"{args.changed:.2%} of links changed since the last run, in equal parts: {', '.join(KINDS)}; "
        f"load {info['load1']} before, {after['load1']} after.\n"
        "Full: one call to each side per page of 100 links, one more for a page holding a deleted ticket "
        "(Jira refuses the search), and two per run (Jira's serverInfo, the backfill's search).\n"
        "Incremental: the change reads (Jira's search by `updated`, Sentry's by events), one read of the "
        "other side per page of changed links, both sides per page of the slice (links / "
        f"{RUNS_PER_PASS} runs a pass); a ticket deleted or an issue resolved without its webhook is found "
        "by the slice that holds it, so `findable` counts those in this run's slice only.\n"
        "Repairs cost what the webhook path costs: a Sentry status 1 call; a Jira transition 1 (the "
        "POST; its transitions are cached per project, issue type and status, one GET on a miss; no "
        "read-back); a ticket deleted without its webhook 0 (Jira's 400 naming it is the signal; the link "
        "is flagged unreachable, not repaired); a moved ticket 0."
    )
    # Correctness, not speed: every findable change found, every repair made.
    broken = [
        r for r in results
        if r.failed or r.drifted != r.expected or r.repaired + r.unreachable != r.drifted
        or r.unreachable != r.expected_unreachable
    ]
    for r in broken:
        print(
            f"error: {r.mode} N={r.n:,}: {r.drifted} drifted, {r.repaired} repaired, {r.unreachable} "
            f"unreachable, {r.failed} failed; expected {r.expected} drifted, "
            f"{r.expected_unreachable} unreachable",
            file=sys.stderr,
        )
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
