"""Each owned issue's message in its team's Slack channel, and the release-watch threads.

A row is made when routing sends an issue to a team that has a channel (before anything is posted,
so a Slack outage loses nothing); `ts` is set once the message exists, and every later change to the
issue updates that one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncer.store.engine import session_scope
from syncer.store.schema import AuditEntry, SlackMessage, SlackRelease, utcnow


@dataclass(frozen=True)
class MessageRecord:
    sentry_issue_id: str
    team: str
    route: str
    action: str
    channel: str
    channel_id: str | None
    ts: str | None
    release: str
    shown: str
    regressions_told: int
    regressed_in: str
    acknowledged_by: str
    acknowledged_at: datetime | None


def _record(row: SlackMessage) -> MessageRecord:
    return MessageRecord(
        sentry_issue_id=row.sentry_issue_id,
        team=row.team,
        route=row.route,
        action=row.action,
        channel=row.channel,
        channel_id=row.channel_id,
        ts=row.ts,
        release=row.release,
        shown=row.shown,
        regressions_told=row.regressions_told,
        regressed_in=row.regressed_in,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
    )


def ensure(
    engine: Engine,
    sentry_issue_id: str,
    *,
    team: str,
    route: str,
    action: str,
    channel: str,
    release: str = "",
) -> None:
    """The issue's row, made unless it exists (the first route's decision stays, like its message)."""
    values = {
        "sentry_issue_id": sentry_issue_id[:40],
        "team": team[:200],
        "route": route[:200],
        "action": action[:20],
        "channel": channel[:200],
        "release": release[:200],
        "shown": "",
        "regressions_told": 0,
        "regressed_in": "",
        "acknowledged_by": "",
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    table = SlackMessage.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        connection.execute(
            insert(table).values(**values).on_conflict_do_nothing(index_elements=["sentry_issue_id"])
        )


def load(engine: Engine, sentry_issue_id: str) -> MessageRecord | None:
    with Session(engine) as session:
        row = session.get(SlackMessage, sentry_issue_id)
        return _record(row) if row is not None else None


def by_message(engine: Engine, channel_id: str, ts: str) -> MessageRecord | None:
    """The issue whose message this is, or None (a message syncer did not post)."""
    with Session(engine) as session:
        row = session.exec(
            select(SlackMessage).where(SlackMessage.channel_id == channel_id, SlackMessage.ts == ts)
        ).first()
        return _record(row) if row is not None else None


def _save(engine: Engine, sentry_issue_id: str, **values: object) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(SlackMessage)
            .where(col(SlackMessage.sentry_issue_id) == sentry_issue_id)
            .values(updated_at=utcnow(), **values)
        )


def posted(engine: Engine, sentry_issue_id: str, *, channel_id: str, ts: str, shown: str) -> None:
    _save(engine, sentry_issue_id, channel_id=channel_id, ts=ts, shown=shown)


def shown(engine: Engine, sentry_issue_id: str, shown: str) -> None:
    _save(engine, sentry_issue_id, shown=shown)


def set_release(engine: Engine, sentry_issue_id: str, release: str) -> None:
    _save(engine, sentry_issue_id, release=release[:200])


def told_regression(engine: Engine, sentry_issue_id: str, *, count: int, release: str) -> None:
    _save(engine, sentry_issue_id, regressions_told=count, regressed_in=release[:200])


def acknowledge(engine: Engine, sentry_issue_id: str, user: str) -> bool:
    """Record the first acknowledgement; False when the issue was acknowledged already."""
    with session_scope(engine) as session:
        result = session.execute(
            update(SlackMessage)
            .where(
                col(SlackMessage.sentry_issue_id) == sentry_issue_id, col(SlackMessage.acknowledged_by) == ""
            )
            .values(acknowledged_by=user[:200], acknowledged_at=utcnow(), updated_at=utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


# --- release watch ---------------------------------------------------------------------------------


def in_release(engine: Engine, release: str, channel: str) -> list[MessageRecord]:
    """The issues first seen in `release` that were posted to `channel` (as the policy names it)."""
    with Session(engine) as session:
        rows = session.exec(
            select(SlackMessage)
            .where(
                or_(col(SlackMessage.release) == release, col(SlackMessage.regressed_in) == release),
                SlackMessage.channel == channel,
            )
            .order_by(col(SlackMessage.created_at))
        ).all()
        return [_record(row) for row in rows]


@dataclass(frozen=True)
class ReleaseThread:
    channel_id: str
    release: str
    ts: str | None
    shown: str


def release_thread(engine: Engine, channel_id: str, release: str) -> ReleaseThread | None:
    with Session(engine) as session:
        row = session.get(SlackRelease, (channel_id, release))
        return ReleaseThread(row.channel_id, row.release, row.ts, row.shown) if row is not None else None


def release_posted(engine: Engine, channel_id: str, release: str, *, ts: str, shown: str) -> None:
    with session_scope(engine) as session:
        row = session.get(SlackRelease, (channel_id, release))
        if row is None:
            session.add(SlackRelease(channel_id=channel_id, release=release[:200], ts=ts, shown=shown))
        else:
            row.ts, row.shown, row.updated_at = ts, shown, utcnow()
            session.add(row)


def audit(
    engine: Engine,
    sentry_issue_id: str,
    *,
    action: str,
    detail: str,
    cause: str,
    link_id: int | None = None,
    jira_key: str = "",
) -> None:
    """An audit line for what a person did in Slack (side "slack"), with or without a link."""
    with session_scope(engine) as session:
        session.add(
            AuditEntry(
                link_id=link_id,
                sentry_issue_id=sentry_issue_id[:40],
                jira_key=jira_key[:100],
                side="slack",
                action=action[:100],
                detail=detail,
                cause=cause[:200],
            )
        )
