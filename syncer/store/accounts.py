"""The account cache: a team e-mail's Jira account (or why there is none), as resolved when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from syncer.store.engine import reading
from syncer.store.schema import AccountCache


@dataclass(frozen=True)
class AccountRecord:
    email: str
    account_id: str | None  # None: the look-up found no single exact match
    reason: str  # why there is no account, or ""
    resolved_at: datetime


def cached(engine: Engine, email: str) -> AccountRecord | None:
    """What the cache holds for `email` (already normalised), however old."""
    with reading(engine) as connection:
        row = connection.execute(_CACHED, {"b_email": email}).mappings().first()
    return None if row is None else AccountRecord(**row)


def remember(engine: Engine, email: str, *, account_id: str | None, reason: str, at: datetime) -> None:
    """Store a look-up's answer, replacing what was cached for `email`."""
    values = {"email": email, "account_id": account_id, "reason": reason[:500], "resolved_at": at}
    with engine.begin() as connection:
        connection.execute(_UPSERTS[engine.dialect.name], values)


def forget(engine: Engine, email: str) -> None:
    """Drop what the cache holds for `email`: Jira refused the account it named (deactivated since,
    or no longer assignable), so the next ticket looks it up afresh."""
    with engine.begin() as connection:
        connection.execute(_FORGET, {"b_email": email})


_account_cache: Any = AccountCache.__table__  # type: ignore[attr-defined]
_CACHED = select(_account_cache).where(_account_cache.c.email == bindparam("b_email"))
_FORGET = delete(_account_cache).where(_account_cache.c.email == bindparam("b_email"))


def _upsert(insert: Any) -> Any:
    statement = insert(_account_cache)
    return statement.on_conflict_do_update(
        index_elements=["email"],
        set_={name: statement.excluded[name] for name in ("account_id", "reason", "resolved_at")},
    )


# An INSERT that replaces on conflict: two processes resolving one e-mail at once both succeed.
_UPSERTS = {"sqlite": _upsert(sqlite.insert), "postgresql": _upsert(postgresql.insert)}
