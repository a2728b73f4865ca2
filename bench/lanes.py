"""Lanes: how long a status change takes while a release storm of new issues is being filed.

A real `syncer web` and `syncer worker` (defaults, but Jira's client-side limit at
`SYNCER_JIRA_MAX_RPS=10`) against the fake Sentry and Jira (+50 ms per call). A few issues get their
tickets first; then a storm of new issues arrives as signed `issue.created` webhooks, and while its
tickets are being made each of those first issues is resolved in Sentry, one after another as the
storm passes fractions of its way. Reported: for each resolve, the time from its webhook's 202 until
the fake Jira's ticket is Done (p50 / p99 / max), how many of the storm's tickets were still to be
made at that moment, and how long the storm took.

    python -m bench.lanes               # 1,000 issues, 6 resolves
    python -m bench.lanes --smoke       # 40 issues, 3 resolves
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import e2e, stack

TARGET_SECONDS = 10.0


@dataclass(frozen=True)
class Settings:
    issues: int = 1000
    status_changes: int = 6
    jira_max_rps: float = 10.0
    latency: float = 0.05
    database: str = "sqlite"
    timeout: float = 1800.0
    extra_env: dict[str, str] = field(default_factory=dict)


SMOKE = Settings(issues=40, status_changes=3, latency=0.0, timeout=300)


def _post_signed(web_url: str, resource: str, payload: dict[str, Any]) -> None:
    from syncer.fakes.base import compact_json, hmac_sha256_hex

    body = compact_json(payload)
    answer = httpx.post(f"{web_url}/webhooks/sentry", content=body, timeout=10, headers={
        "Content-Type": "application/json", "Sentry-Hook-Resource": resource,
        "Sentry-Hook-Timestamp": str(int(time.time())),
        "Sentry-Hook-Signature": hmac_sha256_hex(stack.SENTRY_SECRET, body),
    })
    if answer.status_code != 202:
        raise RuntimeError(f"intake answered {answer.status_code}: {answer.text[:200]}")


def _ticket_of(s: e2e.Stack, issue_id: str) -> str:
    """The key of the ticket the fake Jira holds for a Sentry issue (its `sentry-<id>` label)."""
    found = [t["key"] for t in s.jira.issues() if f"sentry-{issue_id}" in t["labels"]]
    return str(found[0]) if len(found) == 1 else ""


def _status(s: e2e.Stack, key: str) -> str:
    found = s.jira.issue(key)
    return str(found["status"]) if found else ""


def measure(settings: Settings, workdir: Any, log: Callable[[str], None]) -> dict[str, Any]:
    k, n = settings.status_changes, settings.issues
    env = {"SYNCER_JIRA_MAX_RPS": f"{settings.jira_max_rps:g}", **settings.extra_env}
    with e2e.running(e2e.Settings(issues=n, latency=settings.latency, database=settings.database,
                                  extra_env=env), workdir) as s:
        # The issues to be resolved mid-storm, with their tickets made first.
        port_requests = s.file_issues(k)
        e2e.deliver(s, port_requests, 4)
        e2e.wait_until(s, lambda c: c["active_links"] >= k, settings.timeout)
        e2e.wait_until(s, lambda c: c["sentry_finished"] >= k, settings.timeout)
        targets = [issue["id"] for issue in s.sentry.issues()[:k]]
        keys = {issue_id: _ticket_of(s, issue_id) for issue_id in targets}
        assert all(keys.values()), keys
        s.sentry.latency = settings.latency
        s.jira.latency = settings.latency

        storm = s.file_issues(n)
        t0 = time.perf_counter()
        sender = threading.Thread(target=e2e.deliver, args=(s, storm, 8), daemon=True)
        sender.start()
        samples: list[dict[str, Any]] = []
        for j, issue_id in enumerate(targets):
            # Event-paced: the j-th resolve goes when the storm has made its share of tickets.
            share = (j + 1) / (k + 1)
            e2e.wait_until(s, lambda c, share=share: c["active_links"] - k >= share * n, settings.timeout)
            s.sentry.person_resolve(issue_id)
            resource, payload = s.sentry.emitted()[-1]
            assert resource == "issue" and payload["action"] == "resolved", (resource, payload.get("action"))
            t_sent = time.perf_counter()
            _post_signed(s.web_url, resource, payload)
            stack.wait_for(lambda issue_id=issue_id: _status(s, keys[issue_id]) == "Done", settings.timeout,
                           f"{keys[issue_id]} to be Done")
            latency = time.perf_counter() - t_sent
            pending = n - (s.counts()["active_links"] - k)
            samples.append({"at_share": share, "latency_s": latency, "creates_pending": pending})
            log(f"  lanes: resolve {j + 1}/{k} at {share:.0%} of the storm: Done after {latency:.2f}s, "
                f"{pending} of the storm's tickets still to make")
        sender.join(settings.timeout)
        counts = e2e.wait_until(s, lambda c: c["active_links"] >= n + k, settings.timeout)
        t_storm = time.perf_counter() - t0
        tickets = s.jira.issues()
    latencies = sorted(x["latency_s"] for x in samples)
    return {
        "issues": n,
        "status_changes": k,
        "jira_max_rps": settings.jira_max_rps,
        "storm_s": t_storm,
        "storm_tickets_per_s": n / t_storm,
        "status_p50_s": statistics.median(latencies),
        "status_p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "status_max_s": latencies[-1],
        "every_resolve_before_the_storm_drained": all(x["creates_pending"] > 0 for x in samples),
        "tickets": len(tickets),
        "dead": counts["dead"],
        "samples": samples,
    }


def run(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    with stack.workspace("syncer-bench-lanes-") as workdir:
        result = measure(settings, workdir, log)
    result["within_target"] = result["status_p99_s"] <= TARGET_SECONDS
    made = settings.issues + settings.status_changes
    result["complete"] = result["tickets"] == made and result["dead"] == 0
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lanes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--issues", type=int, default=Settings.issues)
    parser.add_argument("--status-changes", type=int, default=Settings.status_changes)
    parser.add_argument("--jira-rps", type=float, default=Settings.jira_max_rps)
    parser.add_argument("--status-share", type=float, default=None,
                        help="SYNCER_RATE_LIMIT_STATUS_SHARE for the worker (default: its own)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    extra = ({} if args.status_share is None
             else {"SYNCER_RATE_LIMIT_STATUS_SHARE": f"{args.status_share:g}"})
    settings = SMOKE if args.smoke else Settings(issues=args.issues, status_changes=args.status_changes,
                                                 jira_max_rps=args.jira_rps, extra_env=extra)
    out = run(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['status_changes']} resolves during a storm of {out['issues']} issues at "
              f"SYNCER_JIRA_MAX_RPS={out['jira_max_rps']:g}: p50 {out['status_p50_s']:.2f}s, "
              f"p99 {out['status_p99_s']:.2f}s, max {out['status_max_s']:.2f}s "
              f"(target <= {TARGET_SECONDS:g}s); "
              f"storm {out['storm_s']:.0f}s ({out['storm_tickets_per_s']:.1f} tickets/s)")
    return 0 if out["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
