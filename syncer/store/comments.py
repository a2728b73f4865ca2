"""Comment pairs: a comment on one side and its copy on the other (policy `[comments]`).

A pair is claimed (the original's id, the copy's NULL) before the copy is made and completed with
the copy's id after, so a retried delivery finds the claim and looks for the copy it may have made
instead of making a second one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from syncer.store.engine import reading
from syncer.store.schema import CommentPair, utcnow

_pairs: Any = CommentPair.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Pair:
    id: int
    sentry_issue_id: str
    jira_issue_id: str
    sentry_note_id: str | None
    jira_comment_id: str | None
    origin: str


def _pair(row: Any) -> Pair:
    return Pair(row.id, row.sentry_issue_id, row.jira_issue_id, row.sentry_note_id, row.jira_comment_id,
                row.origin)


def of_sentry_note(engine: Engine, sentry_issue_id: str, note_id: str) -> Pair | None:
    with reading(engine) as connection:
        row = connection.execute(select(_pairs).where(
            _pairs.c.sentry_issue_id == sentry_issue_id, _pairs.c.sentry_note_id == note_id)).first()
    return None if row is None else _pair(row)


def of_jira_comment(engine: Engine, jira_issue_id: str, comment_id: str) -> Pair | None:
    with reading(engine) as connection:
        row = connection.execute(select(_pairs).where(
            _pairs.c.jira_issue_id == jira_issue_id, _pairs.c.jira_comment_id == comment_id)).first()
    return None if row is None else _pair(row)


def claim(engine: Engine, *, origin: str, sentry_issue_id: str, jira_issue_id: str,
          sentry_note_id: str | None = None, jira_comment_id: str | None = None) -> Pair | None:
    """The new pair, or None when the original is claimed already (look it up)."""
    values = {"origin": origin, "sentry_issue_id": sentry_issue_id, "jira_issue_id": jira_issue_id,
              "sentry_note_id": sentry_note_id, "jira_comment_id": jira_comment_id, "created_at": utcnow()}
    try:
        with engine.begin() as connection:
            row = connection.execute(insert(_pairs).returning(*_pairs.c), values).first()
    except IntegrityError:
        return None
    return None if row is None else _pair(row)


_COMPLETE = update(_pairs).where(_pairs.c.id == bindparam("b_id"))


def complete(engine: Engine, pair_id: int, *, sentry_note_id: str | None = None,
             jira_comment_id: str | None = None) -> None:
    values = {"sentry_note_id": sentry_note_id} if sentry_note_id else {"jira_comment_id": jira_comment_id}
    with engine.begin() as connection:
        connection.execute(_COMPLETE.values(**values), {"b_id": pair_id})


def forget(engine: Engine, pair_id: int) -> None:
    with engine.begin() as connection:
        connection.execute(delete(_pairs).where(_pairs.c.id == pair_id))
