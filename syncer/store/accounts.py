"""The account cache: a person's Jira account in one project (or why there is none), as resolved when.

Per project, because whether Jira accepts someone as assignee is a project's permission.
"""

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
    project: str
    email: str
    account_id: str | None  # None: no account Jira would accept there
    problem: str  # syncer.jira.client.PROBLEMS when there is no account, else ""
    reason: str  # why there is no account, or ""
    resolved_at: datetime


def cached(engine: Engine, project: str, email: str) -> AccountRecord | None:
    """What the cache holds for `email` (already normalised) in `project`, however old."""
    with reading(engine) as connection:
        row = connection.execute(_CACHED, {"b_project": project, "b_email": email}).mappings().first()
    return None if row is None else AccountRecord(**row)


def remember(engine: Engine, project: str, email: str, *, account_id: str | None, problem: str, reason: str,
             at: datetime) -> None:
    """Store a look-up's answer, replacing what was cached for `email` in `project`."""
    values = {"project": project, "email": email, "account_id": account_id, "problem": problem[:40],
              "reason": reason[:500], "resolved_at": at}
    with engine.begin() as connection:
        connection.execute(_UPSERTS[engine.dialect.name], values)


def forget(engine: Engine, project: str, email: str) -> None:
    """Drop what the cache holds for `email` in `project`: Jira refused the account it named
    (deactivated since, or no longer assignable), so the next ticket looks it up afresh."""
    with engine.begin() as connection:
        connection.execute(_FORGET, {"b_project": project, "b_email": email})


_account_cache: Any = AccountCache.__table__  # type: ignore[attr-defined]
_KEY = (_account_cache.c.project == bindparam("b_project")) & (_account_cache.c.email == bindparam("b_email"))
_CACHED = select(_account_cache).where(_KEY)
_FORGET = delete(_account_cache).where(_KEY)


def _upsert(insert: Any) -> Any:
    statement = insert(_account_cache)
    return statement.on_conflict_do_update(
        index_elements=["project", "email"],
        set_={name: statement.excluded[name] for name in ("account_id", "problem", "reason", "resolved_at")},
    )


# An INSERT that replaces on conflict: two processes resolving one e-mail at once both succeed.
_UPSERTS = {"sqlite": _upsert(sqlite.insert), "postgresql": _upsert(postgresql.insert)}
