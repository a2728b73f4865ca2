"""Soak: thousands of new issues through a long Jira outage and a throttled drain, then one reconcile.

The stack of `bench.e2e` (a real `syncer web` and `syncer worker`, the fakes in this process, signed
`issue.created` webhooks). Every Jira call answers 503 from before the first issue until the outage
ends; the issues arrive during its first minute. Then Jira is back and the worker drains the backlog
through its own rate limit (`SYNCER_JIRA_MAX_RPS`); once every delivery is finished, one
`syncer reconcile --json` runs, and its report is read.

Reported: issues, tickets, issues with exactly one linked ticket (the ticket, its active link, and
both back-links), duplicates (tickets per issue beyond one), dead letters, the deliveries' attempts,
the time from Jira's return until the last ticket, the reconcile's exit code and what it backfilled,
and the machine's load at start and end. Exit 1 when any issue lacks exactly one linked ticket or
anything is duplicated.

    python -m bench.soak                                   # 5,000 issues, 10 min outage, 10 calls/s
    python -m bench.soak --issues 5000 --outage-seconds 600 --jira-rps 50
    python -m bench.soak --smoke                           # 30 issues, 5 s outage: does it still work?
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import e2e, stack
from bench.reconcile import run_reconcile

JIRA_ANY = r"^/rest/api/"


@dataclass(frozen=True)
class Soak:
    issues: int = 5000
    outage_seconds: float = 600.0
    intake_seconds: float = 60.0  # the issues arrive spread over the outage's first minute
    jira_rps: float = 10.0  # production's default budget
    database: str = "sqlite"
    # How long the drain may take after Jira is back: the longest backoff (SYNCER_RETRY_BACKOFF_CAP_SECONDS,
    # 600 s by default) plus the calls the rate limit spaces out, with room to spare.
    drain_timeout: float | None = None

    def drain_deadline(self) -> float:
        if self.drain_timeout is not None:
            return self.drain_timeout
        calls = 4 * self.issues  # search, create, remote link, and a retry's search
        return 900.0 + (calls / self.jira_rps if self.jira_rps else 0.0)


SMOKE = Soak(issues=30, outage_seconds=5.0, intake_seconds=1.0, jira_rps=200.0, drain_timeout=180.0)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def send_during(s: e2e.Stack, n: int, seconds: float, log: Callable[[str], None]) -> None:
    """`n` new issues as signed webhooks, in even batches spread over `seconds`."""
    batches = max(1, min(n, int(seconds // 5) or 1))
    started = time.monotonic()
    sent = 0
    for b in range(batches):
        size = n * (b + 1) // batches - sent
        e2e.deliver(s, s.file_issues(size), s.settings.sender_concurrency)
        sent += size
        slot = started + seconds * (b + 1) / batches
        time.sleep(max(0.0, slot - time.monotonic()))
    log(f"  soak: {sent} issues delivered in {time.monotonic() - started:.0f}s, Jira still down")


def hold_outage(s: e2e.Stack, until: float, log: Callable[[str], None]) -> dict[str, int]:
    """Keep Jira down until `until` (monotonic), watching the worker and the inbox as time passes."""
    next_note = time.monotonic()
    counts = s.counts()
    while time.monotonic() < until:
        assert s.worker is not None
        s.worker.check_alive()
        counts = s.counts()
        if time.monotonic() >= next_note:
            log(f"  soak: Jira down, {until - time.monotonic():.0f}s to go: {counts}")
            next_note += 60
        time.sleep(min(1.0, max(0.0, until - time.monotonic())))
    return counts


def linked_issues(s: e2e.Stack) -> tuple[dict[str, str], int]:
    """Active links (Sentry issue -> Jira key) and the number of unfinished deliveries of any source."""
    from sqlalchemy import text

    from syncer.store.engine import make_engine

    engine = make_engine(s.database.url, pool_size=1)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT sentry_issue_id, jira_key FROM links WHERE state = 'active'")).all()
        return {str(row[0]): str(row[1]) for row in rows}, s.database.count(
            "SELECT count(*) FROM deliveries WHERE state NOT IN ('done', 'ignored', 'dead')")
    finally:
        engine.dispose()


def tally(s: e2e.Stack) -> dict[str, Any]:
    """Every filed issue against the fakes and the links: exactly one ticket, linked both ways?"""
    links, unfinished = linked_issues(s)
    tickets = s.jira.issues()
    by_issue: dict[str, list[dict[str, Any]]] = {}
    for ticket in tickets:
        for label in ticket["labels"]:
            if label.startswith("sentry-"):
                by_issue.setdefault(label.removeprefix("sentry-"), []).append(ticket)
    filed = [str(issue["id"]) for issue in s.sentry.issues()]
    exactly_one = missing_back_links = 0
    for issue_id in filed:
        mine = by_issue.get(issue_id, [])
        if len(mine) != 1 or links.get(issue_id) != mine[0]["key"]:
            continue
        if mine[0]["remote_links"] >= 1 and s.sentry.external_issues(issue_id):
            exactly_one += 1
        else:
            missing_back_links += 1
    attempts = s.database.counts({
        "sentry_deliveries": "SELECT count(*) FROM deliveries WHERE source = 'sentry'",
        "attempts_max": "SELECT coalesce(max(attempts), 0) FROM deliveries WHERE source = 'sentry'",
        "attempts_sum": "SELECT coalesce(sum(attempts), 0) FROM deliveries WHERE source = 'sentry'",
        "dead": "SELECT count(*) FROM deliveries WHERE state = 'dead'",
        "dead_letters": "SELECT count(*) FROM dead_letters",
    })
    return {
        "issues": len(filed),
        "tickets": len(tickets),
        "exactly_one_linked": exactly_one,
        "missing_back_links": missing_back_links,
        "without_ticket": sum(1 for issue_id in filed if issue_id not in by_issue),
        "duplicates": sum(len(mine) - 1 for mine in by_issue.values()),
        "dead_deliveries": attempts["dead"],
        "dead_letters": attempts["dead_letters"],
        "attempts_max": attempts["attempts_max"],
        "attempts_mean": round(attempts["attempts_sum"] / max(1, attempts["sentry_deliveries"]), 2),
        "unfinished_deliveries": unfinished,
        "last_ticket_at": max((_moment(t["created"]) for t in tickets), default=None),
    }


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def wait_idle(s: e2e.Stack, timeout: float) -> None:
    """Until no delivery of any source is unfinished (Jira's webhooks about the tickets included)."""
    stack.wait_for(lambda: linked_issues(s)[1] == 0 or s.worker.check_alive(),  # type: ignore[union-attr]
                   timeout, "every delivery to finish", interval=0.5)


def run(soak: Soak, log: Callable[[str], None] = _log) -> dict[str, Any]:
    n = soak.issues
    settings = e2e.Settings(issues=n, latency=0.0, database=soak.database,
                            extra_env={"SYNCER_JIRA_MAX_RPS": str(soak.jira_rps)})
    load_start = stack.machine()
    started_at = datetime.now(UTC)
    with stack.workspace("syncer-bench-soak-") as workdir, e2e.running(settings, workdir) as s:
        from syncer.fakes.base import Fault

        down = Fault("*", JIRA_ANY, status=503, times=None)
        s.jira.faults.append(down)
        t_down = time.monotonic()
        log(f"  soak: Jira answers 503 to everything; {n} issues over {soak.intake_seconds:.0f}s")
        send_during(s, n, min(soak.intake_seconds, soak.outage_seconds), log)
        during = hold_outage(s, t_down + soak.outage_seconds, log)
        tickets_during = len(s.jira.issues())
        s.jira.faults.remove(down)
        back_at = datetime.now(UTC)
        t_back = time.monotonic()
        log(f"  soak: Jira is back after {t_back - t_down:.0f}s; draining at {soak.jira_rps:g} calls/s")
        e2e.wait_until(s, lambda c: c["active_links"] >= n and c["sentry_finished"] >= n,
                       soak.drain_deadline())
        drained_s = time.monotonic() - t_back
        wait_idle(s, 300)
        before = tally(s)
        log(f"  soak: drained in {drained_s:.0f}s; {before['exactly_one_linked']}/{n} linked, "
            f"dead {before['dead_deliveries']}; reconciling")
        env = stack.syncer_env(database_url=s.database.url, broker_url=s.broker.url,
                               sentry_url=s.sentry.url, jira_url=s.jira.url,
                               extra={**e2e.UNTHROTTLED, **settings.extra_env})
        report, reconcile_s, _ = run_reconcile(env, workdir)
        wait_idle(s, 300)  # what the reconcile handed to the worker, if anything
        after = tally(s)
    load_end = stack.machine()
    last = after["last_ticket_at"]
    backfill = report.get("backfill", {})
    return {
        "settings": {**soak.__dict__, "drain_timeout": soak.drain_deadline()},
        "started_at": started_at.isoformat(timespec="seconds"),
        "during_outage": {"tickets": tickets_during, "dead_deliveries": during.get("dead", 0)},
        **{k: v for k, v in after.items() if k != "last_ticket_at"},
        "before_reconcile": {k: v for k, v in before.items() if k != "last_ticket_at"},
        "last_ticket_after_return_s": round((last - back_at).total_seconds(), 1) if last else None,
        "drained_after_return_s": round(drained_s, 1),
        # `syncer reconcile` exits 0 exactly when its report is ok (1 otherwise; run_reconcile raises
        # on anything else).
        "reconcile": {"exit_code": 0 if report.get("ok") else 1, "seconds": round(reconcile_s, 1),
                      "backfilled": backfill.get("backfilled"), "backfill_failed": backfill.get("failed"),
                      "drift_by_kind": report.get("drift_by_kind"), "links": report.get("links")},
        "load_start": load_start,
        "load_end": load_end,
    }


def passed(result: dict[str, Any]) -> bool:
    return bool(result["exactly_one_linked"] == result["issues"] and result["duplicates"] == 0)


def summary(result: dict[str, Any]) -> str:
    r, rec = result, result["reconcile"]
    return (f"{r['issues']} issues, {r['tickets']} tickets, {r['exactly_one_linked']} with exactly one "
            f"linked ticket, duplicates {r['duplicates']}, dead letters {r['dead_letters']}, attempts "
            f"max {r['attempts_max']} mean {r['attempts_mean']}; last ticket "
            f"{r['last_ticket_after_return_s']}s after Jira's return; reconcile exit {rec['exit_code']}, "
            f"backfilled {rec['backfilled']}; load {r['load_start']['load1']} -> {r['load_end']['load1']} "
            f"on {r['load_start']['cores']} cores")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--issues", type=int, default=Soak.issues)
    parser.add_argument("--outage-seconds", type=float, default=Soak.outage_seconds)
    parser.add_argument("--intake-seconds", type=float, default=Soak.intake_seconds)
    parser.add_argument("--jira-rps", type=float, default=Soak.jira_rps, help="SYNCER_JIRA_MAX_RPS")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default=Soak.database)
    parser.add_argument("--drain-timeout", type=float, default=None)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    soak = SMOKE if args.smoke else Soak(
        issues=args.issues, outage_seconds=args.outage_seconds, intake_seconds=args.intake_seconds,
        jira_rps=args.jira_rps, database=args.database, drain_timeout=args.drain_timeout)
    result = run(soak)
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)
    print(summary(result))
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
