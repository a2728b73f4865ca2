"""Reconciliation's own row: where the rolling full pass stands (the last link id it checked)
and when the last run whose reads of both sides' changes succeeded started."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from syncer.store.engine import reading
from syncer.store.schema import ReconcileCursor, utcnow

_ROW_ID = 1
_cursor = ReconcileCursor.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Cursor:
    after_link_id: int = 0
    cycle_started_at: datetime | None = None
    changes_read_at: datetime | None = None  # None: no run has read the changes yet


def load(engine: Engine) -> Cursor:
    with reading(engine) as connection:
        row = connection.execute(select(_cursor).where(_cursor.c.id == _ROW_ID)).mappings().first()
    if row is None:
        return Cursor()
    return Cursor(
        after_link_id=row["after_link_id"],
        cycle_started_at=row["cycle_started_at"],
        changes_read_at=row["changes_read_at"],
    )


def save(engine: Engine, cursor: Cursor) -> None:
    values = {
        "after_link_id": cursor.after_link_id,
        "cycle_started_at": cursor.cycle_started_at,
        "changes_read_at": cursor.changes_read_at,
        "updated_at": utcnow(),
    }
    with engine.begin() as connection:
        done = connection.execute(update(_cursor).where(_cursor.c.id == _ROW_ID).values(values))
        if not done.rowcount:
            # One writer at a time: the run lock is held by whoever saves.
            connection.execute(_cursor.insert().values(id=_ROW_ID, **values))
