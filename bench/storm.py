"""Storm: a release's burst of new issues filed under the client-side rate limits at their defaults.

A real `syncer web` and `syncer worker` against the fake Sentry and Jira (+50 ms per call), with
`SYNCER_JIRA_MAX_RPS=10` and `SYNCER_SENTRY_MAX_RPS=10` (the defaults), and the spacing of writes to
one Jira issue at its default. The storm arrives as signed `issue.created` webhooks, 8 at a time.
Reported: the time until the last ticket exists and until every ticket is linked both ways, calls
per ticket on each side, and the floor: each side's calls divided by its rate, the larger of the
two (the time those calls take at the rate, however well they are spread); and whether the last
ticket came within 15% of it. Gathered issues are filed in bulk creates (`syncer.sync.filing`), so
the floor is the remote links, one per ticket, which Jira cannot batch.

    python -m bench.storm              # 1,000 issues
    python -m bench.storm --smoke      # 60 issues, no latency
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench import e2e, stack

WITHIN = 0.15  # the target: the last ticket within 15% of the floor


@dataclass(frozen=True)
class Settings:
    issues: int = 1000
    jira_max_rps: float = 10.0
    sentry_max_rps: float = 10.0
    latency: float = 0.05
    database: str = "sqlite"
    timeout: float = 1800.0


SMOKE = Settings(issues=60, latency=0.0, timeout=300)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(settings: Settings, workdir: Any, log: Callable[[str], None]) -> dict[str, Any]:
    n = settings.issues
    env = {"SYNCER_JIRA_MAX_RPS": f"{settings.jira_max_rps:g}",
           "SYNCER_SENTRY_MAX_RPS": f"{settings.sentry_max_rps:g}",
           "SYNCER_JIRA_ISSUE_WRITE_INTERVAL_SECONDS": "0.5"}  # the default, which e2e turns off
    with e2e.running(e2e.Settings(issues=n, latency=settings.latency, database=settings.database,
                                  extra_env=env), workdir) as s:
        # One ticket first: the worker has connected and cached the assignees (one-off calls).
        e2e.deliver(s, s.file_issues(1), 1)
        e2e.wait_until(s, lambda c: c["sentry_finished"] >= 1, settings.timeout)
        requests = s.file_issues(n)
        s.sentry.latency = settings.latency
        s.jira.latency = settings.latency
        s.sentry.calls.reset()
        s.jira.calls.reset()
        load_before = _load()
        t0 = time.perf_counter()
        sender = threading.Thread(target=e2e.deliver, args=(s, requests, 8), daemon=True)
        sender.start()
        e2e.wait_until(s, lambda c: c["active_links"] >= n + 1, settings.timeout)
        t_tickets = time.perf_counter() - t0
        log(f"  storm: the last of {n} tickets after {t_tickets:.1f}s")
        counts = e2e.wait_until(s, lambda c: c["sentry_finished"] >= n + 1, settings.timeout)
        t_linked = time.perf_counter() - t0
        sender.join(settings.timeout)
        load_after = _load()
        jira_calls, sentry_calls = s.jira.calls.count(), s.sentry.calls.count()
        bulk = s.jira.calls.count("POST", r"/issue/bulk$")
        single = s.jira.calls.count("POST", r"^/rest/api/2/issue/?$")
        searches = s.jira.calls.count("POST", r"/search")
        tickets = s.jira.issues()
    floor = max(jira_calls / settings.jira_max_rps, sentry_calls / settings.sentry_max_rps)
    return {
        "issues": n,
        "jira_max_rps": settings.jira_max_rps,
        "sentry_max_rps": settings.sentry_max_rps,
        "last_ticket_s": t_tickets,
        "all_linked_s": t_linked,
        "jira_calls_per_ticket": jira_calls / n,
        "sentry_calls_per_ticket": sentry_calls / n,
        "jira_bulk_creates": bulk,
        "jira_single_creates": single,
        "jira_searches": searches,
        "floor_s": floor,
        "last_ticket_over_floor": t_tickets / floor - 1,
        "all_linked_over_floor": t_linked / floor - 1,
        "within_target": t_tickets <= floor * (1 + WITHIN),
        "tickets": len(tickets),
        "dead": counts["dead"],
        "load_before": load_before,
        "load_after": load_after,
    }


def run(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    with stack.workspace("syncer-bench-storm-") as workdir:
        result = measure(settings, workdir, log)
    result["complete"] = result["tickets"] == settings.issues + 1 and result["dead"] == 0
    return result


def summary(out: dict[str, Any]) -> str:
    return (f"{out['issues']:,} new issues at SYNCER_JIRA_MAX_RPS={out['jira_max_rps']:g}, "
            f"SYNCER_SENTRY_MAX_RPS={out['sentry_max_rps']:g}: last ticket {out['last_ticket_s']:.1f}s, "
            f"all linked {out['all_linked_s']:.1f}s; floor {out['floor_s']:.1f}s "
            f"(last ticket {out['last_ticket_over_floor']:+.0%}, "
            f"all linked {out['all_linked_over_floor']:+.0%}); "
            f"Jira {out['jira_calls_per_ticket']:.2f} calls/ticket ({out['jira_bulk_creates']} bulk creates, "
            f"{out['jira_single_creates']} single, {out['jira_searches']} searches), "
            f"Sentry {out['sentry_calls_per_ticket']:.2f}; load {out['load_before']} -> {out['load_after']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--issues", type=int, default=Settings.issues)
    parser.add_argument("--jira-rps", type=float, default=Settings.jira_max_rps)
    parser.add_argument("--database", default=Settings.database)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else Settings(issues=args.issues, jira_max_rps=args.jira_rps,
                                                 database=args.database)
    out = run(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(out, indent=2) if args.json else summary(out))
    return 0 if out["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
