"""Sentry installations: the uuid each Sentry webhook carries, remembered beyond the inbox's
retention, so that reconcile can still make external-issue links when no recent delivery names one.

`seen` is called for every Sentry delivery a worker processes, yet writes only when this process
has not recorded that uuid lately (a new installation, or an hour since): the ticket path keeps
its transactions.
"""

from __future__ import annotations

import re
import time
import weakref
from datetime import datetime
from typing import Any

from sqlalchemy import select
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


def latest(engine: Engine) -> str | None:
    """The installation a webhook named most recently, or None when none was ever recorded."""
    with reading(engine) as connection:
        found = connection.execute(_LATEST).scalar()
    return str(found) if found else None


_installations: Any = Installation.__table__  # type: ignore[attr-defined]
_LATEST = select(_installations.c.uuid).order_by(_installations.c.seen_at.desc()).limit(1)


def _upsert(insert: Any) -> Any:
    statement = insert(_installations)
    return statement.on_conflict_do_update(
        index_elements=["uuid"], set_={"seen_at": statement.excluded.seen_at}
    )


_UPSERTS = {"sqlite": _upsert(sqlite.insert), "postgresql": _upsert(postgresql.insert)}
