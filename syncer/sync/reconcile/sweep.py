"""The sweep: inbox deliveries stored but never processed are handed to the broker again, and dead
letters older than `reconcile.dead_letter_retry_after_hours` are retried, at most
`reconcile.dead_letter_retry_cap` of them a run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from syncer.runtime import Runtime
from syncer.store import deadletters, deliveries
from syncer.sync.reconcile.report import Report

# A delivery that died this many times is left to a person (`syncer dead-letters`).
AUTO_RETRIES_PER_DELIVERY = 2

Enqueue = Callable[[int], None]


def sweep(rt: Runtime, report: Report, *, now: datetime, enqueue: Enqueue | None) -> None:
    swept = report.sweep
    overdue = deliveries.overdue(rt.engine, grace=timedelta(seconds=rt.settings.sweep_after_seconds), now=now)
    swept.overdue = len(overdue)
    policy = rt.policy.reconcile
    letters = (
        deadletters.due_for_retry(
            rt.engine,
            before=now - timedelta(hours=policy.dead_letter_retry_after_hours),
            cap=policy.dead_letter_retry_cap,
            max_deaths=AUTO_RETRIES_PER_DELIVERY,
        )
        if policy.dead_letter_retry_after_hours
        else []
    )
    swept.dead_letters = len(letters)
    if report.dry_run or not (overdue or letters):
        return
    if enqueue is None:
        swept.note = "no broker to hand deliveries to; the beat's sweeper does it"
        return
    sent: list[int] = []
    for delivery_id in overdue:
        try:
            enqueue(delivery_id)
        except Exception as exc:  # the broker is down: the rows stay due, the sweeper retries them
            swept.note = f"the broker refused a delivery ({type(exc).__name__}); the rest stay due"
            break
        sent.append(delivery_id)
    if sent:
        deliveries.touch(rt.engine, sent)
    swept.requeued = len(sent)
    for letter_id in letters:
        try:
            deadletters.retry(rt.engine, letter_id, enqueue)
        except LookupError:  # retried or dropped by a person meanwhile
            continue
        swept.retried += 1
