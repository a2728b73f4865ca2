"""The inbox: deliveries stored before they are answered, claimed by one worker at a time,
finished, retried later, or moved to the dead letters. Every state change is one conditional
UPDATE, so two workers handed the same delivery (a redelivery, a sweep) cannot both process it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from syncer.db.models import DeadLetter, Delivery, DeliveryState, utcnow
from syncer.db.session import session_scope


@dataclass(frozen=True)
class Stored:
    delivery_id: int
    duplicate: bool


def storable(text: str, limit: int) -> str:
    """`text` cut to `limit` and made fit for any text column. JSON can carry what a database
    refuses: a lone surrogate (`"\\ud800"`) is not UTF-8, and PostgreSQL text cannot hold NUL."""
    text = text[:limit]
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def store(engine: Engine, *, source: str, key: str, resource: str, action: str, payload: bytes) -> Stored:
    """Record a delivery durably; a second delivery with the same key is recognised, not stored."""
    text = payload.decode("utf-8")
    try:
        with session_scope(engine) as session:
            row = Delivery(
                source=source,
                delivery_key=key,
                resource=storable(resource, 100),
                action=storable(action, 100),
                payload=text,
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            return Stored(row.id, duplicate=False)
    except IntegrityError:
        with Session(engine) as session:
            existing = session.exec(
                select(Delivery.id).where(Delivery.source == source, Delivery.delivery_key == key)
            ).first()
        if existing is None:  # the unique violation was something else
            raise
        return Stored(existing, duplicate=True)


@dataclass(frozen=True)
class Incoming:
    source: str
    key: str
    resource: str
    action: str
    payload: bytes
    # Non-empty: nothing will be done with it (no handler); stored as ignored with this outcome.
    ignored: str = ""


def store_many(engine: Engine, deliveries: Sequence[Incoming]) -> list[Stored]:
    """Record several deliveries in ONE transaction (the web tier's group commit): each row is stored
    or recognised as a duplicate, and all of them are durable once this returns. Raises (storing
    nothing) when the database fails.

    One transaction per batch instead of per request is what lets one web process keep up: on SQLite
    a commit is the file's single write lock, on PostgreSQL a WAL flush."""
    dialect = engine.dialect.name
    if dialect not in _UPSERTS:  # pragma: no cover - syncer supports SQLite and PostgreSQL
        return [store(engine, source=d.source, key=d.key, resource=d.resource, action=d.action,
                      payload=d.payload) for d in deliveries]
    insert_new, find_existing = _UPSERTS[dialect]
    now = utcnow()
    rows = [{
        "source": d.source, "delivery_key": d.key, "resource": storable(d.resource, 100),
        "action": storable(d.action, 100), "payload": d.payload.decode("utf-8"), "received_at": now,
        "due_at": now, "state": DeliveryState.IGNORED if d.ignored else DeliveryState.RECEIVED,
        "attempts": 0, "outcome": storable(d.ignored, 500), "finished_at": now if d.ignored else None,
    } for d in deliveries]
    stored: list[Stored] = []
    with engine.begin() as connection:
        # Row by row on one connection: SQLAlchemy's multi-row INSERT (insertmanyvalues) measured 5 %
        # slower here at the batch sizes intake sees (about 13 rows).
        for d, row in zip(deliveries, rows, strict=True):
            new_id = connection.execute(insert_new, row).scalar()
            if new_id is not None:
                stored.append(Stored(int(new_id), duplicate=False))
                continue
            existing = connection.execute(find_existing, {"source": d.source, "key": d.key}).scalar()
            if existing is None:  # pragma: no cover - the conflict target is the only unique key
                raise RuntimeError(f"delivery {d.source}/{d.key} conflicted but cannot be found")
            stored.append(Stored(int(existing), duplicate=True))
    return stored


def _upserts() -> dict[str, tuple[Any, Any]]:
    """Statements built once (SQLAlchemy caches their compiled form): insert unless the (source,
    key) pair exists, returning the new id; and the id of the one that exists."""
    from sqlalchemy import bindparam
    from sqlalchemy.dialects import postgresql, sqlite

    table: Any = Delivery.__table__  # type: ignore[attr-defined]
    find = select(table.c.id).where(
        table.c.source == bindparam("source"), table.c.delivery_key == bindparam("key")
    )
    out: dict[str, tuple[Any, Any]] = {}
    for name, insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert)):
        statement = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["source", "delivery_key"])
            .returning(table.c.id)
        )
        out[name] = (statement, find)
    return out


_UPSERTS = _upserts()


def claim(engine: Engine, delivery_id: int, *, lease: timedelta, now: datetime | None = None) -> bool:
    """Take a delivery for processing. False when it is finished or another worker holds it."""
    now = now or utcnow()
    with engine.begin() as connection:
        result = connection.execute(_CLAIM, {"b_id": delivery_id, "b_now": now, "b_stale": now - lease})
        return bool(result.rowcount)


# Every delivery passes claim() and finish(): statements built once, run on a plain connection
# (a fifth of the CPU of building them anew on an ORM session each time; bench/e2e.py).
_CLAIM = (
    update(Delivery)
    .where(
        col(Delivery.id) == bindparam("b_id"),
        or_(
            col(Delivery.state).in_([DeliveryState.RECEIVED, DeliveryState.QUEUED]),
            # A holder that has been silent past its lease is presumed dead (kill -9).
            and_(
                col(Delivery.state) == DeliveryState.PROCESSING,
                col(Delivery.started_at) < bindparam("b_stale"),
            ),
        ),
    )
    .values(
        state=DeliveryState.PROCESSING, started_at=bindparam("b_now"), attempts=col(Delivery.attempts) + 1
    )
)
_FINISH = (
    update(Delivery)
    .where(col(Delivery.id) == bindparam("b_id"))
    .values(state=bindparam("b_state"), outcome=bindparam("b_outcome"), finished_at=bindparam("b_now"),
            last_error=None)
)


def load(engine: Engine, delivery_id: int) -> Delivery | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(Delivery, delivery_id)


def finish(engine: Engine, delivery_id: int, *, ignored: bool, outcome: str) -> None:
    with engine.begin() as connection:
        connection.execute(_FINISH, {
            "b_id": delivery_id, "b_state": DeliveryState.IGNORED if ignored else DeliveryState.DONE,
            "b_outcome": storable(outcome, 500), "b_now": utcnow(),
        })


def postpone(engine: Engine, delivery_id: int, *, until: datetime, error: str) -> None:
    """A transient failure: back to the queue, due again at `until` (the sweeper respects that)."""
    with session_scope(engine) as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(
                state=DeliveryState.QUEUED, due_at=until, last_error=storable(error, 2000), started_at=None
            )
        )


def bury(engine: Engine, delivery_id: int, *, error: str, subject: str = "") -> int:
    """Retries exhausted or the failure is permanent: a dead letter keeps the error and payload."""
    with session_scope(engine) as session:
        row = session.get(Delivery, delivery_id)
        payload = row.payload if row else ""
        session.execute(
            update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(state=DeliveryState.DEAD, last_error=storable(error, 2000), finished_at=utcnow())
        )
        letter = DeadLetter(
            delivery_id=delivery_id,
            kind="delivery",
            subject=storable(subject, 200),
            error=storable(error, 4000),
            payload=payload,
        )
        session.add(letter)
        session.flush()
        assert letter.id is not None
        return letter.id


def mark_queued(engine: Engine, ids: Sequence[int], *, now: datetime | None = None) -> None:
    now = now or utcnow()
    with session_scope(engine) as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(list(ids)), col(Delivery.state) == DeliveryState.RECEIVED)
            .values(state=DeliveryState.QUEUED, due_at=now)
        )


def overdue(engine: Engine, *, grace: timedelta, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries a worker should have finished by now: never enqueued (broker down), lost with a
    dead worker, or whose retry countdown has passed without a worker taking them."""
    now = now or utcnow()
    with Session(engine) as session:
        rows = session.exec(
            select(Delivery.id)
            .where(
                or_(
                    and_(
                        col(Delivery.state).in_([DeliveryState.RECEIVED, DeliveryState.QUEUED]),
                        col(Delivery.due_at) < now - grace,
                    ),
                    and_(
                        col(Delivery.state) == DeliveryState.PROCESSING,
                        col(Delivery.started_at) < now - grace,
                    ),
                )
            )
            .order_by(col(Delivery.due_at))
            .limit(limit)
        ).all()
    return [row for row in rows if row is not None]


def touch(engine: Engine, ids: Sequence[int], *, now: datetime | None = None) -> None:
    """Re-enqueued by the sweeper: due again from now, so it is not swept twice in a row."""
    now = now or utcnow()
    with session_scope(engine) as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(list(ids)), col(Delivery.state) != DeliveryState.PROCESSING)
            .values(due_at=now)
        )


def payload_of(row: Delivery) -> Any:
    return json.loads(row.payload)


def prune(engine: Engine, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Forget finished deliveries past the retention period (dead ones stay with their letters)."""
    now = now or utcnow()
    with session_scope(engine) as session:
        result = session.execute(
            delete(Delivery).where(
                col(Delivery.state).in_([DeliveryState.DONE, DeliveryState.IGNORED]),
                col(Delivery.finished_at) < now - older_than,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
