"""Load: signed Sentry `issue.created` webhooks at a fixed rate, for a fixed time, at a real `syncer web`,
with real `syncer worker` and `syncer beat` processes working against the fake Sentry and Jira.

Open loop: request i is due at start + i / rate whether or not earlier ones were answered (as Sentry
sends: it does not wait for us), so a slow intake shows up as latency instead of as a lower rate.
Latency is measured from when a request was due to when its answer arrived.

Reported: sent, accepted (202), refused (any other answer or a broken connection), stored (rows in
the inbox), processed (finished), lost (accepted but not stored, or stored but never finished:
must be 0), duplicated tickets (tickets per Sentry issue beyond one: must be 0), missing tickets,
and the p50/p99/max intake latency. The exit status is 1 when anything was lost or duplicated.

    .venv/bin/python -m bench.load                          # 50 webhooks/s for 20 s
    .venv/bin/python -m bench.load --rate 100 --duration 30 --workers 2 --database postgres
    .venv/bin/python -m bench.load --smoke                  # 10/s for 2 s (the test suite runs this)

The client-side rate limits are off by default (the fakes are not Jira Cloud; left on, they would be
what this measures, see `--throttled`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import e2e, stack

THROTTLED = {  # the production defaults, for --throttled
    "SYNCER_JIRA_MAX_RPS": "10",
    "SYNCER_SENTRY_MAX_RPS": "10",
    "SYNCER_JIRA_ISSUE_WRITE_INTERVAL_SECONDS": "0.5",
}


@dataclass
class Sent:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # connections that broke (then retried)
    latencies: list[float] = field(default_factory=list)  # seconds, due -> answered, of 202s
    accepted: set[int] = field(default_factory=set)  # indexes of the requests answered 202
    late_starts: int = 0  # requests the generator itself sent more than 50 ms after they were due
    elapsed: float = 0.0


IDLE_SECONDS = 2.0  # keep-alive connections idle longer than this are not reused (the server may close them)
ATTEMPTS = 3  # like Sentry, a sender tries again when the connection fails


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


async def _send_all(port: int, requests: list[bytes], rate: float, max_connections: int) -> Sent:
    sent = Sent()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
    slots = asyncio.Semaphore(max_connections)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def connection() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while idle:
            reader, writer, since = idle.pop()
            if loop.time() - since < IDLE_SECONDS:
                return reader, writer
            writer.close()
        return await asyncio.open_connection("127.0.0.1", port)

    async def one(i: int, request: bytes) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        async with slots:
            if loop.time() - due > 0.05:
                sent.late_starts += 1
            for _ in range(ATTEMPTS):
                reader, writer = await connection()
                try:
                    writer.write(request)
                    status = await _answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    sent.errors[type(exc).__name__] += 1
                    writer.close()
                    continue
                sent.statuses[status] += 1
                if status == 202:
                    sent.latencies.append(loop.time() - due)
                    sent.accepted.add(i)
                idle.append((reader, writer, loop.time()))
                return
            sent.statuses[0] += 1  # given up on: the sender would try again much later

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    sent.elapsed = loop.time() - start
    for _, writer, _ in idle:
        writer.close()
    return sent


def _issue_id(request: bytes) -> str:
    payload = json.loads(request.split(b"\r\n\r\n", 1)[1])
    return str(payload["data"]["issue"]["id"])


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def run(
    *,
    rate: float,
    duration: float,
    workers: int,
    database: str,
    latency: float,
    throttled: bool,
    drain_timeout: float,
    max_connections: int,
) -> dict[str, Any]:
    n = max(1, round(rate * duration))
    settings = e2e.Settings(
        issues=n,
        latency=latency,
        database=database,
        worker_processes=workers,
        extra_env=THROTTLED if throttled else {},
    )
    with stack.workspace("syncer-load-") as workdir, e2e.running(settings, workdir) as s:
        beat = stack.Process(
            "beat",
            stack.syncer_command("beat", "--schedule", str(workdir / "beat-schedule")),
            s.worker.env if s.worker else {},
            workdir / "beat.log",
        ).start()
        try:
            requests = s.file_issues(n)
            s.sentry.latency = latency
            s.jira.latency = latency
            port = int(s.web_url.rsplit(":", 1)[1])
            sent = asyncio.run(_send_all(port, requests, rate, max_connections))
            accepted = sent.statuses.get(202, 0)
            deadline = time.monotonic() + drain_timeout
            counts = _counts(s.database)
            while counts["finished"] < counts["stored"] and time.monotonic() < deadline:
                time.sleep(0.5)
                counts = _counts(s.database)
            drained_in = drain_timeout - max(0.0, deadline - time.monotonic())
            per_issue = Counter(
                label
                for ticket in s.jira.issues()
                for label in ticket["labels"]
                if label.startswith("sentry-")
            )
        finally:
            beat.stop()
    accepted_ids = [_issue_id(requests[i]) for i in sorted(sent.accepted)]
    tickets = {i: per_issue.get(f"sentry-{i}", 0) for i in accepted_ids}
    lost = max(0, accepted - counts["stored"]) + (counts["stored"] - counts["finished"])
    return {
        "machine": stack.machine(),
        "rate": rate,
        "duration": duration,
        "workers": workers,
        "database": database,
        "api_latency_ms": latency * 1000,
        "throttled": throttled,
        "sent": n,
        "accepted": accepted,
        "refused": n - accepted,
        "answers": {str(k): v for k, v in sent.statuses.items()},
        "errors": dict(sent.errors),
        "stored": counts["stored"],
        "processed": counts["finished"] - counts["dead"],
        "dead": counts["dead"],
        "lost": lost,
        "tickets": sum(1 for v in tickets.values() if v),
        "missing_tickets": sum(1 for v in tickets.values() if v == 0),  # of accepted deliveries
        "duplicated_tickets": sum(max(0, v - 1) for v in tickets.values()),
        "intake_p50_ms": round(_percentile(sent.latencies, 50) * 1000, 1),
        "intake_p99_ms": round(_percentile(sent.latencies, 99) * 1000, 1),
        "intake_max_ms": round(max(sent.latencies, default=0.0) * 1000, 1),
        "late_starts": sent.late_starts,
        "send_seconds": round(sent.elapsed, 2),
        "drained_seconds": round(drained_in, 1),
    }


def _counts(database: stack.Database) -> dict[str, int]:
    sentry = "SELECT count(*) FROM deliveries WHERE source = 'sentry'"
    return {
        "stored": database.count(sentry),
        "finished": database.count(f"{sentry} AND state IN ('done', 'ignored', 'dead')"),
        "dead": database.count(f"{sentry} AND state = 'dead'"),
    }


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"load: {result['rate']:g} signed webhooks/s for {result['duration']:g} s at `syncer web`, "
        f"{result['workers']} worker(s), {result['database']}, API latency {result['api_latency_ms']:g} ms, "
        f"rate limits {'on' if result['throttled'] else 'off'} ({m['cores']} cores, load {m['load1']})",
        f"  sent {result['sent']}  accepted {result['accepted']}  refused {result['refused']}  "
        f"stored {result['stored']}  processed {result['processed']}  dead {result['dead']}",
        f"  lost {result['lost']}  duplicated tickets {result['duplicated_tickets']}  "
        f"missing tickets {result['missing_tickets']}",
        f"  intake latency p50 {result['intake_p50_ms']} ms  p99 {result['intake_p99_ms']} ms  "
        f"max {result['intake_max_ms']} ms  (late starts {result['late_starts']})",
        f"  everything finished {result['drained_seconds']} s after the last webhook was sent",
    ]
    if result["errors"]:
        lines.append(f"  connections that broke (the request was sent again): {result['errors']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="webhooks per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    parser.add_argument("--workers", type=int, default=1, help="`syncer worker` processes")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the fakes add to every API call")
    parser.add_argument("--throttled", action="store_true", help="keep the production rate limits on")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="seconds to wait for processing")
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="10/s for 2 s: does it all still work?")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rate, args.duration, args.drain_timeout = 10.0, 2.0, 120.0
    result = run(
        rate=args.rate,
        duration=args.duration,
        workers=args.workers,
        database=args.database,
        latency=args.latency,
        throttled=args.throttled,
        drain_timeout=args.drain_timeout,
        max_connections=args.max_connections,
    )
    print(report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = result["lost"] == 0 and result["duplicated_tickets"] == 0 and result["missing_tickets"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
