"""The claim that makes "exactly one ticket per issue" hold across workers, retries and crashes.

A claim is a `pending` link row. Its `live_sentry_issue_id` is unique, so of any number of workers
racing on one issue exactly one inserts it; the others see who holds it. A claim is held while
`claimed_at` is recent; it is released (not deleted) after a failure, so the next attempt knows
whether a create call was already sent (`create_attempted_at`) and must look before creating.
A holder killed mid-call simply stops refreshing; its claim expires after `CLAIM_TTL` (the
setting `SYNCER_CLAIM_TTL_SECONDS`, which must outlast one create call with its timeouts).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from syncer.store.engine import reading, session_scope
from syncer.store.schema import Link, LinkState, utcnow

CLAIM_TTL = timedelta(seconds=90)


@dataclass(frozen=True)
class Claim:
    link_id: int
    token: str
    create_attempted_at: datetime | None


class HeldElsewhere(Exception):
    """Another worker holds the claim right now."""


def live_link(engine: Engine, sentry_issue_id: str) -> Link | None:
    """The issue's live (pending or active) link, as a snapshot: change it through a session."""
    with reading(engine) as connection:
        row = connection.execute(_LIVE_LINK, {"b_issue": sentry_issue_id}).mappings().first()
    return None if row is None else Link(**row)


def take(
    engine: Engine,
    sentry_issue_id: str,
    *,
    project: str,
    route: str,
    team: str | None,
    ttl: timedelta = CLAIM_TTL,
) -> Claim | Link:
    """Claim the issue for ticket creation. Returns the Claim, or the active Link if one exists.
    Raises HeldElsewhere while another worker's claim is fresh."""
    token = secrets.token_hex(16)
    now = utcnow()
    try:
        with engine.begin() as connection:
            inserted = connection.execute(_INSERT_CLAIM, {
                "sentry_issue_id": sentry_issue_id, "live_sentry_issue_id": sentry_issue_id,
                "sentry_project": project[:200], "state": LinkState.PENDING, "claim_token": token,
                "claimed_at": now, "route": route[:200], "team": team, "created_at": now, "updated_at": now,
            })
            key = inserted.inserted_primary_key
            assert key is not None
            return Claim(int(key[0]), token, None)
    except IntegrityError:
        pass
    existing = live_link(engine, sentry_issue_id)
    if existing is None:  # it was broken or unlinked in between: the next attempt starts afresh
        raise HeldElsewhere(f"link for sentry issue {sentry_issue_id} changed while claiming")
    if existing.state == LinkState.ACTIVE:
        return existing
    assert existing.id is not None
    with session_scope(engine) as session:
        result = session.execute(
            update(Link)
            .where(
                col(Link.id) == existing.id,
                col(Link.state) == LinkState.PENDING,
                or_(col(Link.claimed_at).is_(None), col(Link.claimed_at) < now - ttl),
            )
            .values(claim_token=token, claimed_at=now, route=route[:200], team=team)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise HeldElsewhere(f"sentry issue {sentry_issue_id} is being handled by another worker")
    return Claim(existing.id, token, existing.create_attempted_at)


def refresh(engine: Engine, claim: Claim, *, create_attempt: bool = False) -> bool:
    """Renew the claim just before a side effect; False if it was lost (expired and taken over)."""
    now = utcnow()
    statement = _REFRESH_FOR_CREATE if create_attempt else _REFRESH
    with engine.begin() as connection:
        result = connection.execute(statement, {"b_id": claim.link_id, "b_token": claim.token, "b_now": now})
        return bool(result.rowcount)


# The statements every new ticket passes through, built once (SQLAlchemy then reuses their compiled
# form): on an ORM session each cost 3-5 times as much CPU, and a worker is CPU-bound (bench/e2e.py).
_links: Any = Link.__table__  # type: ignore[attr-defined]
_LIVE_LINK = select(_links).where(_links.c.live_sentry_issue_id == bindparam("b_issue"))
_INSERT_CLAIM = insert(_links)
_REFRESH = (
    update(_links)
    .where(
        _links.c.id == bindparam("b_id"),
        _links.c.claim_token == bindparam("b_token"),
        _links.c.state == LinkState.PENDING,
    )
    .values(claimed_at=bindparam("b_now"))
)
_REFRESH_FOR_CREATE = _REFRESH.values(create_attempted_at=bindparam("b_now"))
_RETIRED = select(_links.c.jira_issue_id).where(
    _links.c.sentry_issue_id == bindparam("b_issue"), _links.c.state.not_in(LinkState.LIVE)
)


def release(engine: Engine, claim: Claim, *, created_nothing: bool) -> None:
    """Give the claim up after a failure. `created_nothing`: the create call was refused outright
    (a 4xx or 429), so the next attempt need not search first."""
    values: dict[str, object] = {"claimed_at": None, "claim_token": None}
    if created_nothing:
        values["create_attempted_at"] = None
    with session_scope(engine) as session:
        session.execute(
            update(Link)
            .where(and_(col(Link.id) == claim.link_id, col(Link.claim_token) == claim.token))
            .values(**values)
        )


def abandon(engine: Engine, claim: Claim) -> None:
    """Nothing was created and nothing will be (a permanent failure): remove the pending row so a
    later event, after the config is fixed, can start afresh."""
    with session_scope(engine) as session:
        link = session.get(Link, claim.link_id)
        if link is not None and link.claim_token == claim.token and link.state == LinkState.PENDING:
            session.delete(link)


def retired_ticket_ids(engine: Engine, sentry_issue_id: str) -> set[str]:
    """Jira ids of the issue's past tickets (superseded, unlinked, broken)."""
    with reading(engine) as connection:
        rows = connection.execute(_RETIRED, {"b_issue": sentry_issue_id}).scalars().all()
    return {row for row in rows if row}
