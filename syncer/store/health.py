"""What the web process asks the database about its own health: whether it answers (`/readyz`),
how many rows are in each state (`/metrics`' gauges, true across every process), and the inbox as
the console's overview shows it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped
from sqlmodel import col

from syncer.store.engine import reading
from syncer.store.schema import DeadLetter, Delivery, DeliveryState, Link, LinkState

_PING = text("SELECT 1")
_UNREACHABLE = select(func.count()).select_from(Link).where(
    col(Link.state) == LinkState.ACTIVE, col(Link.unreachable_since).is_not(None)
)


def ping(engine: Engine) -> None:
    """Raise unless the database answers a query."""
    with engine.connect() as connection:
        connection.execute(_PING)


@dataclass(frozen=True)
class StateCounts:
    """Rows by state: {state: count}, only the states that have rows."""

    deliveries: dict[str, int]
    links: dict[str, int]
    dead_letters: dict[str, int]
    unreachable_links: int = 0  # active links whose ticket answers 404 (`links.unreachable_since`)
    oldest_unfinished: datetime | None = None  # when the oldest delivery not yet finished arrived


def state_counts(engine: Engine) -> StateCounts:
    with engine.connect() as connection:
        return StateCounts(
            deliveries=_by_state(connection, col(Delivery.state)),
            links=_by_state(connection, col(Link.state)),
            dead_letters=_by_state(connection, col(DeadLetter.state)),
            unreachable_links=int(connection.execute(_UNREACHABLE).scalar_one()),
            oldest_unfinished=connection.execute(_OLDEST_UNFINISHED).scalar_one(),
        )


def _by_state(connection: Connection, state: Mapped[str]) -> dict[str, int]:
    rows = connection.execute(select(state, func.count()).group_by(state)).all()
    return {str(row[0]): int(row[1]) for row in rows}


@dataclass(frozen=True)
class Inbox:
    """What the console's overview says of the inbox: deliveries waiting for a worker (stored or
    queued), being processed, and when the oldest unfinished one arrived."""

    waiting: int
    processing: int
    oldest_received_at: datetime | None


_WAITING = select(func.count()).select_from(Delivery).where(
    col(Delivery.state).in_([DeliveryState.RECEIVED, DeliveryState.QUEUED])
)
_PROCESSING = select(func.count()).select_from(Delivery).where(
    col(Delivery.state) == DeliveryState.PROCESSING
)
# The state index narrows this to the unfinished rows, which are few unless syncer is falling behind.
_OLDEST_UNFINISHED = select(func.min(Delivery.received_at)).where(
    col(Delivery.state).in_(DeliveryState.UNFINISHED)
)


def inbox(engine: Engine) -> Inbox:
    with reading(engine) as connection:
        oldest = connection.execute(_OLDEST_UNFINISHED).scalar_one()
        return Inbox(
            waiting=int(connection.execute(_WAITING).scalar_one()),
            processing=int(connection.execute(_PROCESSING).scalar_one()),
            oldest_received_at=oldest,  # min() keeps the column's type: an aware UTC datetime
        )
