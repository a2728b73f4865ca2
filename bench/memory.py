"""Memory: the `syncer worker`'s resident memory as events go through it, after 1,000 and after
10,000 `issue.created` events (each one a ticket made, linked both ways), in steps of 1,000 on one
running stack. The figure is the peak (VmHWM) of the worker and all its children, from /proc: it
must not grow with the number of events. `syncer worker` runs one worker process per CPU under a
small supervisor, so the largest single process is reported beside the sum.

The fakes answer without added latency here: the waiting does not change what the worker holds,
and 10,000 tickets take minutes instead of many.

    python -m bench.memory              # 10,000 events
    python -m bench.memory --smoke      # 2 x 10 events
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import e2e, stack


def tree_kib(pid: int, field_name: str) -> int:
    return sum(stack.status_kib(p, field_name) for p in stack.process_tree(pid))


def largest_kib(pid: int, field_name: str) -> int:
    """The largest one process of the tree: `syncer worker` supervises one worker process per CPU,
    and the sum grows with the cores while each process's figure does not."""
    return max(stack.status_kib(p, field_name) for p in stack.process_tree(pid))


def run(events: int = 10_000, step: int = 1000, *, database: str = "sqlite",
        worker_args: tuple[str, ...] = (), log: Callable[[str], None] = print) -> dict[str, Any]:
    settings = e2e.Settings(issues=step, latency=0.0, database=database, worker_args=worker_args)
    samples: list[dict[str, float]] = []
    with stack.workspace("syncer-bench-memory-") as workdir, e2e.running(settings, workdir) as s:
        assert s.worker is not None
        done = 0
        started = time.perf_counter()
        while done < events:
            n = min(step, events - done)
            requests = s.file_issues(n)
            e2e.deliver(s, requests, settings.sender_concurrency)
            done += n
            e2e.wait_until(s, lambda c, target=done: c["sentry_finished"] >= target, settings.timeout)
            samples.append({
                "events": done,
                "peak_mib": tree_kib(s.worker.pid, "VmHWM") / 1024,
                "rss_mib": tree_kib(s.worker.pid, "VmRSS") / 1024,
                "processes": len(stack.process_tree(s.worker.pid)),
                "largest_process_peak_mib": largest_kib(s.worker.pid, "VmHWM") / 1024,
            })
            log(f"  memory: {done} events, worker peak {samples[-1]['peak_mib']:.0f} MiB, "
                f"now {samples[-1]['rss_mib']:.0f} MiB ({samples[-1]['processes']} processes, the "
                f"largest peaking at {samples[-1]['largest_process_peak_mib']:.0f} MiB)")
        elapsed = time.perf_counter() - started
        counts = s.counts()
    first, last = samples[0], samples[-1]
    return {
        "events": events,
        "step": step,
        "samples": samples,
        "peak_after_first_mib": first["peak_mib"],
        "peak_after_last_mib": last["peak_mib"],
        "rss_after_first_mib": first["rss_mib"],
        "rss_after_last_mib": last["rss_mib"],
        "processes": last["processes"],
        "largest_process_peak_after_last_mib": last["largest_process_peak_mib"],
        "growth": last["peak_mib"] / first["peak_mib"] - 1 if first["peak_mib"] else 0.0,
        "elapsed_s": elapsed,
        "all_linked": counts["active_links"] == events and counts["dead"] == 0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    events, step = (20, 10) if args.smoke else (args.events, args.step)
    out = run(events, step, database=args.database, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"worker peak RSS after {step} events {out['peak_after_first_mib']:.0f} MiB, after {events} "
              f"{out['peak_after_last_mib']:.0f} MiB ({out['growth']:+.1%}) over {out['processes']} "
              f"processes, the largest {out['largest_process_peak_after_last_mib']:.0f} MiB")
    return 0 if out["all_linked"] else 1


if __name__ == "__main__":
    sys.exit(main())
