"""End to end: new Sentry issues delivered as signed `issue.created` webhooks to a real `syncer web`,
turned into Jira tickets by a real `syncer worker` with its default pool and concurrency, against the
fake Sentry and Jira adding 50 ms to every API call.

Reported: time from the first webhook until the last ticket exists (its link is active) and until
every delivery is finished (back-links included), tickets/s, Jira and Sentry calls per ticket (the
fakes' call logs), and duplicates (tickets per Sentry issue beyond one: must be 0). The fakes run in
this process; a probe measures how late they answer beyond their injected latency, so that "the fakes
were the limit" can be ruled out from the figures.

    python -m bench.e2e                 # 1,000 issues, 3 rounds
    python -m bench.e2e --smoke         # 20 issues, no latency: does it still work?
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import stack
from bench.loadgen import render_request, run_load

# Three teams' worth of issues, all routed to a ticket (bench/policy.toml).
KINDS: list[dict[str, Any]] = [
    {"project": "billing-api", "platform": "python", "title": "ZeroDivisionError: division by zero #{n}",
     "culprit": "billing.invoices in compute_total"},
    {"project": "web-app", "platform": "javascript", "title": "TypeError: x is undefined #{n}",
     "culprit": "app/checkout.js in render"},
    {"project": "search-api", "platform": "python", "title": "KeyError: 'query' #{n}",
     "culprit": "search.views in handle"},
]


@dataclass(frozen=True)
class Settings:
    issues: int = 1000
    latency: float = 0.05
    database: str = "sqlite"
    worker_args: tuple[str, ...] = ()  # empty: `syncer worker` exactly as an operator starts it
    sender_concurrency: int = 8  # Sentry delivers webhooks from many workers at once
    jira_webhooks: bool = True  # Jira's own `issue_created` webhooks come back to syncer, as in production
    timeout: float = 600.0
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_processes: int = 1  # more than one `syncer worker` process (an operator's choice)


# Settings from the reliability work that model the real services' quotas (client-side rate limits
# and the spacing of writes to one Jira issue). They exist to be polite to Jira Cloud and Sentry, not
# to the fakes: left on, they, not syncer, would be what this measures. Unknown names are ignored by
# older code, so this is safe before and after that work lands.
UNTHROTTLED = {
    "SYNCER_JIRA_MAX_RPS": "0",
    "SYNCER_SENTRY_MAX_RPS": "0",
    "SYNCER_JIRA_ISSUE_WRITE_INTERVAL_SECONDS": "0",
}


class Stack:
    """Fakes in this process; Redis, web and worker as processes; a fresh database."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.broker = stack.Broker()
        self.database = stack.Database(settings.database, workdir)
        self.sentry: Any = None
        self.jira: Any = None
        self.web: stack.Process | None = None
        self.worker: stack.Process | None = None
        self.extra_workers: list[stack.Process] = []
        self.web_url = ""
        self._filed = 0

    def start(self) -> Stack:
        from syncer.fakes.jira import start_fake_jira
        from syncer.fakes.sentry import start_fake_sentry

        self.broker.start()
        self.database.create()
        self.sentry = start_fake_sentry(org=stack.ORG, token=stack.SENTRY_TOKEN,
                                        client_secret=stack.SENTRY_SECRET)
        self.sentry.webhooks.enabled = False  # the load generator delivers them, concurrently
        self.sentry.calls.keep_calls = False
        self.jira = start_fake_jira(deployment="Cloud", webhook_secret=stack.JIRA_WEBHOOK_SECRET,
                                    email=stack.JIRA_EMAIL, token=stack.JIRA_TOKEN)
        self.jira.calls.keep_calls = False
        self.jira.add_user("acc-driver", "Dee Driver", "driver@example.com")
        self.jira.add_user("acc-alice", "Alice", "alice@example.com")
        env = stack.syncer_env(database_url=self.database.url, broker_url=self.broker.url,
                               sentry_url=self.sentry.url, jira_url=self.jira.url,
                               extra={**UNTHROTTLED, **self.settings.extra_env})
        self.web, self.web_url = stack.start_web(env, self.workdir)
        if self.settings.jira_webhooks:
            self.jira.webhooks.url = f"{self.web_url}/webhooks/jira"
        self.worker = stack.start_worker(env, self.workdir, extra_args=self.settings.worker_args)
        for k in range(1, self.settings.worker_processes):  # more `syncer worker`s, as an operator scales
            self.extra_workers.append(stack.start_worker(
                env, self.workdir, extra_args=(*self.settings.worker_args, "--hostname", f"extra{k}@%h"),
                log_name=f"worker{k}"))
        return self

    def stop(self) -> None:
        for process in (*self.extra_workers, self.worker, self.web):
            if process is not None:
                process.stop()
        for fake in (self.sentry, self.jira):
            if fake is not None:
                fake.webhooks.url = None
                fake.stop()
        self.database.drop()
        self.broker.stop()

    def file_issues(self, n: int) -> list[bytes]:
        """File `n` new issues in the fake Sentry; the signed `issue.created` requests that announce them."""
        from syncer.fakes.base import compact_json, hmac_sha256_hex

        assert self.sentry is not None
        port = int(self.web_url.rsplit(":", 1)[1])
        for k in range(n):
            kind = KINDS[(self._filed + k) % len(KINDS)]
            self.sentry.file_issue(**{**kind, "title": kind["title"].replace("{n}", str(self._filed + k))})
        self._filed += n
        requests = []
        timestamp = str(int(time.time()))
        # The fake keeps its last 10,000 webhooks; these n are the newest.
        for resource, payload in self.sentry.emitted()[-n:]:
            body = compact_json(payload)
            headers = [("Content-Type", "application/json"), ("Sentry-Hook-Resource", resource),
                       ("Sentry-Hook-Timestamp", timestamp),
                       ("Sentry-Hook-Signature", hmac_sha256_hex(stack.SENTRY_SECRET, body))]
            requests.append(render_request("127.0.0.1", port, "/webhooks/sentry", body, headers))
        assert len(requests) == n, f"expected {n} created webhooks, the fake emitted {len(requests)}"
        return requests

    def counts(self) -> dict[str, int]:
        sql = {
            "active_links": "SELECT count(*) FROM links WHERE state = 'active'",
            "sentry_finished": "SELECT count(*) FROM deliveries WHERE source = 'sentry' "
                               "AND state IN ('done', 'ignored', 'dead')",
            "dead": "SELECT count(*) FROM deliveries WHERE state = 'dead'",
        }
        return self.database.counts(sql)


@contextmanager
def running(settings: Settings, workdir: Path) -> Iterator[Stack]:
    s = Stack(settings, workdir)
    try:
        yield s.start()
    finally:
        s.stop()


class Probe(threading.Thread):
    """Asks the fake Jira for a page that is outside its latency and call log, every 50 ms: how late
    it answers is how far behind the fakes' event loop (and this process's GIL) are."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/_fake/probe"
        self.samples: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        # http.client, not httpx: a tenth of the CPU in this process, and less of the client in the
        # measured time. One keep-alive connection, made again after an error.
        parts = urlsplit(self.url)
        connection: http.client.HTTPConnection | None = None
        while not self._halt.wait(0.05):
            t = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
                connection.request("GET", parts.path)
                connection.getresponse().read()
            except (OSError, http.client.HTTPException):
                if connection is not None:
                    connection.close()
                connection = None
                continue
            self.samples.append(time.perf_counter() - t)
        if connection is not None:
            connection.close()

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join(5)
        ordered = sorted(self.samples) or [0.0]
        return {"probe_p50_ms": ordered[len(ordered) // 2] * 1000,
                "probe_p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000}


def deliver(s: Stack, requests: list[bytes], concurrency: int) -> dict[str, int]:
    port = int(s.web_url.rsplit(":", 1)[1])
    result = run_load("127.0.0.1", port, requests, concurrency=concurrency)
    statuses = {str(k): v for k, v in result.all_statuses.items()}
    if result.all_statuses.get(202, 0) != len(requests):
        raise RuntimeError(f"intake answered {statuses}, errors {dict(result.errors)}")
    return statuses


def wait_until(s: Stack, predicate: Callable[[dict[str, int]], bool], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = s.counts()
        if predicate(counts):
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s: {counts}")
        assert s.worker is not None
        s.worker.check_alive()
        time.sleep(0.05)


def measure(settings: Settings, workdir: Path) -> dict[str, Any]:
    n = settings.issues
    with running(settings, workdir) as s:
        requests = s.file_issues(n)
        s.sentry.latency = settings.latency
        s.jira.latency = settings.latency
        s.sentry.calls.reset()
        s.jira.calls.reset()
        assert s.worker is not None and s.web is not None
        workers = [s.worker, *s.extra_workers]
        cpu0 = {"worker": sum(stack.tree_cpu_seconds(w.pid) for w in workers),
                "web": stack.tree_cpu_seconds(s.web.pid),
                "bench": time.process_time()}
        probe = Probe(s.jira.url)
        probe.start()
        jiffies0 = stack.machine_jiffies()
        t0 = time.perf_counter()
        deliver(s, requests, settings.sender_concurrency)
        t_intake = time.perf_counter() - t0
        wait_until(s, lambda c: c["active_links"] >= n, settings.timeout)
        t_tickets = time.perf_counter() - t0
        counts = wait_until(s, lambda c: c["sentry_finished"] >= n, settings.timeout)
        t_done = time.perf_counter() - t0
        fakes = probe.stop()
        machine_busy = stack.busy_cores(jiffies0, stack.machine_jiffies())
        cpu = {"worker": sum(stack.tree_cpu_seconds(w.pid) for w in workers) - cpu0["worker"],
               "web": stack.tree_cpu_seconds(s.web.pid) - cpu0["web"],
               "bench": time.process_time() - cpu0["bench"]}
        tickets = s.jira.issues()
        per_issue = Counter(label for t in tickets for label in t["labels"] if label.startswith("sentry-"))
        jira_calls = s.jira.calls.count()
        # Once per worker process (serverInfo), per assignee and project (the account cache) or per
        # project and issue type in each worker process (create-meta, for tickets with components):
        # not per ticket.
        one_off = (r"/serverInfo$", r"/user/search$", r"/user/assignable/search$", r"/issue/createmeta/")
        jira_one_off = sum(s.jira.calls.count("GET", p) for p in one_off)
        sentry_calls = s.sentry.calls.count()
        jira_by_kind = _by_path(s.jira.calls)
        sentry_by_kind = _by_path(s.sentry.calls)
    return {
        "issues": n,
        "tickets": len(tickets),
        "issues_with_ticket": len(per_issue),
        "duplicates": sum(count - 1 for count in per_issue.values()),
        "dead": counts["dead"],
        "intake_s": t_intake,
        "last_ticket_s": t_tickets,
        "all_done_s": t_done,
        "tickets_per_s": n / t_tickets,
        "jira_calls_per_ticket": jira_calls / n,
        "jira_calls_per_ticket_steady": (jira_calls - jira_one_off) / n,
        "jira_one_off_calls": jira_one_off,
        "sentry_calls_per_ticket": sentry_calls / n,
        "jira_calls": jira_by_kind,
        "sentry_calls": sentry_by_kind,
        "cpu_worker": cpu["worker"] / t_done,
        "cpu_web": cpu["web"] / t_done,
        "cpu_fakes_and_generator": cpu["bench"] / t_done,
        # This process (fakes, generator, probe, polling) per ticket: CPU taken from syncer on this machine
        # that a remote Jira and Sentry would not take.
        "cpu_fakes_and_generator_ms_per_ticket": cpu["bench"] / n * 1000,
        "machine_busy_cores": machine_busy,  # everything on the machine, other people's work included
        **fakes,
    }


def _by_path(calls: Any) -> dict[str, int]:
    """Calls grouped by method and path shape (ids and keys folded), for the docs."""
    import re

    grouped: Counter[str] = Counter()
    with calls._lock:  # the fakes keep counts per (method, path); read them once
        items = list(calls._counts.items())
    for (method, path), count in items:
        shape = re.sub(r"/[A-Z]+-\d+", "/{key}", re.sub(r"/\d{3,}", "/{id}", path))
        grouped[f"{method} {shape}"] += count
    return dict(grouped.most_common())


def run(settings: Settings, rounds: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    results = []
    with stack.workspace("syncer-bench-e2e-") as workdir:
        for r in range(rounds):
            round_dir = workdir / f"round-{r}"
            round_dir.mkdir()
            results.append(measure(settings, round_dir))
            x = results[-1]
            log(f"  e2e round {r + 1}/{rounds}: {x['issues']} issues -> {x['tickets']} tickets in "
                f"{x['last_ticket_s']:.1f}s ({x['tickets_per_s']:.0f}/s), all done {x['all_done_s']:.1f}s, "
                f"jira {x['jira_calls_per_ticket']:.2f}/ticket, "
                f"sentry {x['sentry_calls_per_ticket']:.2f}/ticket, "
                f"duplicates {x['duplicates']}, fakes p99 lag {x['probe_p99_ms']:.1f} ms, "
                f"fakes + generator CPU {x['cpu_fakes_and_generator_ms_per_ticket']:.1f} ms/ticket")
    numeric = [k for k, v in results[0].items() if isinstance(v, int | float)]
    return {
        "settings": {k: v for k, v in settings.__dict__.items() if k != "extra_env"} | {"rounds": rounds},
        "median": {k: statistics.median(float(r[k]) for r in results) for k in numeric},
        "duplicates_total": sum(r["duplicates"] for r in results),
        "complete": all(r["issues_with_ticket"] == r["issues"] and r["dead"] == 0 for r in results),
        "rounds": results,
    }


SMOKE = Settings(issues=20, latency=0.0, timeout=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--issues", type=int, default=Settings.issues)
    parser.add_argument("--latency", type=float, default=Settings.latency)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--worker-arg", action="append", default=[],
                        help="extra `syncer worker` option, e.g. --worker-arg=--concurrency=32")
    parser.add_argument("--no-jira-webhooks", action="store_true")
    parser.add_argument("--worker-processes", type=int, default=1,
                        help="run this many `syncer worker` commands (an experiment; default one; each "
                             "starts one worker process per CPU unless given --worker-arg=--processes=1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        settings, rounds = SMOKE, 1
    else:
        settings = Settings(issues=args.issues, latency=args.latency, database=args.database,
                            worker_args=tuple(args.worker_arg), jira_webhooks=not args.no_jira_webhooks,
                            worker_processes=args.worker_processes)
        rounds = args.rounds
    out = run(settings, rounds, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        m = out["median"]
        print(f"{settings.issues} issues: last ticket after {m['last_ticket_s']:.1f}s = "
              f"{m['tickets_per_s']:.0f} tickets/s; jira {m['jira_calls_per_ticket']:.2f}, "
              f"sentry {m['sentry_calls_per_ticket']:.2f} "
              f"calls/ticket; duplicates {out['duplicates_total']}")
    return 0 if out["complete"] and out["duplicates_total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
