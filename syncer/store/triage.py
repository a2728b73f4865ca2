"""What the triage figures read (`syncer report`, the console), and the routing decisions they count.

A page calls these on every view, so each is one statement over an indexed range: tickets by
`links.ticketed_at`/`resolved_at`, audit by `audit.at`, decisions by `routed_issues.decided_at`. The
arithmetic (percentiles, ages, weeks) is `syncer.core.triage`'s, on the rows returned here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from syncer.store.engine import one_statement, reading
from syncer.store.schema import AuditEntry, Link, LinkState, RoutedIssue, utcnow

# What the audit trail calls the two kinds of coming back (see sync/outbound.py, sync/inbound.py):
# a Sentry regression reopened the ticket or, long after it closed, superseded it with a new one;
# a person reopened the ticket in Jira and syncer unresolved the issue.
REGRESSION_ACTIONS = (("jira", "reopen"), ("syncer", "superseded"))
REOPEN_ACTIONS = (("sentry", "unresolve"),)


@dataclass(frozen=True)
class TicketRow:
    """One ticket syncer made or adopted, with the moments the figures measure."""

    team: str | None
    route: str
    first_seen: datetime | None
    ticketed_at: datetime
    resolved_at: datetime | None
    open: bool  # its link is active and the ticket is not done


@dataclass(frozen=True)
class ComingBack:
    """Per team: Sentry regressions and Jira reopens since the window's start."""

    regressions: int = 0
    reopens: int = 0


@dataclass(frozen=True)
class RouteCounts:
    """One route's issues in each window, in the order the windows were asked for."""

    route: str
    matched: tuple[int, ...]
    ignored: tuple[int, ...]
    tickets: tuple[int, ...]


def record_routing(
    engine: Engine, sentry_issue_id: str, *, route: str, team: str | None, action: str,
    at: datetime | None = None,
) -> None:
    """Remember a route's decision for an issue; the first one stays (later deliveries of the same
    issue decide the same again, and must not move it into a newer window)."""
    values = {"sentry_issue_id": sentry_issue_id[:40], "route": route[:200], "team": team,
              "action": action, "decided_at": at or utcnow()}
    with one_statement(engine) as connection:
        connection.execute(_insert_once(connection.dialect.name), values)


def tickets(engine: Engine, *, since: datetime, team: str | None = None) -> list[TicketRow]:
    """Tickets made or resolved since `since`, and every ticket still open (for its age)."""
    query = _TICKETS if team is None else _TICKETS.where(_links.c.team == bindparam("b_team"))
    with reading(engine) as connection:
        rows = connection.execute(query, {"b_since": since, "b_team": team}).mappings().all()
    return [
        TicketRow(team=row["team"], route=row["route"], first_seen=row["sentry_first_seen"],
                  ticketed_at=row["ticketed_at"], resolved_at=row["resolved_at"],
                  open=row["state"] == LinkState.ACTIVE and row["resolved_at"] is None)
        for row in rows
    ]


def coming_back(engine: Engine, *, since: datetime, team: str | None = None) -> dict[str | None, ComingBack]:
    """Regressions and reopens since `since`, by the team of the link they happened to."""
    query = _COMING_BACK if team is None else _COMING_BACK.where(_links.c.team == bindparam("b_team"))
    with reading(engine) as connection:
        rows = connection.execute(query, {"b_since": since, "b_team": team}).all()
    return {row[0]: ComingBack(int(row[1] or 0), int(row[2] or 0)) for row in rows}


def route_counts(
    engine: Engine, starts: Sequence[datetime], *, team: str | None = None
) -> list[RouteCounts]:
    """Per route, issues matched, ignored and ticketed since each of `starts` (issues by their
    route's first decision, tickets by when they were made), of one team when given: two grouped
    statements."""
    earliest = min(starts)
    decided = _routed.c.decided_at
    matched = [func.sum(case((decided >= start, 1), else_=0)) for start in starts]
    ignored = [func.sum(case((and_(decided >= start, _routed.c.action == "ignore"), 1), else_=0))
               for start in starts]
    made = [func.sum(case((_links.c.ticketed_at >= start, 1), else_=0)) for start in starts]
    decisions_query = select(_routed.c.route, *matched, *ignored).where(decided >= earliest)
    tickets_query = select(_links.c.route, *made).where(_links.c.ticketed_at >= earliest)
    if team is not None:
        decisions_query = decisions_query.where(_routed.c.team == team)
        tickets_query = tickets_query.where(_links.c.team == team)
    with reading(engine) as connection:
        decisions = connection.execute(decisions_query.group_by(_routed.c.route)).all()
        ticketed = connection.execute(tickets_query.group_by(_links.c.route)).all()
    width = len(starts)
    by_route: dict[str, dict[str, tuple[int, ...]]] = {}
    for row in decisions:
        values = [int(v or 0) for v in row[1:]]
        by_route.setdefault(row[0], {})["matched"] = tuple(values[:width])
        by_route[row[0]]["ignored"] = tuple(values[width:])
    for row in ticketed:
        by_route.setdefault(row[0], {})["tickets"] = tuple(int(v or 0) for v in row[1:])
    zero = (0,) * width
    return [
        RouteCounts(route, counts.get("matched", zero), counts.get("ignored", zero),
                    counts.get("tickets", zero))
        for route, counts in sorted(by_route.items())
    ]


# --- the statements -------------------------------------------------------------------------------

_links: Any = Link.__table__  # type: ignore[attr-defined]
_audit: Any = AuditEntry.__table__  # type: ignore[attr-defined]
_routed: Any = RoutedIssue.__table__  # type: ignore[attr-defined]

_TICKETS = select(
    _links.c.team, _links.c.route, _links.c.sentry_first_seen, _links.c.ticketed_at, _links.c.resolved_at,
    _links.c.state,
).where(
    _links.c.ticketed_at.is_not(None),
    or_(
        _links.c.ticketed_at >= bindparam("b_since"),
        _links.c.resolved_at >= bindparam("b_since"),
        and_(_links.c.state == LinkState.ACTIVE, _links.c.resolved_at.is_(None)),
    ),
)


def _any_of(pairs: tuple[tuple[str, str], ...]) -> Any:
    return or_(*(and_(_audit.c.side == side, _audit.c.action == action) for side, action in pairs))


_COMING_BACK = (
    select(
        _links.c.team,
        func.sum(case((_any_of(REGRESSION_ACTIONS), 1), else_=0)),
        func.sum(case((_any_of(REOPEN_ACTIONS), 1), else_=0)),
    )
    .select_from(_audit.join(_links, _links.c.id == _audit.c.link_id))
    .where(_audit.c.at >= bindparam("b_since"), _any_of(REGRESSION_ACTIONS + REOPEN_ACTIONS))
    .group_by(_links.c.team)
)


def _insert_once(dialect: str) -> Any:
    statement = _INSERT_ONCE.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            statement = postgresql.insert(_routed).on_conflict_do_nothing()
        elif dialect == "sqlite":
            statement = sqlite.insert(_routed).on_conflict_do_nothing()
        else:  # no portable "insert unless present": syncer runs on the two above
            statement = insert(_routed)
        _INSERT_ONCE[dialect] = statement
    return statement


_INSERT_ONCE: dict[str, Any] = {}
