"""Links by hand (`syncer links link|unlink`) and views of them (`list`, `show`)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from syncer.errors import PermanentError
from syncer.runtime import Runtime
from syncer.store import audit
from syncer.store.engine import session_scope
from syncer.store.schema import AuditEntry, Link, LinkState, utcnow
from syncer.sync import claims
from syncer.sync.tickets import finish_backlinks


def link_by_hand(rt: Runtime, sentry_issue_id: str, jira_key: str) -> Link:
    if not sentry_issue_id.isdigit():
        raise PermanentError(f"{sentry_issue_id!r} is not a Sentry issue id")
    existing = claims.live_link(rt.engine, sentry_issue_id)
    if existing is not None:
        raise PermanentError(
            f"sentry issue {sentry_issue_id} is already linked to {existing.jira_key or '(pending)'}; "
            "unlink it first"
        )
    ticket = rt.jira.get_ticket(jira_key)
    if ticket is None:
        raise PermanentError(f"Jira has no ticket {jira_key}")
    issue = rt.sentry.get_issue(sentry_issue_id)
    now = utcnow()
    try:
        with session_scope(rt.engine) as session:
            link = Link(
                sentry_issue_id=issue.id,
                live_sentry_issue_id=issue.id,
                sentry_project=issue.project_slug,
                jira_issue_id=ticket.id,
                jira_key=ticket.key,
                state=LinkState.ACTIVE,
                route="by hand",
                sentry_status=issue.status,
                sentry_substatus=issue.substatus,
                sentry_changed_at=now,
                jira_status=ticket.status,
                jira_status_category=ticket.status_category,
                jira_changed_at=ticket.updated or now,
                synced_at=now,
                changed_by="cli",
            )
            session.add(link)
            session.flush()
            audit.record(session, link=link, side="syncer", action="linked_by_hand", cause="cli")
    except IntegrityError:
        raise PermanentError(f"sentry issue {sentry_issue_id} was linked meanwhile") from None
    finish_backlinks(rt, link, "", "cli")
    return link


def unlink(rt: Runtime, sentry_issue_id: str) -> None:
    with session_scope(rt.engine) as session:
        link = session.exec(select(Link).where(Link.live_sentry_issue_id == sentry_issue_id)).first()
        if link is None:
            raise PermanentError(f"sentry issue {sentry_issue_id} has no live link")
        link.state = LinkState.UNLINKED
        link.live_sentry_issue_id = None
        link.updated_at = utcnow()
        link.changed_by = "cli"
        audit.record(session, link=link, side="syncer", action="unlinked", cause="cli")


def list_links(engine: Engine, *, state: str | None = None, limit: int = 100) -> list[Link]:
    with Session(engine) as session:
        query = select(Link).order_by(col(Link.id).desc()).limit(limit)
        if state:
            query = query.where(Link.state == state)
        return list(session.exec(query).all())


def format_row(link: Link) -> str:
    return (
        f"{link.sentry_issue_id:>12}  {link.jira_key or '-':<12} {link.state:<10} "
        f"sentry={link.sentry_status or '?':<11} jira={link.jira_status or '?':<12} {link.route}"
    )


def format_detail(engine: Engine, sentry_issue_id: str) -> str:
    with Session(engine) as session:
        links = session.exec(
            select(Link).where(Link.sentry_issue_id == sentry_issue_id).order_by(col(Link.id))
        ).all()
        if not links:
            return f"sentry issue {sentry_issue_id}: no links"
        entries = session.exec(
            select(AuditEntry)
            .where(AuditEntry.sentry_issue_id == sentry_issue_id)
            .order_by(col(AuditEntry.id))
        ).all()
    lines = []
    for link in links:
        lines.append(format_row(link))
        lines.append(
            f"    jira id {link.jira_issue_id or '-'}, team {link.team or '-'}, route {link.route or '-'}, "
            f"synced {link.synced_at or '-'}, last change by {link.changed_by or '-'}"
        )
    lines.append("audit:")
    for entry in entries:
        lines.append(
            f"  {entry.at:%Y-%m-%d %H:%M:%S} {entry.side:<7} {entry.action:<16} "
            f"{entry.detail} [{entry.cause}]"
        )
    return "\n".join(lines)
