"""The Celery app, its thin tasks, and the beat schedule.

Tasks take ids and re-read state. `acks_late` + `reject_on_worker_lost` are safe only because every
task is idempotent: a delivery is claimed in the database before anything is done with it.

Deliveries travel in two lanes (`syncer.lanes`), each a queue: `syncer.status` for status changes,
`syncer` for creates and the rest. A worker consumes both, the status queue first; a delivery keeps
its lane when it is retried (the queue it came in on), swept or handed back (its stored row).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from celery import Celery, Task, signals
from celery.utils.nodenames import anon_nodename
from sqlalchemy.engine import Engine

from syncer import lanes, locks, logs
from syncer.errors import Busy, ConfigError, PermanentError, SyncerError, TransientError, classify_failure
from syncer.lanes import Lane
from syncer.retry import delivery_policy
from syncer.runtime import Runtime
from syncer.settings import Settings
from syncer.store import deliveries

log = logs.get_logger(__name__)


app = Celery("syncer")

# This worker process's Runtime: its entry point (`syncer worker`) builds it and hands it over before
# the worker takes tasks. Celery calls tasks by name with their arguments only, so they find it here.
_process_runtime: Runtime | None = None


def use_runtime(rt: Runtime) -> None:
    global _process_runtime
    _process_runtime = rt


def _runtime() -> Runtime:
    if _process_runtime is None:
        raise RuntimeError("no Runtime for the worker's tasks: the entry point calls use_runtime(rt)")
    return _process_runtime


# Our own lines for "ready", on Celery's signals: what tests and operators wait for, in syncer's
# words and fields rather than Celery's wording, which may change between its versions.
@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _worker_ready(sender: Any = None, **_: Any) -> None:
    log.info("syncer worker ready", hostname=getattr(sender, "hostname", None), pid=os.getpid())


# Set when this worker begins its warm shutdown (SIGTERM): running tasks finish, but a message of
# several deliveries hands back those it has not started (`process_deliveries`), so that stopping
# takes one delivery attempt at most, the bound a platform's shutdown period is set by
# (deploy/kubernetes/worker.yaml), not eight of them.
_shutting_down = threading.Event()


@signals.worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _worker_shutting_down(**_: Any) -> None:
    _shutting_down.set()


@signals.beat_init.connect  # type: ignore[untyped-decorator]
def _beat_ready(sender: Any = None, **_: Any) -> None:
    log.info("syncer beat ready", pid=os.getpid())


def configure(settings: Settings, target: Celery | None = None) -> Celery:
    target = target or app
    target.conf.update(
        broker_url=settings.broker_url,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="syncer",
        broker_connection_retry_on_startup=True,
        # Publishing from the web process must fail fast when the broker is down: the delivery is
        # already stored, and the sweeper hands it out once the broker is back.
        broker_connection_timeout=2,
        broker_transport_options=_transport_options(settings.broker_url),
        task_publish_retry=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "sweep-inbox": {
                "task": "syncer.sweep_inbox",
                "schedule": timedelta(seconds=settings.sweep_every_seconds),
            },
            "prune-deliveries": {"task": "syncer.prune_deliveries", "schedule": timedelta(hours=6)},
            "reconcile": {
                "task": "syncer.reconcile",
                "schedule": timedelta(minutes=_reconcile_minutes(settings)),
                # A run still queued when the next is due (a backlog, no worker) is dropped.
                "options": {"expires": _reconcile_minutes(settings) * 60},
            },
        },
    )
    return target


def _reconcile_minutes(settings: Settings) -> int:
    """`reconcile.interval_minutes` from the policy; processes that use the policy validate it at
    start, so a file that does not load here falls back to the default rather than failing twice."""
    from syncer.policy import ReconcilePolicy, load_policy

    try:
        return load_policy(settings.config).reconcile.interval_minutes
    except ConfigError:
        return ReconcilePolicy().interval_minutes


def _transport_options(broker_url: str) -> dict[str, Any]:
    if broker_url.startswith(("redis://", "rediss://")):
        # A worker asks for its queues in one BRPOP, which answers from the first key in its list
        # that holds a message. kombu's default `round_robin` order moves the queue just served to
        # the end, so a status change would wait up to every other fetch behind the storm's creates;
        # `priority` keeps the order the worker consumes them in (`lanes.CONSUMED`: status first),
        # so whenever a thread is free the status lane is served first (kombu's Redis transport
        # options, "queue_order_strategy": docs.celeryq.dev/projects/kombu/en/stable/reference/
        # kombu.transport.redis.html; Celery's "Using Redis" guide). Creates wait only while status
        # changes are queued, which are few even in a release that resolves many issues at once.
        return {"socket_connect_timeout": 2, "socket_timeout": 5, "visibility_timeout": 3600,
                "queue_order_strategy": "priority"}
    return {}  # the embedded (SQLAlchemy) broker of `syncer dev` takes no socket options


@app.task(name="syncer.process_delivery", bind=True, max_retries=None)  # type: ignore[untyped-decorator]
def process_delivery(self: Task, delivery_id: int) -> str:
    from syncer.sync.deliveries import process  # heavy imports only in the worker

    rt = _runtime()
    try:
        with lanes.handling(_lane(self)):
            step = process(rt, delivery_id)
    except Exception as exc:
        if not _database_down(exc):
            raise
        # The database is out of reach: the delivery is safe in it, untouched or postponed. Back off
        # and try again (the sweeper would hand it out too, once the database answers). No limit
        # here: the delivery's own tries are counted in its row, where the policy's limit applies.
        wait = delivery_policy(rt.settings).wait(self.request.retries + 1)
        log.warning("delivery %s: database unavailable (%s); retrying in %.1fs",
                    delivery_id, type(exc).__name__, wait)
        raise self.retry(countdown=wait, max_retries=None) from None
    if step.retry_in is not None:
        raise self.retry(countdown=step.retry_in, max_retries=None)
    return step.state


@app.task(name="syncer.process_deliveries")  # type: ignore[untyped-decorator]
def process_deliveries(delivery_ids: list[int]) -> list[str]:
    """Several deliveries in one message, one after the other in this thread: what the web tier
    publishes under load (see `publish_batch`). A message costs the worker about 1 ms of CPU on its
    own (kombu's BRPOP, and acks_late's bookkeeping in Redis on receipt and on ack; bench/e2e.py),
    as much as a tenth of a ticket; one message for a few deliveries pays it once. In order, too:
    an issue's `created` and `resolved` that arrive together are handled in that order.

    A delivery that must wait (backoff, the database out of reach) goes back to the queue as a
    message of its own, so the rest do not wait with it; a redelivered batch skips what is done.

    A default-lane batch gives way to the status lane: in a storm every thread holds a batch whose
    creates each wait seconds for their turns at the rate limit, so a status change would wait for a
    whole batch to end before any thread took it. When one is waiting in the broker, the deliveries
    not yet started go back to the default queue in one message, and the thread takes the status
    change (queues are served status first)."""
    from syncer.sync.deliveries import StepState, process

    rt = _runtime()
    lane = _lane(process_deliveries)  # a message's deliveries share its lane (`publish_batch`)
    states: list[str] = []
    for n, delivery_id in enumerate(delivery_ids):
        if _shutting_down.is_set():
            _hand_back(delivery_ids[n:], lane)
            states += [StepState.RETRY] * (len(delivery_ids) - n)
            break
        if n and lane is Lane.DEFAULT and _status_waiting():
            _give_way(delivery_ids[n:])
            states += [StepState.RETRY] * (len(delivery_ids) - n)
            break
        try:
            with lanes.handling(lane):
                step = process(rt, delivery_id)
        except Exception as exc:
            if not _database_down(exc):
                raise
            # Its first re-delivery: the message of its own counts its retries from here.
            wait = delivery_policy(rt.settings).wait(1)
            log.warning("delivery %s: database unavailable (%s); retrying in %.1fs",
                        delivery_id, type(exc).__name__, wait)
            _later(delivery_id, wait, lane)
            states.append(StepState.RETRY)
            continue
        if step.retry_in is not None:
            _later(delivery_id, step.retry_in, lane)
        states.append(step.state)
    return states


def _lane(task: Task) -> Lane:
    """The lane of the message `task` is running: the queue it was published to."""
    info = getattr(task.request, "delivery_info", None) or {}
    return lanes.lane_of_queue(info.get("routing_key"))


def _file_what_waits(rt: Runtime) -> None:
    from syncer.sync import gathering

    if rt.redis is None or rt.file_gathered is None:
        return
    try:
        if gathering.waiting(rt) and not rt.redis.exists(locks.filer_lock_key(gathering.jira_host(rt))):
            rt.file_gathered()
    except Exception as exc:  # Redis out of reach: the sweep below still hands deliveries out
        log.warning("sweep: could not look for gathered deliveries (%s)", type(exc).__name__)


def _hand_back(delivery_ids: Sequence[int], lane: Lane) -> None:
    """Deliveries this worker will not start, because it is stopping: each as a message of its
    own for the other workers (the broker still takes them during a warm shutdown; if it does not,
    the sweeper hands them out)."""
    log.info("worker stopping: handing back %s deliveries not started", len(delivery_ids),
             deliveries=list(delivery_ids))
    for delivery_id in delivery_ids:
        _later(delivery_id, 0, lane)


# How often one worker process looks in the broker for a waiting status change between a batch's
# deliveries: a look is a broker round trip and a pooled connection, dearer than a ticket's own
# bookkeeping when every delivery pays it; one thread's look a moment is enough to give way.
STATUS_LOOK_EVERY_SECONDS = 0.25
_status_looked_at = [0.0]
_status_look = threading.Lock()


def _status_waiting() -> bool:
    """Whether a status change waits in the broker for a thread (looked at by one thread of this
    process at most every `STATUS_LOOK_EVERY_SECONDS`; the others say no in between). A broker that
    cannot say (down, a queue never declared) says no: the batch goes on as it would have."""
    now = time.monotonic()
    with _status_look:
        if now - _status_looked_at[0] < STATUS_LOOK_EVERY_SECONDS:
            return False
        _status_looked_at[0] = now
    try:
        with app.pool.acquire(block=True, timeout=2) as connection:
            # A passive declare is kombu's count of a queue's messages, on every transport; it
            # refuses a queue with no key at all (Redis drops an empty list): none waiting.
            return bool(connection.default_channel.queue_declare(
                queue=lanes.queue_for(Lane.STATUS), passive=True).message_count)
    except Exception:  # a look that fails must never stop the batch
        return False


def _give_way(delivery_ids: Sequence[int]) -> None:
    """The rest of a default-lane batch, back in the default queue as one message, so that this thread
    takes the status change waiting. If the broker does not take it, the rows stay queued and the
    sweeper hands them out, as after any failed publish."""
    log.info("a status change is waiting: handing back %s deliveries not started", len(delivery_ids),
             deliveries=list(delivery_ids))
    try:
        publish_batch(delivery_ids, Lane.DEFAULT)
    except Exception as exc:  # the sweeper covers an unpublished row
        log.warning("could not hand back %s deliveries (%s); the sweeper will", len(delivery_ids),
                    type(exc).__name__)


def _database_down(exc: Exception) -> bool:
    """What escapes `process` is the database's (it handles everything else): retried when the
    database is out of reach (`errors.FAILURES`), left to fail the task otherwise."""
    return isinstance(classify_failure(exc), TransientError)


def _later(delivery_id: int, countdown: float, lane: Lane) -> None:
    """Its own message in its lane, due in `countdown` s. If the broker cannot take it, the row waits
    in the inbox and the sweeper hands it out (it is queued or processing, and overdue soon)."""
    try:
        process_delivery.apply_async((delivery_id,), countdown=countdown, retry=False,
                                     queue=lanes.queue_for(lane))
    except Exception as exc:
        log.warning("delivery %s: could not schedule its retry (%s); the sweeper will",
                    delivery_id, type(exc).__name__)


@app.task(name="syncer.file_gathered")  # type: ignore[untyped-decorator]
def file_gathered() -> int:
    """File the new issues gathered during a storm in bulk (`syncer.sync.filing`): one filer per
    Jira host; this one does nothing when another is running. A stopping worker starts no batch."""
    from syncer.sync import filing

    rt = _runtime()
    with lanes.handling(Lane.DEFAULT):
        return filing.run(rt, stopping=_shutting_down.is_set,
                          later=lambda delivery_id, wait: _later(delivery_id, wait, Lane.DEFAULT))


def start_filer() -> None:
    """Queue a filer run. If the broker cannot take it, the gathered deliveries wait for the next
    sweep (which starts one) or, failing that, for the sweeper to hand them out again."""
    try:
        file_gathered.apply_async(retry=False)
    except Exception as exc:
        log.warning("could not start the bulk filer (%s); the sweep will", type(exc).__name__)


@app.task(name="syncer.sweep_inbox")  # type: ignore[untyped-decorator]
def sweep_inbox() -> int:
    """Hand out again what was stored but not finished in time (broker down, worker killed), and
    start a bulk filer for what is gathered when none is running (its worker stopped)."""
    rt = _runtime()
    _file_what_waits(rt)
    ids = deliveries.overdue(rt.engine, grace=timedelta(seconds=rt.settings.sweep_after_seconds))
    sent = enqueue_many(rt.engine, ids)
    if ids:
        log.info("sweeper re-enqueued %s of %s overdue deliveries", sent, len(ids))
    return sent


@app.task(name="syncer.prune_deliveries")  # type: ignore[untyped-decorator]
def prune_deliveries() -> int:
    """Finished deliveries are kept for the retention period (for `links show` and audits), then go."""
    rt = _runtime()
    return deliveries.prune(rt.engine, older_than=timedelta(days=rt.settings.delivery_retention_days))


@app.task(name="syncer.reconcile")  # type: ignore[untyped-decorator]
def reconcile() -> str:
    """Repair drift, backfill missed tickets and sweep (`syncer.sync.reconcile`). One run at a time
    in the deployment: a run that finds another holding the lock does nothing."""
    from syncer.sync import reconcile as reconciliation

    rt = _runtime()
    try:
        report = reconciliation.run(rt, enqueue=in_its_lane(rt.engine), keep_rows=100)
    except Busy as exc:
        log.info("reconcile: %s", exc)
        return "busy"
    return "ok" if report.ok else "failed"


@app.task(name="syncer.link_by_hand")  # type: ignore[untyped-decorator]
def link_by_hand(sentry_issue_id: str, jira_key: str, cause: str) -> str:
    """`syncer links link`, asked for in the console (whose web tier runs no sync code). A refusal
    (already linked, no such ticket) is logged and not retried: the person sees the link, or not."""
    from syncer.sync import links

    try:
        link = links.link_by_hand(_runtime(), sentry_issue_id, jira_key, cause=cause)
    except PermanentError as exc:
        log.warning("link by hand (%s) refused: %s", cause, exc)
        return f"refused: {exc}"
    except SyncerError as exc:  # an outage: the person tries again, as with `syncer links link`
        log.warning("link by hand (%s) failed: %s", cause, exc)
        return f"failed: {exc}"
    return f"linked {link.sentry_issue_id} to {link.jira_key}"


def queue_link(sentry_issue_id: str, jira_key: str, cause: str) -> None:
    """Queue a link by hand (the console's form); raises when the broker cannot take it."""
    link_by_hand.apply_async((sentry_issue_id, jira_key, cause), retry=False)


def start_reconcile() -> None:
    """Queue one reconcile run (the console's button); raises when the broker cannot take it."""
    reconcile.apply_async(retry=False)


def enqueue(delivery_id: int, lane: Lane = Lane.DEFAULT, /) -> None:
    """Publish one delivery to its lane's queue; raises when the broker cannot take it (the caller
    decides)."""
    process_delivery.apply_async((delivery_id,), retry=False, queue=lanes.queue_for(lane))


def in_its_lane(engine: Engine) -> Callable[[int], None]:
    """An enqueue for stored deliveries whose lane nobody has at hand (the sweep, a dead letter
    retried): each goes to the lane its stored row says (`lanes.of_stored`)."""

    def publish(delivery_id: int) -> None:
        kind = deliveries.kinds(engine, [delivery_id]).get(delivery_id)
        enqueue(delivery_id, lanes.of_stored(kind.source, kind.resource, kind.action, kind.payload)
                if kind else Lane.DEFAULT)

    return publish


# Deliveries per message when the web tier has several to publish at once (`process_deliveries`):
# enough to pay a message's cost once for several tickets, few enough that a burst still spreads
# over every worker thread (1,000 webhooks at once: 125 messages for 48-96 threads).
MESSAGE_BATCH = 8


def publish_batch(ids: Sequence[int], lane: Lane = Lane.DEFAULT, /, target: Celery | None = None) -> None:
    """Publish many `process_delivery` messages over one producer, in one Redis pipeline where kombu
    offers it (5.7+). Raises like `enqueue`; then some of `ids` may have been published, and the
    sweeper hands out the rest.

    The messages are Celery's task protocol v2, the format Celery documents for producers written
    without Celery ("Message Protocol" in its internals guide), built here directly rather than by
    `send_task`/`apply_async` over the same producer: those spend several times kombu's own publish
    on options this task never uses, and the web process is CPU-bound in a burst that must be
    answered within Sentry's webhook deadline (docs/benchmarks.md). Real workers consume these
    messages in the end-to-end tests (`syncer web` publishes through here; tests/test_tickets.py
    for a batch)."""
    own = target or app
    origin = anon_nodename()
    queue = lanes.queue_for(lane)
    with own.producer_or_acquire() as producer:
        batch = producer.batch(max_size=1000) if hasattr(producer, "batch") else contextlib.nullcontext()
        with batch:
            for start in range(0, len(ids), MESSAGE_BATCH):
                chunk = list(ids[start:start + MESSAGE_BATCH])
                # One id: the task as the sweeper and retries send it; several: one message for all.
                task, args = (("syncer.process_delivery", chunk) if len(chunk) == 1
                              else ("syncer.process_deliveries", [chunk]))
                task_id = str(uuid.uuid4())
                headers = {
                    "lang": "py", "task": task, "id": task_id, "root_id": task_id,
                    "parent_id": None, "group": None, "group_index": None, "shadow": None, "eta": None,
                    "expires": None, "retries": 0, "timelimit": [None, None],
                    "argsrepr": repr(tuple(args)), "kwargsrepr": "{}", "origin": origin,
                    "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
                }
                embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
                producer.publish([args, {}, embed], exchange="", routing_key=queue, headers=headers,
                                 correlation_id=task_id, serializer="json", delivery_mode=2, retry=False)


def publisher(settings: Settings) -> Callable[[int, Lane], None]:
    """An enqueue function on a Celery app of its own (another broker than the global app's)."""
    own = configure(settings, Celery("syncer-publisher"))

    def publish(delivery_id: int, lane: Lane = Lane.DEFAULT, /) -> None:
        own.send_task("syncer.process_delivery", (delivery_id,), retry=False, queue=lanes.queue_for(lane))

    return publish


def enqueue_many(engine: Engine, ids: list[int], publish: Callable[[int, Lane], None] = enqueue) -> int:
    """The sweeper's: each delivery to its own lane, as its stored row says, status changes first."""
    found = deliveries.kinds(engine, ids)
    lane_of = {i: lanes.of_stored(k.source, k.resource, k.action, k.payload) for i, k in found.items()}
    ids = sorted(ids, key=lambda i: lane_of.get(i) is not Lane.STATUS)  # stable: due order kept
    sent: list[int] = []
    for delivery_id in ids:
        try:
            publish(delivery_id, lane_of.get(delivery_id, Lane.DEFAULT))
        except Exception as exc:
            log.warning("could not enqueue delivery %s: %s", delivery_id, type(exc).__name__)
            break
        sent.append(delivery_id)
    if sent:
        deliveries.touch(engine, sent)
    return len(sent)


def broker_check() -> None:
    """Raise unless the broker accepts a connection within a couple of seconds."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
