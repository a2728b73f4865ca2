"""Dead letters: failures that exhausted their retries, kept with error and payload until a person
retries or drops them (`syncer dead-letters list|retry|drop`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncer.store.engine import session_scope
from syncer.store.schema import DeadLetter, DeadLetterState, Delivery, DeliveryState, utcnow


def open_letters(engine: Engine, *, limit: int = 100) -> list[DeadLetter]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(DeadLetter)
                .where(DeadLetter.state == DeadLetterState.OPEN.value)
                .order_by(col(DeadLetter.id))
                .limit(limit)
            ).all()
        )


def retry(engine: Engine, letter_id: int, enqueue: Callable[[int], None]) -> int:
    """Put the delivery back into the inbox as new and hand it out; returns the delivery id."""
    with session_scope(engine) as session:
        letter = session.get(DeadLetter, letter_id)
        if letter is None or letter.state != DeadLetterState.OPEN:
            raise LookupError(f"no open dead letter {letter_id}")
        if letter.delivery_id is None:
            raise LookupError(f"dead letter {letter_id} has no delivery to retry")
        session.execute(
            update(Delivery)
            .where(col(Delivery.id) == letter.delivery_id)
            .values(
                state=DeliveryState.RECEIVED, attempts=0, due_at=utcnow(), finished_at=None, started_at=None,
                # As new, with a retry window of its own: one that died past its window must not
                # die again of the first transient failure after a person (or reconcile) retried it.
                received_at=utcnow(),
            )
        )
        letter.state = DeadLetterState.RETRIED.value
        letter.retried_at = utcnow()
        letter.retries += 1
        delivery_id = letter.delivery_id
    try:
        enqueue(delivery_id)
    except Exception:  # noqa: S110 - the row is due now: the sweeper hands it out
        pass
    return delivery_id


def drop(engine: Engine, letter_id: int) -> None:
    with session_scope(engine) as session:
        letter = session.get(DeadLetter, letter_id)
        if letter is None or letter.state != DeadLetterState.OPEN:
            raise LookupError(f"no open dead letter {letter_id}")
        letter.state = DeadLetterState.DROPPED.value


def due_for_retry(engine: Engine, *, before: datetime, cap: int, max_deaths: int) -> list[int]:
    """Open dead letters created before `before`, oldest first, at most `cap`, whose delivery has
    died at most `max_deaths` times (the letters of one delivery are its deaths)."""
    if cap <= 0:
        return []
    deaths = (
        select(DeadLetter.delivery_id, func.count().label("deaths"))
        .group_by(col(DeadLetter.delivery_id))
        .subquery()
    )
    with Session(engine) as session:
        rows = session.exec(
            select(DeadLetter.id)
            .join(deaths, deaths.c.delivery_id == DeadLetter.delivery_id)
            .where(
                DeadLetter.state == DeadLetterState.OPEN.value,
                col(DeadLetter.created_at) < before,
                deaths.c.deaths <= max_deaths,
            )
            .order_by(col(DeadLetter.created_at))
            .limit(cap)
        ).all()
    return [row for row in rows if row is not None]
