"""Intake: signed Sentry `issue.created` webhooks posted to a real `syncer web` process, and the same
load against a bare endpoint on the same server stack (uvicorn + FastAPI, reads the body, answers
202): the limit of this stack on this machine. Both are measured in the same run, alternately.

After each syncer round the database is counted: every 202 must be a stored delivery.

    python -m bench.intake                  # the full measurement
    python -m bench.intake --smoke          # seconds, for the test suite
    python -m bench.intake --serve-bare 8123   # just the bare endpoint (for profiling by hand)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bench import stack
from bench.loadgen import LoadResult, numbered, render_request, run_load

PATH = "/webhooks/sentry"
TEMPLATE_ID = "4100000001"


# -- the bare endpoint: the same server stack doing nothing but read and answer ----------------------


def bare_app() -> Any:
    # FastAPI, Request and Response are imported at module level on purpose: with postponed annotations
    # FastAPI resolves `request: Request` in the module's globals, and a local import made it a required
    # query parameter, so every request was a 422 that never read the body (it was, until 2026-11-28).
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(PATH)
    async def sentry_webhook(request: Request) -> Response:
        await request.body()
        return JSONResponse({"delivery": 0, "duplicate": False}, status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_bare(port: int, workers: int = 1) -> None:
    import uvicorn

    # The same uvicorn options as `syncer web` (syncer/cli/main.py cmd_web).
    uvicorn.run("bench.intake:bare_app", factory=True, host="127.0.0.1", port=port, workers=workers,
                log_level="warning", access_log=False)


# -- the requests ---------------------------------------------------------------------------------


def created_template() -> bytes:
    """One `issue.created` body exactly as the fake Sentry sends it."""
    from syncer.fakes.base import compact_json
    from syncer.fakes.sentry import start_fake_sentry

    fake = start_fake_sentry(org=stack.ORG, client_secret=stack.SENTRY_SECRET)
    try:
        fake.webhooks.enabled = False
        issue = fake.file_issue(project="billing-api")
        assert issue["id"] == TEMPLATE_ID
        _, payload = fake.emitted()[-1]
        return compact_json(payload)
    finally:
        fake.stop()


def request_maker(template: bytes, port: int, *, salt: int) -> Callable[[int], bytes]:
    """Request n: the template with a distinct issue id, signed. Every body differs, so none is a
    duplicate delivery; `salt` keeps rounds apart."""
    from syncer.fakes.base import hmac_sha256_hex

    timestamp = str(int(time.time()))
    marker = TEMPLATE_ID.encode()

    def make(n: int) -> bytes:
        body = template.replace(marker, str(5_000_000_000 + salt * 10_000_000 + n).encode())
        headers = [
            ("Content-Type", "application/json"),
            ("Sentry-Hook-Resource", "issue"),
            ("Sentry-Hook-Timestamp", timestamp),
            ("Sentry-Hook-Signature", hmac_sha256_hex(stack.SENTRY_SECRET, body)),
            ("Request-ID", f"{salt:04d}{n:028d}"),
        ]
        return render_request("127.0.0.1", port, PATH, body, headers)

    return make


# -- one round ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    duration: float = 5.0
    warmup: float = 1.0
    concurrency: int = 16
    database: str = "sqlite"
    web_args: tuple[str, ...] = ()  # extra `syncer web` options (tuning experiments)
    bare_workers: int = 1
    # A burst after the steady load: this many new webhooks, each connection sending its next the
    # moment the last is answered (no warm-up, no pacing). Sentry delivers from many workers at once;
    # all of them in flight at the same instant would make p99 the time to serve the whole burst.
    burst: int = 2000
    burst_connections: int = 64


def _cpu_per_request(cpu: float, result: LoadResult) -> float:
    """The server's CPU (all its threads and children) per answered request, warm-up included, in
    microseconds: what other work on the machine hardly changes, where req/s moves with it."""
    answered = sum(result.all_statuses.values())
    return cpu / answered * 1e6 if answered else 0.0


def _summary(result: LoadResult) -> dict[str, Any]:
    return {
        "rps": result.rate,
        "p50_ms": result.percentile(50) * 1000,
        "p99_ms": result.percentile(99) * 1000,
        "answered": result.answered,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": dict(result.errors),
        "generator_cpu": result.cpu / result.elapsed if result.elapsed else 0.0,
    }


BURST_FIRST = 5_000_000  # the burst's request numbers start here, past any steady round's


def measure_burst(port: int, make: Callable[[int], bytes], settings: Settings) -> dict[str, Any]:
    """`settings.burst` distinct webhooks, rendered and signed beforehand, sent over
    `settings.burst_connections` connections as fast as they are answered."""
    if settings.burst <= 0:
        return {}
    requests = [make(BURST_FIRST + n) for n in range(settings.burst)]
    result = run_load("127.0.0.1", port, requests, concurrency=settings.burst_connections)
    ordered = sorted(result.latencies) or [0.0]
    return {
        "burst_requests": settings.burst,
        "burst_connections": settings.burst_connections,
        "burst_p50_ms": result.percentile(50) * 1000,
        "burst_p99_ms": result.percentile(99) * 1000,
        "burst_max_ms": ordered[-1] * 1000,
        "burst_s": result.elapsed,
        "burst_202": result.all_statuses[202],
        "burst_errors": sum(result.errors.values()),
    }


def measure_bare(template: bytes, settings: Settings, workdir: Path, salt: int) -> dict[str, Any]:
    port = stack.free_port()
    argv = [sys.executable, "-m", "bench.intake", "--serve-bare", str(port),
            "--bare-workers", str(settings.bare_workers)]
    server = stack.Process("bare", argv, dict(os.environ), workdir / "bare.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        stack.wait_for(lambda: stack.healthy(url) or server.check_alive(), 30, "the bare endpoint")
        cpu0 = stack.tree_cpu_seconds(server.pid)
        jiffies0 = stack.machine_jiffies()
        requests = numbered(request_maker(template, port, salt=salt))
        result = run_load("127.0.0.1", port, requests, concurrency=settings.concurrency,
                          duration=settings.duration, warmup=settings.warmup)
        cpu = stack.tree_cpu_seconds(server.pid) - cpu0
        machine_busy = stack.busy_cores(jiffies0, stack.machine_jiffies())
        burst = measure_burst(port, request_maker(template, port, salt=salt), settings)
    finally:
        server.stop()
    out = _summary(result) | burst
    out["machine_busy_cores"] = machine_busy
    out["server_cpu"] = cpu / (result.elapsed + settings.warmup)
    out["cpu_us_per_request"] = _cpu_per_request(cpu, result)
    return out


def measure_syncer(template: bytes, settings: Settings, workdir: Path, salt: int) -> dict[str, Any]:
    broker = stack.Broker().start()
    database = stack.Database(settings.database, workdir).create()
    # The web process never calls Sentry or Jira; the URLs only have to be valid.
    env = stack.syncer_env(database_url=database.url, broker_url=broker.url,
                           sentry_url="http://127.0.0.1:9", jira_url="http://127.0.0.1:9")
    web, url = stack.start_web(env, workdir, extra_args=settings.web_args)
    try:
        port = int(url.rsplit(":", 1)[1])
        make = request_maker(template, port, salt=salt)
        cpu0 = stack.tree_cpu_seconds(web.pid)
        jiffies0 = stack.machine_jiffies()
        result = run_load("127.0.0.1", port, numbered(make), concurrency=settings.concurrency,
                          duration=settings.duration, warmup=settings.warmup)
        cpu = stack.tree_cpu_seconds(web.pid) - cpu0
        machine_busy = stack.busy_cores(jiffies0, stack.machine_jiffies())
        # Enqueueing runs after the answer; give the last publishes a moment before counting (and
        # before the burst, which should meet a web process that has caught up).
        queue = broker.client()
        accepted = result.all_statuses[202]
        queued = _wait_queued(queue, accepted)
        burst = measure_burst(port, make, settings)
        accepted += burst.get("burst_202", 0)
        queued = _wait_queued(queue, accepted)
        messages = int(queue.llen("syncer"))
    finally:
        web.stop()
    try:
        stored = database.count("SELECT count(*) FROM deliveries")
    finally:
        database.drop()
        broker.stop()
    out = _summary(result) | burst
    out["server_cpu"] = cpu / (result.elapsed + settings.warmup)
    out["cpu_us_per_request"] = _cpu_per_request(cpu, result)
    out["accepted_total"] = accepted
    out["machine_busy_cores"] = machine_busy
    out["stored"] = stored
    out["enqueued"] = len(set(queued))  # distinct deliveries in the broker queue
    out["enqueued_twice"] = len(queued) - len(set(queued))
    out["messages"] = messages
    return out


def _wait_queued(client: Any, accepted: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    queued = queued_deliveries(client)
    while len(queued) < accepted and time.monotonic() < deadline:
        time.sleep(0.2)
        queued = queued_deliveries(client)
    return queued


def queued_deliveries(client: Any, queue: str = "syncer") -> list[int]:
    """The delivery ids in the broker queue. A message is Celery's protocol v2 in kombu's Redis
    envelope (JSON, body in base64) and carries one id (`syncer.process_delivery`) or several
    (`syncer.process_deliveries`, what the web tier publishes under load)."""
    ids: list[int] = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        ids += args[0] if envelope["headers"]["task"] == "syncer.process_deliveries" else args
    return ids


def run(settings: Settings, rounds: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """`rounds` alternating pairs (bare, syncer); medians, and the ratio per round."""
    template = created_template()
    bare: list[dict[str, Any]] = []
    syncer: list[dict[str, Any]] = []
    with stack.workspace("syncer-bench-intake-") as workdir:
        for n in range(rounds):
            bare.append(measure_bare(template, settings, workdir, salt=2 * n))
            log(f"  intake round {n + 1}/{rounds}: bare {bare[-1]['rps']:.0f} req/s, "
                f"p99 {bare[-1]['p99_ms']:.1f} ms, burst p99 {bare[-1].get('burst_p99_ms', 0):.1f} ms, "
                f"{bare[-1]['cpu_us_per_request']:.0f} us CPU/request")
            round_dir = workdir / f"syncer-{n}"
            round_dir.mkdir()
            syncer.append(measure_syncer(template, settings, round_dir, salt=2 * n + 1))
            s = syncer[-1]
            log(f"  intake round {n + 1}/{rounds} ({settings.database}): syncer {s['rps']:.0f} req/s, "
                f"p99 {s['p99_ms']:.1f} ms, burst p99 {s.get('burst_p99_ms', 0):.1f} ms, "
                f"{s['cpu_us_per_request']:.0f} us CPU/request, {s['stored']}/{s['accepted_total']} stored, "
                f"{s['enqueued']} enqueued ({s['messages']} messages)")
    ratios = [s["rps"] / b["rps"] if b["rps"] else 0.0 for s, b in zip(syncer, bare, strict=True)]
    # The same comparison by CPU per request (bare / syncer): what the throughput ratio is when each
    # server has a core to itself, and steadier than it when other work shares the machine.
    cpu_ratios = [b["cpu_us_per_request"] / s["cpu_us_per_request"] if s["cpu_us_per_request"] else 0.0
                  for s, b in zip(syncer, bare, strict=True)]
    return {
        "settings": settings.__dict__ | {"rounds": rounds},
        "bare": _medians(bare),
        "syncer": _medians(syncer),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "cpu_ratio": statistics.median(cpu_ratios),
        "cpu_ratios": cpu_ratios,
        "all_stored": all(s["stored"] == s["accepted_total"] for s in syncer),
        # Every stored delivery reached the broker, once (the sweeper covers it otherwise, but here
        # the broker is up throughout).
        "all_enqueued": all(s["enqueued"] == s["stored"] and not s["enqueued_twice"] for s in syncer),
        # The bare endpoint must really answer 202 (it once answered 422 to every request unnoticed).
        "bare_non_202": sum(sum(n for k, n in b["statuses"].items() if k != "202") for b in bare),
        "lost": sum(max(0, s["accepted_total"] - s["stored"]) for s in syncer),
        "non_202": sum(sum(n for k, n in s["statuses"].items() if k != "202") for s in syncer),
        "rounds": {"bare": bare, "syncer": syncer},
    }


def _medians(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in rows[0].items() if isinstance(v, int | float)]
    return {k: statistics.median(float(r[k]) for r in rows) for k in keys}


SMOKE = Settings(duration=0.5, warmup=0.2, concurrency=4, burst=100, burst_connections=8)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests: does it still work?")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=Settings.duration)
    parser.add_argument("--warmup", type=float, default=Settings.warmup)
    parser.add_argument("--concurrency", type=int, default=Settings.concurrency)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--web-arg", action="append", default=[], help="extra `syncer web` option")
    parser.add_argument("--bare-workers", type=int, default=1)
    parser.add_argument("--burst", type=int, default=Settings.burst, help="webhooks in the burst (0: none)")
    parser.add_argument("--burst-connections", type=int, default=Settings.burst_connections)
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare, args.bare_workers)
        return 0
    if args.smoke:
        settings, rounds = SMOKE, 1
    else:
        settings = Settings(duration=args.duration, warmup=args.warmup, concurrency=args.concurrency,
                            database=args.database, web_args=tuple(args.web_arg),
                            bare_workers=args.bare_workers, burst=args.burst,
                            burst_connections=args.burst_connections)
        rounds = args.rounds
    out = run(settings, rounds, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        b, s = out["bare"], out["syncer"]
        print(f"bare   {b['rps']:8.0f} req/s  p50 {b['p50_ms']:6.1f} ms  p99 {b['p99_ms']:6.1f} ms  "
              f"{b['cpu_us_per_request']:4.0f} us CPU/request")
        print(f"syncer {s['rps']:8.0f} req/s  p50 {s['p50_ms']:6.1f} ms  p99 {s['p99_ms']:6.1f} ms  "
              f"{s['cpu_us_per_request']:4.0f} us CPU/request")
        if settings.burst:
            print(f"burst of {settings.burst:,} over {settings.burst_connections} connections: p99 bare "
                  f"{b.get('burst_p99_ms', 0):.1f} ms, syncer {s.get('burst_p99_ms', 0):.1f} ms")
        print(f"ratio {out['ratio']:.2f} (rounds: {', '.join(f'{r:.2f}' for r in out['ratios'])}), "
              f"by CPU per request {out['cpu_ratio']:.2f}  "
              f"stored all: {out['all_stored']}  enqueued all: {out['all_enqueued']}")
    ok = out["all_stored"] and out["all_enqueued"] and out["non_202"] == 0 and out["bare_non_202"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
