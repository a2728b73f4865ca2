"""Processing one inbox delivery: claim it, handle it, and record what came of it.

Transient failures come back later (backoff, jitter, cap, Retry-After honoured) until the retry
window since the delivery was stored has passed; a wait for our own rate limit's turn comes back
then without counting as an attempt. Permanent failures and deliveries past the window become dead
letters. Nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from syncer import logs
from syncer.errors import Busy, PermanentError, SyncerError, Throttled, TransientError, classify_failure
from syncer.metrics import Metric
from syncer.retry import GiveUp, delivery_policy
from syncer.runtime import Runtime
from syncer.store import deliveries
from syncer.store.schema import utcnow
from syncer.sync import dispatch, gathering
from syncer.sync.outcome import Outcome

log = logs.get_logger(__name__)


class StepState(StrEnum):
    """What came of one try at a delivery (the task's result)."""

    SKIPPED = "skipped"  # finished already, or another worker holds it
    DONE = "done"
    IGNORED = "ignored"
    RETRY = "retry"  # postponed: due again after a backoff
    DEAD = "dead"  # a dead letter now
    GATHERED = "gathered"  # left for a bulk create (`syncer.sync.gathering`): the filer finishes it


@dataclass(frozen=True)
class Step:
    """What the task should do next: nothing, or run again in `retry_in` seconds."""

    state: StepState
    retry_in: float | None = None
    note: str = ""


def process(rt: Runtime, delivery_id: int) -> Step:
    # Every line logged while this delivery is handled carries its id and cause; dispatch adds the
    # Sentry issue or Jira key once the body is parsed (the web tier logged the same delivery_id).
    with logs.bound(delivery_id=delivery_id, cause=f"delivery:{delivery_id}"):
        return _process(rt, delivery_id)


def _process(rt: Runtime, delivery_id: int) -> Step:
    settings = rt.settings
    lease = timedelta(seconds=settings.sweep_after_seconds)
    delivery = deliveries.take(rt.engine, delivery_id, lease=lease)
    if delivery is None:
        return Step(StepState.SKIPPED, note="finished already, or another worker holds it")
    try:
        outcome = dispatch.handle(rt, delivery)
    except Exception as exc:
        return failed(rt, delivery, exc)
    return finished(rt, delivery, outcome)


def failed(rt: Runtime, delivery: deliveries.Taken, exc: Exception) -> Step:
    """What handling `delivery` raised, recorded: due again (queued or backed off) or a dead letter."""
    # Ours as raised; the database or Redis out of reach as `errors.FAILURES` maps them.
    failure = exc if isinstance(exc, SyncerError) else classify_failure(exc)
    if isinstance(failure, Throttled | Busy):
        return _queued(rt, delivery, _describe(exc), failure.retry_after or 0.0)
    if isinstance(failure, TransientError):
        return _later(rt, delivery, _describe(exc), failure.retry_after)
    if not isinstance(failure, PermanentError):
        # None of ours: a bug, or a shape nobody foresaw. Left to escape, it would leave the row
        # "processing" for the sweeper to hand out again and again; instead it is retried like
        # a transient failure and, if it keeps failing, becomes a dead letter a person can see.
        log.exception("delivery %s: unexpected %s", delivery.id, type(exc).__name__)
        return _later(rt, delivery, f"unexpected {_describe(exc)}", None)
    error = _describe(exc)
    deliveries.bury(rt.engine, delivery.id, error=error, subject=dispatch.subject(delivery))
    rt.counters.incr(Metric.DEAD_LETTERS_TOTAL, source=delivery.source, reason="permanent")
    log.error("delivery %s dead: %s", delivery.id, error, state=StepState.DEAD)
    return Step(StepState.DEAD, note=error)


def finished(rt: Runtime, delivery: deliveries.Taken, outcome: Outcome) -> Step:
    """What came of `delivery`, recorded; or, gathered, left for the bulk filer."""
    if outcome.gathered:
        gathering.gather(rt, delivery.id, outcome.note)
        log.info("delivery %s gathered: %s", delivery.id, outcome.note, state=StepState.GATHERED)
        return Step(StepState.GATHERED, note=outcome.note)
    deliveries.finish(rt.engine, delivery.id, ignored=outcome.ignored, outcome=outcome.note)
    state = StepState.IGNORED if outcome.ignored else StepState.DONE
    log.info("delivery %s %s: %s", delivery.id, state, outcome.note, state=state)
    return Step(state, note=outcome.note)


def _later(rt: Runtime, delivery: deliveries.Taken, error: str, retry_after: float | None) -> Step:
    """A failure worth another try: back off (never sooner than the server asked), or give up."""
    policy = delivery_policy(rt.settings)
    elapsed = _elapsed(delivery)
    reason = policy.give_up(delivery.attempts, elapsed)
    if reason is not None:
        return _give_up(rt, delivery, error, reason, elapsed)
    wait = policy.wait_within(delivery.attempts, elapsed, retry_after)
    deliveries.postpone(rt.engine, delivery.id, until=utcnow() + timedelta(seconds=wait), error=error)
    rt.counters.incr(Metric.DELIVERY_RETRIES, source=delivery.source)
    log.warning("delivery %s: %s; retrying in %.1fs", delivery.id, error, wait, state=StepState.RETRY)
    return Step(StepState.RETRY, retry_in=wait, note=error)


def _queued(rt: Runtime, delivery: deliveries.Taken, error: str, turn_in: float) -> Step:
    """Our own rate limit's next turn is too far off to wait for in this thread, or another worker
    holds the issue (its lock or its claim) right now: due again then, the attempt given back (a
    throttled backlog, like a turn behind another worker, is a queue, not a failure, and must not
    back off as failures do: deliveries racing for one issue would wait minutes after it is done),
    unless past the window."""
    policy = delivery_policy(rt.settings)
    elapsed = _elapsed(delivery)
    attempts = delivery.attempts - 1  # this one does not count
    if policy.window is not None and elapsed >= policy.window:
        return _give_up(rt, delivery, error, GiveUp.WINDOW, elapsed, attempts=attempts)
    wait = policy.queued(turn_in, elapsed)
    deliveries.postpone(rt.engine, delivery.id, until=utcnow() + timedelta(seconds=wait), error=error,
                        counted=False)
    log.info("delivery %s: %s; queued for %.1fs", delivery.id, error, wait)
    return Step(StepState.RETRY, retry_in=wait, note=error)


def _give_up(rt: Runtime, delivery: deliveries.Taken, error: str, reason: GiveUp, elapsed: float,
             *, attempts: int | None = None) -> Step:
    attempts = delivery.attempts if attempts is None else attempts
    limit = (f"SYNCER_RETRY_WINDOW_SECONDS={rt.settings.retry_window_seconds:g}" if reason is GiveUp.WINDOW
             else f"SYNCER_TASK_MAX_RETRIES={rt.settings.task_max_retries}")
    why = f"gave up after {attempts} attempts over {elapsed / 3600:.3g} hours ({limit})"
    deliveries.bury(rt.engine, delivery.id, error=f"{why}: {error}", subject=dispatch.subject(delivery))
    rt.counters.incr(Metric.DEAD_LETTERS_TOTAL, source=delivery.source, reason=reason.value)
    log.error("delivery %s dead, %s: %s", delivery.id, why, error, state=StepState.DEAD)
    return Step(StepState.DEAD, note=error)


def _elapsed(delivery: deliveries.Taken) -> float:
    """Seconds since the delivery was stored: how much of its retry window is gone."""
    return max(0.0, (utcnow() - delivery.received_at).total_seconds())


def _describe(exc: BaseException) -> str:
    # Our own errors are written to hold no secrets; driver errors may quote SQL, never credentials.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:1000]
