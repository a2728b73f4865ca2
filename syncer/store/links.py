"""Links (the pairs of a Sentry issue and its Jira ticket), the claims that create them, and the
audit trail of every change made to them, with its cause.

A claim is a `pending` link row. Its `live_sentry_issue_id` is unique, so of any number of workers
racing on one issue exactly one inserts it; the others see who holds it. A claim is held while
`claimed_at` is recent; it is released (not deleted) after a failure, so the next attempt knows
whether a create call was already sent (`create_attempted_at`) and must look before creating.
A holder killed mid-call simply stops refreshing; its claim expires after its `ttl` (the setting
`SYNCER_CLAIM_TTL_SECONDS`, which must outlast one create call with its timeouts).

One style throughout: Core statements on connections, built once where every ticket or event
passes (SQLAlchemy then reuses their compiled form; on an ORM session each cost several times the
CPU, and a worker is CPU-bound: bench/e2e.py). Reads go through `reading` (no write lock on
SQLite); a change and its audit lines are one transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from syncer.errors import HeldElsewhere, TransientError
from syncer.store import deliveries
from syncer.store.engine import one_statement, reading
from syncer.store.schema import AuditEntry, Link, LinkState, utcnow

# --- records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRecord:
    """A link as stored when it was read; change it through this module's functions."""

    id: int
    sentry_issue_id: str
    live_sentry_issue_id: str | None = None
    sentry_project: str = ""
    jira_issue_id: str | None = None
    jira_key: str | None = None
    state: str = LinkState.PENDING
    claim_token: str | None = None
    claimed_at: datetime | None = None
    create_attempted_at: datetime | None = None
    route: str = ""
    team: str | None = None
    sentry_status: str = ""
    sentry_substatus: str = ""
    sentry_priority: str = ""
    sentry_changed_at: datetime | None = None
    jira_status: str = ""
    jira_status_category: str = ""
    jira_changed_at: datetime | None = None
    synced_at: datetime | None = None
    changed_by: str = ""
    remote_link_done: bool = False
    sentry_link_done: bool = False
    reopen_commented_at: datetime | None = None
    reopens_since_comment: int = 0
    previous_link_id: int | None = None
    unreachable_since: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    sentry_first_seen: datetime | None = None
    ticketed_at: datetime | None = None
    resolved_at: datetime | None = None
    noted_count: int | None = None
    noted_users: int | None = None
    noted_at: datetime | None = None
    noted_release: str | None = None


@dataclass(frozen=True)
class ClaimRecord:
    """This worker's claim on an issue: the pending link it may turn into a ticket."""

    link_id: int
    token: str
    create_attempted_at: datetime | None


@dataclass(frozen=True)
class AuditRecord:
    """One change syncer made (or decided not to make), with its cause."""

    id: int
    at: datetime
    link_id: int | None
    sentry_issue_id: str
    jira_key: str
    side: str
    action: str
    detail: str
    cause: str


AuditLine = tuple[str, str, str]  # side, action, detail: one audit row of a link's change


def _link(row: RowMapping) -> LinkRecord:
    return LinkRecord(**row)


def audit_row(
    link: LinkRecord | None, *, side: str, action: str, detail: str = "", cause: str = ""
) -> dict[str, Any]:
    """The audit row as column values, to append with a link's change (`activate`, `mark_backlinks`)."""
    return {
        "at": utcnow(),
        "link_id": link.id if link else None,
        "sentry_issue_id": link.sentry_issue_id if link else "",
        "jira_key": (link.jira_key or "") if link else "",
        "side": side,
        "action": action,
        "detail": detail,
        "cause": cause[:200],
    }


def _append(connection: Connection, link: LinkRecord, lines: Sequence[AuditLine], cause: str) -> None:
    if lines:
        connection.execute(_AUDIT, [audit_row(link, side=side, action=action, detail=detail, cause=cause)
                                    for side, action, detail in lines])


# --- reading links --------------------------------------------------------------------------------


def live(engine: Engine, sentry_issue_id: str) -> LinkRecord | None:
    """The issue's live (pending or active) link."""
    with reading(engine) as connection:
        row = connection.execute(_LIVE, {"b_issue": sentry_issue_id}).mappings().first()
    return None if row is None else _link(row)


def linked_as_external_issue(engine: Engine, link_id: int) -> bool:
    """Whether syncer showed this link's ticket on the Sentry issue as an external issue (not as
    a note, which is what it does when no installation is known): its audit says so."""
    with reading(engine) as connection:
        return connection.execute(_AS_EXTERNAL_ISSUE, {"b_link": link_id}).first() is not None


def load(engine: Engine, link_id: int) -> LinkRecord | None:
    with reading(engine) as connection:
        row = connection.execute(_BY_ID, {"b_id": link_id}).mappings().first()
    return None if row is None else _link(row)


def active_for_ticket(engine: Engine, jira_issue_id: str) -> LinkRecord | None:
    """The active link of a ticket, by its Jira id (ids survive a move to another project; keys do not)."""
    with reading(engine) as connection:
        row = connection.execute(_ACTIVE_FOR_TICKET, {"b_ticket": jira_issue_id}).mappings().first()
    return None if row is None else _link(row)


def retired_ticket_ids(engine: Engine, sentry_issue_id: str) -> set[str]:
    """Jira ids of the issue's past tickets (superseded, unlinked, broken)."""
    with reading(engine) as connection:
        rows = connection.execute(_RETIRED, {"b_issue": sentry_issue_id}).scalars().all()
    return {row for row in rows if row}


def untied_successor(engine: Engine, sentry_issue_id: str) -> tuple[LinkRecord, LinkRecord] | None:
    """The issue's active link that follows no ticket yet, with the newest superseded link of the
    issue that no link follows: (new, old), or None when there is no such pair."""
    with engine.begin() as connection:
        row = connection.execute(_LIVE, {"b_issue": sentry_issue_id}).mappings().first()
        if row is None:
            return None
        new = _link(row)
        if new.state != LinkState.ACTIVE or new.previous_link_id is not None:
            return None
        old = connection.execute(
            _UNTIED_PREDECESSOR, {"b_issue": sentry_issue_id, "b_id": new.id}
        ).mappings().first()
    return None if old is None else (new, _link(old))


def listed(engine: Engine, *, state: str | None = None, limit: int = 100) -> list[LinkRecord]:
    """The newest `limit` links, in `state` when given."""
    query = select(_links).order_by(_links.c.id.desc()).limit(limit)
    if state:
        query = query.where(_links.c.state == state)
    with reading(engine) as connection:
        return [_link(row) for row in connection.execute(query).mappings()]


def history(engine: Engine, sentry_issue_id: str) -> tuple[list[LinkRecord], list[AuditRecord]]:
    """Every link the issue ever had and its audit trail, oldest first. A link that moved with a
    merge (`move_to_issue`) is found by either issue, with its whole trail."""
    named = select(_audit.c.link_id).where(
        _audit.c.sentry_issue_id == sentry_issue_id, _audit.c.link_id.is_not(None)
    )
    with engine.begin() as connection:
        found = connection.execute(
            select(_links)
            .where(or_(_links.c.sentry_issue_id == sentry_issue_id, _links.c.id.in_(named)))
            .order_by(_links.c.id)
        ).mappings().all()
        link_ids = [row["id"] for row in found]
        entries = connection.execute(
            select(_audit)
            .where(or_(_audit.c.sentry_issue_id == sentry_issue_id, _audit.c.link_id.in_(link_ids)))
            .order_by(_audit.c.id)
        ).mappings().all()
    return [_link(row) for row in found], [AuditRecord(**row) for row in entries]


# --- reconcile's reads ----------------------------------------------------------------------------


def count_active(engine: Engine) -> int:
    with reading(engine) as connection:
        return int(connection.execute(_COUNT_ACTIVE).scalar_one())


def active_page(engine: Engine, *, after: int, size: int) -> list[LinkRecord]:
    """The first `size` active links with an id above `after`, in id order: a keyset page, so that
    reading page after page stays as cheap at the end of the table as at its start."""
    with reading(engine) as connection:
        return [_link(row) for row in connection.execute(_ACTIVE_PAGE, {"b_after": after, "b_size": size})
                .mappings()]


def idle_claims_page(engine: Engine, *, claimed_before: datetime, after: int, size: int) -> list[LinkRecord]:
    """Pending claims nobody works on: released after a failure, or taken before `claimed_before`
    (their holder died, or its delivery did). A keyset page by id, as `active_page`."""
    with reading(engine) as connection:
        rows = connection.execute(
            _IDLE_CLAIMS, {"b_before": claimed_before, "b_after": after, "b_size": size}
        ).mappings()
        return [_link(row) for row in rows]


def issues_with_links(engine: Engine, issue_ids: Sequence[str]) -> set[str]:
    """Those of `issue_ids` that have a link row past its claim: linked, or deliberately not any
    more (a deleted ticket, `links unlink`). A pending claim is not one: its delivery may have
    died, and the backfill's claim either finds it fresh (another worker has it) or takes it over."""
    if not issue_ids:
        return set()
    with reading(engine) as connection:
        return set(connection.execute(_WITH_LINKS, {"b_ids": list(issue_ids)}).scalars())


def active_for_tickets(engine: Engine, jira_issue_ids: Sequence[str]) -> list[LinkRecord]:
    """The active links of these tickets (by Jira id), in id order: what a change on Jira's side
    touches (an incremental reconcile)."""
    return _active_where(engine, _FOR_TICKETS, jira_issue_ids)


def active_for_issues(engine: Engine, sentry_issue_ids: Sequence[str]) -> list[LinkRecord]:
    """The active links of these Sentry issues, in id order."""
    return _active_where(engine, _FOR_ISSUES, sentry_issue_ids)


def _active_where(engine: Engine, statement: Any, ids: Sequence[str]) -> list[LinkRecord]:
    # The state is checked here, not in SQL: nearly every link is active, and a planner without
    # statistics (SQLite never gathers them unless told; PostgreSQL until autovacuum's first ANALYZE
    # after a bulk load) takes `state = 'active'` for a selective index and reads every link.
    if not ids:
        return []
    with reading(engine) as connection:
        rows = connection.execute(statement, {"b_ids": list(ids)}).mappings()
        return [_link(row) for row in rows if row["state"] == LinkState.ACTIVE]


def changed_since(engine: Engine, since: datetime) -> list[int]:
    """Ids of the links whose row changed at or after `since` (a webhook applied, a repair made),
    in id order: read from the `updated_at` index alone, so the cost follows the changes, not the
    table (with an `ORDER BY id LIMIT` a planner walks the primary key instead, through every link)."""
    with reading(engine) as connection:
        return sorted(connection.execute(_CHANGED_SINCE, {"b_since": since}).scalars())


def active_by_ids(engine: Engine, link_ids: Sequence[int]) -> list[LinkRecord]:
    """The active ones of these links, in id order."""
    if not link_ids:
        return []
    with reading(engine) as connection:
        rows = connection.execute(_BY_IDS, {"b_ids": list(link_ids)}).mappings()
        return [_link(row) for row in rows if row["state"] == LinkState.ACTIVE]


# --- claims ---------------------------------------------------------------------------------------


def take_claim(
    engine: Engine, sentry_issue_id: str, *, project: str, route: str, team: str | None, ttl: timedelta
) -> ClaimRecord | LinkRecord:
    """Claim the issue for ticket creation. Returns the claim, or the active link if one exists.
    Raises `HeldElsewhere` while another worker's claim is fresh."""
    token = secrets.token_hex(16)
    now = utcnow()
    try:
        with one_statement(engine) as connection:
            inserted = connection.execute(_INSERT, {
                "sentry_issue_id": sentry_issue_id, "live_sentry_issue_id": sentry_issue_id,
                "sentry_project": project[:200], "state": LinkState.PENDING, "claim_token": token,
                "claimed_at": now, "route": route[:200], "team": team, "created_at": now, "updated_at": now,
            }).scalar_one()
            return ClaimRecord(int(inserted), token, None)
    except IntegrityError:
        pass
    existing = live(engine, sentry_issue_id)
    if existing is None:  # it was broken or unlinked in between: the next attempt starts afresh
        raise HeldElsewhere(f"link for sentry issue {sentry_issue_id} changed while claiming")
    if existing.state == LinkState.ACTIVE:
        return existing
    with one_statement(engine) as connection:
        result = connection.execute(_TAKE_OVER, {
            "b_id": existing.id, "b_expired": now - ttl, "claim_token": token, "claimed_at": now,
            "route": route[:200], "team": team,
        })
        if not result.rowcount:
            raise HeldElsewhere(f"sentry issue {sentry_issue_id} is being handled by another worker")
    return ClaimRecord(existing.id, token, existing.create_attempted_at)


def refresh_claim(engine: Engine, claim: ClaimRecord, *, create_attempt: bool = False) -> bool:
    """Renew the claim just before a side effect; False if it was lost (expired and taken over)."""
    statement = _REFRESH_FOR_CREATE if create_attempt else _REFRESH
    with one_statement(engine) as connection:
        result = connection.execute(
            statement, {"b_id": claim.link_id, "b_token": claim.token, "b_now": utcnow()}
        )
        return bool(result.rowcount)


def release_claim(engine: Engine, claim: ClaimRecord, *, created_nothing: bool) -> None:
    """Give the claim up after a failure. `created_nothing`: the create call was refused outright
    (a 4xx or 429), so the next attempt need not search first."""
    statement = _RELEASE_UNTRIED if created_nothing else _RELEASE
    with one_statement(engine) as connection:
        connection.execute(statement, {"b_id": claim.link_id, "b_token": claim.token})


def abandon_claim(engine: Engine, claim: ClaimRecord) -> None:
    """Nothing was created and nothing will be (a permanent failure): remove the pending row so a
    later event, after the config is fixed, can start afresh."""
    with one_statement(engine) as connection:
        connection.execute(_ABANDON, {"b_id": claim.link_id, "b_token": claim.token})


def activate(engine: Engine, link_id: int, values: Mapping[str, Any], audit: Mapping[str, Any]) -> None:
    """The claim became a ticket: the link's new columns and its audit row, in one transaction."""
    with engine.begin() as connection:
        connection.execute(_ACTIVATE, {"b_id": link_id, **values})
        connection.execute(_AUDIT, dict(audit))


# --- changing links -------------------------------------------------------------------------------


def mark_backlinks(
    engine: Engine, link_id: int, *, remote_link_done: bool, sentry_link_done: bool,
    audit: Mapping[str, Any] | None = None,
) -> None:
    """Store the link's back-link flags (and the audit row of what was done) in one transaction."""
    with engine.begin() as connection:
        connection.execute(_MARK, {"b_id": link_id, "remote_link_done": remote_link_done,
                                   "sentry_link_done": sentry_link_done})
        if audit is not None:
            connection.execute(_AUDIT, dict(audit))


def note_growth(engine: Engine, link: LinkRecord, *, count: int, users: int, commented: bool,
                detail: str = "", cause: str = "") -> None:
    """What the ticket now knows of the issue's events and users ([enrichment]); when it was told
    in a comment, that comment's audit line. Neither side's sync watermarks move."""
    values: dict[str, Any] = {"noted_count": count, "noted_users": users}
    if commented:
        values["noted_at"] = utcnow()
    with engine.begin() as connection:
        connection.execute(update(_links).where(_links.c.id == link.id).values(values))
        if commented:
            _append(connection, link, [("jira", "enriched", detail)], cause)


def note_release(engine: Engine, link: LinkRecord, release: str, *, telling: bool) -> bool:
    """Record `release` as the one the ticket knows its issue was seen in ([enrichment]
    `new_release`), only if the link still holds the release it was read with: of two deliveries
    naming one release, one wins and tells. `telling` also starts the ticket's throttle. False: lost."""
    values: dict[str, Any] = {"noted_release": release[:200]}
    if telling:
        values["noted_at"] = utcnow()
    held = _links.c.noted_release
    unchanged = held.is_(None) if link.noted_release is None else held == link.noted_release
    with engine.begin() as connection:
        result = connection.execute(update(_links).where(_links.c.id == link.id, unchanged).values(values))
    return bool(result.rowcount)


def release_told(engine: Engine, link: LinkRecord, release: str, *, told: bool, cause: str = "") -> None:
    """After `note_release(telling=True)`: the comment's audit line, or, when it could not be posted,
    the link back as it was so that the next delivery naming the release tries again."""
    with engine.begin() as connection:
        if told:
            _append(connection, link, [("jira", "enriched", f"seen in release {release}")], cause)
        else:
            connection.execute(update(_links).where(_links.c.id == link.id)
                               .values(noted_release=link.noted_release, noted_at=link.noted_at))


def save(
    engine: Engine, link_id: int, *, cause: str, changes: Sequence[AuditLine] = (), **fields: Any
) -> LinkRecord:
    """Store what was learned and done, in one transaction with its audit lines; returns the link
    as stored. A link that is gone is a TransientError: the delivery's retry looks again."""
    now = utcnow()
    values = {**fields, "updated_at": now}
    if changes:
        values.update(synced_at=now, changed_by=cause[:200])
    with engine.begin() as connection:
        row = connection.execute(_save(tuple(sorted(values))), {"b_id": link_id, **values}).mappings().first()
        if row is None:
            raise TransientError(f"link {link_id} vanished while it was being synced")
        link = _link(row)
        _append(connection, link, changes, cause)
    return link


def mark_broken(engine: Engine, link: LinkRecord, *, cause: str, why: str, issue_gone: bool = False) -> None:
    """One side is gone (the ticket, or with `issue_gone` the Sentry issue): keep the link for
    audit, free the issue for a new ticket."""
    change = ("sentry", "issue_deleted", why) if issue_gone else ("jira", "ticket_deleted", why)
    save(engine, link.id, cause=cause, changes=[change], state=LinkState.BROKEN, live_sentry_issue_id=None)


def move_to_issue(
    engine: Engine, link: LinkRecord, issue_id: str, *, cause: str, why: str, **fields: Any
) -> LinkRecord | None:
    """The link's ticket now follows `issue_id` (its issue was merged into that one), its back-links
    to be made again for it; None when `issue_id` has a live link of its own (the unique claim)."""
    now = utcnow()
    values = {**fields, "sentry_issue_id": issue_id, "live_sentry_issue_id": issue_id,
              "remote_link_done": False, "sentry_link_done": False, "updated_at": now, "synced_at": now,
              "changed_by": cause[:200]}
    try:
        with engine.begin() as connection:
            statement = _save(tuple(sorted(values)))
            row = connection.execute(statement, {"b_id": link.id, **values}).mappings().first()
            if row is None:
                raise TransientError(f"link {link.id} vanished while it was being synced")
            # Audited under the issue it leaves: the trail of either issue finds the link (`history`).
            _append(connection, link, [("sentry", "issue_merged", why)], cause)
    except IntegrityError:
        return None
    return _link(row)


def mark_merged(engine: Engine, link: LinkRecord, *, cause: str, why: str) -> None:
    """The link's issue was merged into one with a ticket of its own: this link ends, kept for audit."""
    save(engine, link.id, cause=cause, changes=[("sentry", "issue_merged", why)], state=LinkState.MERGED,
         live_sentry_issue_id=None)


def mark_unreachable(engine: Engine, link: LinkRecord, *, cause: str, why: str) -> LinkRecord:
    """Jira answered 404 for the ticket, with no deletion webhook: keep the link active (a second
    ticket must not be made while the first may still exist), note since when, audit it once."""
    if link.unreachable_since is not None:
        return link
    return save(engine, link.id, cause=cause, changes=[("jira", "ticket_unreachable", why)],
                unreachable_since=utcnow())


def mark_reachable(engine: Engine, link: LinkRecord, *, cause: str) -> LinkRecord:
    """The ticket answered again: clear the flag (a no-op for a link that never lost it)."""
    if link.unreachable_since is None:
        return link
    why = f"{link.jira_key} answers again (unreachable since {link.unreachable_since:%Y-%m-%d %H:%M:%S})"
    return save(engine, link.id, cause=cause, changes=[("jira", "ticket_reachable", why)],
                unreachable_since=None)


def _save(names: tuple[str, ...]) -> Any:
    """The UPDATE of these columns, built once per set of names (the callers use a handful)."""
    statement = _SAVES.get(names)
    if statement is None:
        values: dict[str, Any] = {name: bindparam(name) for name in names}
        if "jira_status_category" in names:
            values["resolved_at"] = _RESOLVED_AT
        statement = _SAVES[names] = (
            update(_links).where(_links.c.id == bindparam("b_id")).values(values).returning(*_links.c)
        )
    return statement


_SAVES: dict[tuple[str, ...], Any] = {}


def resolved_since(category: str, previously: datetime | None, now: datetime) -> datetime | None:
    """Since when a ticket in `category` is done (the triage figures' resolution time): kept while it
    stays done, cleared when it leaves (a reopen), and now when it arrives."""
    if category != "done":
        return None
    return previously or now


def create_active(
    engine: Engine, values: Mapping[str, Any], *, audit: Sequence[AuditLine], cause: str
) -> LinkRecord | None:
    """A new active link (made by hand), with its audit lines; None when the issue has a live link."""
    try:
        with engine.begin() as connection:
            row = connection.execute(insert(_links).returning(*_links.c), dict(values)).mappings().one()
            link = _link(row)
            _append(connection, link, audit, cause)
    except IntegrityError:
        return None
    return link


def unlink(
    engine: Engine, sentry_issue_id: str, *, cause: str, audit: Sequence[AuditLine]
) -> LinkRecord | None:
    """Undo the issue's live link (kept, as unlinked), with its audit lines; None when it has none."""
    with engine.begin() as connection:
        row = connection.execute(_UNLINK, {"b_issue": sentry_issue_id, "changed_by": cause[:200],
                                           "updated_at": utcnow()}).mappings().first()
        if row is None:
            return None
        link = _link(row)
        _append(connection, link, audit, cause)
    return link


def tie(engine: Engine, new: LinkRecord, old: LinkRecord, *, cause: str, audit: Sequence[AuditLine]) -> None:
    """Record that the `new` link's ticket follows the `old` one's, with its audit lines."""
    with engine.begin() as connection:
        connection.execute(_TIE, {"b_id": new.id, "previous_link_id": old.id, "updated_at": utcnow()})
        _append(connection, new, audit, cause)


# --- the statements -------------------------------------------------------------------------------

_links: Any = Link.__table__  # type: ignore[attr-defined]
_audit: Any = AuditEntry.__table__  # type: ignore[attr-defined]
_LIVE = select(_links).where(_links.c.live_sentry_issue_id == bindparam("b_issue"))
_BY_ID = select(_links).where(_links.c.id == bindparam("b_id"))
_ACTIVE_FOR_TICKET = select(_links).where(
    _links.c.jira_issue_id == bindparam("b_ticket"), _links.c.state == LinkState.ACTIVE
).limit(1)
_RETIRED = select(_links.c.jira_issue_id).where(
    _links.c.sentry_issue_id == bindparam("b_issue"), _links.c.state.not_in(LinkState.LIVE)
)
_UNTIED_PREDECESSOR = (
    select(_links)
    .where(
        _links.c.sentry_issue_id == bindparam("b_issue"),
        _links.c.state == LinkState.SUPERSEDED,
        _links.c.id < bindparam("b_id"),
        _links.c.id.not_in(select(_links.c.previous_link_id).where(_links.c.previous_link_id.is_not(None))),
    )
    .order_by(_links.c.id.desc())
    .limit(1)
)
_COUNT_ACTIVE = select(func.count()).select_from(_links).where(_links.c.state == LinkState.ACTIVE)
_ACTIVE_PAGE = (
    select(_links)
    .where(_links.c.state == LinkState.ACTIVE, _links.c.id > bindparam("b_after"))
    .order_by(_links.c.id)
    .limit(bindparam("b_size"))
)
_IDLE_CLAIMS = (
    select(_links)
    .where(
        _links.c.state == LinkState.PENDING,
        or_(_links.c.claimed_at.is_(None), _links.c.claimed_at < bindparam("b_before")),
        _links.c.id > bindparam("b_after"),
    )
    .order_by(_links.c.id)
    .limit(bindparam("b_size"))
)
_FOR_TICKETS = select(_links).where(_links.c.jira_issue_id.in_(bindparam("b_ids", expanding=True)))
_FOR_TICKETS = _FOR_TICKETS.order_by(_links.c.id)
_FOR_ISSUES = select(_links).where(_links.c.sentry_issue_id.in_(bindparam("b_ids", expanding=True)))
_FOR_ISSUES = _FOR_ISSUES.order_by(_links.c.id)
_CHANGED_SINCE = select(_links.c.id).where(_links.c.updated_at >= bindparam("b_since"))
_BY_IDS = select(_links).where(_links.c.id.in_(bindparam("b_ids", expanding=True))).order_by(_links.c.id)
_WITH_LINKS = select(_links.c.sentry_issue_id).where(
    _links.c.sentry_issue_id.in_(bindparam("b_ids", expanding=True)), _links.c.state != LinkState.PENDING
)
_INSERT = insert(_links).returning(_links.c.id)
_TAKE_OVER = (
    update(_links)
    .where(
        _links.c.id == bindparam("b_id"),
        _links.c.state == LinkState.PENDING,
        or_(_links.c.claimed_at.is_(None), _links.c.claimed_at < bindparam("b_expired")),
    )
    .values(claim_token=bindparam("claim_token"), claimed_at=bindparam("claimed_at"),
            route=bindparam("route"), team=bindparam("team"))
)
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
_RELEASE = (
    update(_links)
    .where(_links.c.id == bindparam("b_id"), _links.c.claim_token == bindparam("b_token"))
    .values(claimed_at=None, claim_token=None)
)
_RELEASE_UNTRIED = _RELEASE.values(create_attempted_at=None)
_ABANDON = delete(_links).where(
    _links.c.id == bindparam("b_id"),
    _links.c.claim_token == bindparam("b_token"),
    _links.c.state == LinkState.PENDING,
)
_ACTIVATE = update(_links).where(_links.c.id == bindparam("b_id"))
# Flags only ever go from false to true: a stale snapshot must not undo another worker's mark.
_MARK = (
    update(_links)
    .where(_links.c.id == bindparam("b_id"))
    .values(remote_link_done=or_(_links.c.remote_link_done, bindparam("remote_link_done")),
            sentry_link_done=or_(_links.c.sentry_link_done, bindparam("sentry_link_done")))
)
_UNLINK = (
    update(_links)
    .where(_links.c.live_sentry_issue_id == bindparam("b_issue"))
    .values(state=LinkState.UNLINKED, live_sentry_issue_id=None, changed_by=bindparam("changed_by"),
            updated_at=bindparam("updated_at"))
    .returning(*_links.c)
)
_TIE = (
    update(_links)
    .where(_links.c.id == bindparam("b_id"))
    .values(previous_link_id=bindparam("previous_link_id"), updated_at=bindparam("updated_at"))
)
_AUDIT = insert(_audit)
_AS_EXTERNAL_ISSUE = select(_audit.c.id).where(
    _audit.c.link_id == bindparam("b_link"), _audit.c.side == "sentry", _audit.c.action == "linked",
    _audit.c.detail == "external issue",
).limit(1)
# `resolved_since` in SQL, for every save that stores the Jira side's status category: the SET's
# right-hand side reads the row's old value, so a done ticket keeps its first resolution time.
_RESOLVED_AT = case(
    (bindparam("jira_status_category") == "done",
     func.coalesce(_links.c.resolved_at, bindparam("updated_at", type_=_links.c.updated_at.type))),
    else_=None,
)


# --- the console's look-ups -----------------------------------------------------------------------

_JIRA_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-\d+")


def looks_like_jira_key(text: str) -> bool:
    return _JIRA_KEY.fullmatch(text) is not None


def search(engine: Engine, query: str, *, limit: int = 50) -> list[LinkRecord]:
    """Links by Sentry issue id, Jira key, or (any other text) the title Sentry gave the issue in
    a webhook still in the inbox (kept for the retention period), newest first."""
    text = query.strip()
    if not text:
        return listed(engine, limit=limit)
    if text.isdigit():
        where = _links.c.sentry_issue_id == text
    elif _JIRA_KEY.fullmatch(text):
        where = func.upper(_links.c.jira_key) == text.upper()
    else:
        ids = list(deliveries.issues_titled(engine, text, limit=limit))
        if not ids:
            return []
        where = _links.c.sentry_issue_id.in_(ids)
    with reading(engine) as connection:
        rows = connection.execute(select(_links).where(where).order_by(_links.c.id.desc()).limit(limit))
        return [_link(row) for row in rows.mappings()]
