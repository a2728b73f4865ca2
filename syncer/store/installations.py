"""Sentry installations: the uuid each Sentry webhook carries, remembered beyond the inbox's
retention, so that reconcile can still make external-issue links when no recent delivery names one;
and whether Sentry said the installation was deleted.

`seen` is called for every Sentry delivery a worker processes, yet writes only when this process
has not recorded that uuid lately (a new installation, or an hour since): the ticket path keeps
its transactions. `created` and `deleted` record Sentry's `installation.created` / `.deleted`
webhooks; only `created` undoes a deletion, since a late delivery of an older webhook still names
the deleted installation.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from syncer.store.engine import reading
from syncer.store.schema import Installation, utcnow

# How often a process writes again the uuid it keeps seeing: `seen_at` stays roughly current, and a
# table emptied under a running process fills again.
REFRESH_SECONDS = 3600.0

_UUID_LIKE = re.compile(r"[0-9A-Za-z-]{1,100}")  # Sentry's are UUIDs; no path, no control characters

# Per engine: the uuid this process last recorded, and when (monotonic).
_recorded: weakref.WeakKeyDictionary[Engine, tuple[str, float]] = weakref.WeakKeyDictionary()


def seen(engine: Engine, uuid: str, *, now: datetime | None = None) -> bool:
    """A webhook named installation `uuid`: record it, unless this process did so lately or it
    cannot be one (webhook JSON may carry anything; a NUL or a lone surrogate would not even
    store, and must not fail the delivery). True when it was written."""
    if not _UUID_LIKE.fullmatch(uuid):
        return False
    last = _recorded.get(engine)
    moment = time.monotonic()
    if last is not None and last[0] == uuid and moment - last[1] < REFRESH_SECONDS:
        return False
    with engine.begin() as connection:
        connection.execute(_UPSERTS[engine.dialect.name], {"uuid": uuid, "seen_at": now or utcnow()})
    _recorded[engine] = (uuid, moment)
    return True


def created(engine: Engine, uuid: str, *, now: datetime | None = None) -> bool:
    """`installation.created`: the installation exists (again), whatever was recorded before."""
    return _mark(engine, uuid, now or utcnow(), deleted_at=None)


def deleted(engine: Engine, uuid: str, *, now: datetime | None = None) -> bool:
    """`installation.deleted`: external-issue links through it stop (`state`)."""
    moment = now or utcnow()
    return _mark(engine, uuid, moment, deleted_at=moment)


@dataclass(frozen=True)
class State:
    """The installation webhooks named most recently, and when Sentry said it was deleted."""

    uuid: str
    deleted_at: datetime | None = None

    def describe(self) -> str:
        if self.deleted_at is None:
            return f"installation {self.uuid}"
        return (f"installation {self.uuid} deleted at {self.deleted_at:%Y-%m-%d %H:%M:%S} UTC "
                "(installation.deleted): external-issue links are paused until the integration "
                "is installed again")


def state(engine: Engine, uuid: str | None = None) -> State | None:
    """Installation `uuid` as recorded (None when never recorded); without `uuid`, the one a
    webhook named most recently."""
    query = _ONE if uuid else _LATEST
    with reading(engine) as connection:
        row = connection.execute(query, {"uuid": uuid} if uuid else {}).first()
    if row is None:
        return None
    return State(str(row.uuid), row.deleted_at)


def latest(engine: Engine) -> str | None:
    """The installation a webhook named most recently, or None when none was ever recorded."""
    found = state(engine)
    return found.uuid if found else None


def _mark(engine: Engine, uuid: str, moment: datetime, *, deleted_at: datetime | None) -> bool:
    if not _UUID_LIKE.fullmatch(uuid):
        return False
    with engine.begin() as connection:
        connection.execute(_MARKS[engine.dialect.name],
                           {"uuid": uuid, "seen_at": moment, "deleted_at": deleted_at})
    _recorded.pop(engine, None)  # `seen` writes again next time: its row may be the one just changed
    return True


_installations: Any = Installation.__table__  # type: ignore[attr-defined]
_COLUMNS = (_installations.c.uuid, _installations.c.deleted_at)
_LATEST = select(*_COLUMNS).order_by(_installations.c.seen_at.desc()).limit(1)
_ONE = select(*_COLUMNS).where(_installations.c.uuid == bindparam("uuid"))


def _upsert(insert: Any, *, with_deletion: bool) -> Any:
    statement = insert(_installations)
    changes = {"seen_at": statement.excluded.seen_at}
    if with_deletion:
        changes["deleted_at"] = statement.excluded.deleted_at
    return statement.on_conflict_do_update(index_elements=["uuid"], set_=changes)


# `seen` leaves deleted_at as it is: a late webhook of a deleted installation does not undelete it.
_UPSERTS = {"sqlite": _upsert(sqlite.insert, with_deletion=False),
            "postgresql": _upsert(postgresql.insert, with_deletion=False)}
_MARKS = {"sqlite": _upsert(sqlite.insert, with_deletion=True),
          "postgresql": _upsert(postgresql.insert, with_deletion=True)}
