"""What one broker message costs a `syncer worker`, apart from the work it carries.

A real worker (one process, its default threads) is handed N deliveries that are not in the
database, so each task only tries to claim its delivery and finds nothing: what remains is Celery's
and kombu's own cost per message (BRPOP, acks_late's bookkeeping in Redis on receipt and on ack, the
request and trace machinery). The deliveries go once as one message each, and once as the web tier
publishes them under load (`worker.publish_batch`: up to `worker.MESSAGE_BATCH` per message).
Reported: the worker's CPU per delivery, its idle CPU over the same time subtracted.

    python -m bench.message_cost              # 3,000 deliveries each way
    python -m bench.message_cost --smoke      # 100: does it still work?
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

from bench import e2e, stack


def measure(deliveries: int) -> dict[str, float]:
    """Worker CPU per delivery, one message each and then batched, on one stack."""
    with stack.workspace("syncer-bench-messages-") as workdir:
        broker = stack.Broker().start()
        database = stack.Database("sqlite", workdir).create()
        nowhere = "http://127.0.0.1:9"  # the tasks never get as far as an API
        env = stack.syncer_env(database_url=database.url, broker_url=broker.url, sentry_url=nowhere,
                               jira_url=nowhere, extra=e2e.UNTHROTTLED)
        worker_process = stack.start_worker(env, workdir, extra_args=("--processes", "1"))
        try:
            from syncer.settings import current_settings
            from syncer.worker import app as worker

            os.environ.update(env)  # this process publishes as `syncer web` would, to this broker
            current_settings.cache_clear()
            worker.configure(current_settings())
            queue = broker.client()
            idle0 = stack.tree_cpu_seconds(worker_process.pid)
            time.sleep(1.0)
            idle_per_s = stack.tree_cpu_seconds(worker_process.pid) - idle0
            out = {}
            for batched in (False, True):
                first = 10**6 + (deliveries if batched else 0)
                ids = list(range(first, first + deliveries))  # no such deliveries: nothing to claim
                cpu0, t0 = stack.tree_cpu_seconds(worker_process.pid), time.perf_counter()
                for start in range(0, deliveries, 100):
                    chunk = ids[start:start + 100]
                    if batched:
                        worker.publish_batch(chunk)
                    else:
                        for delivery_id in chunk:
                            worker.publish_batch([delivery_id])
                stack.wait_for(lambda: queue.llen("syncer") == 0, 600, "the queue to drain")
                time.sleep(0.5)  # the last tasks finish after their message left the queue
                elapsed = time.perf_counter() - t0
                cpu = stack.tree_cpu_seconds(worker_process.pid) - cpu0 - idle_per_s * elapsed
                out["batched" if batched else "single"] = 1e6 * max(cpu, 0.0) / deliveries
        finally:
            worker_process.stop()
            database.drop()
            broker.stop()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.message_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--deliveries", type=int, default=3000)
    args = parser.parse_args(argv)
    n = 100 if args.smoke else args.deliveries
    os.environ.pop("SYNCER_WORKER_PROCESSES", None)
    from syncer.worker.app import MESSAGE_BATCH

    result = measure(n)
    for key, how in (("single", "one per message"), ("batched", f"up to {MESSAGE_BATCH} per message")):
        print(f"{n:,} deliveries, {how}: worker CPU {result[key]:,.0f} us per delivery")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
