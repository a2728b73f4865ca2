"""Links by hand (`syncer links link|unlink`) and views of them (`list`, `show`)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from syncer.errors import PermanentError
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import LinkRecord
from syncer.store.schema import LinkState, utcnow
from syncer.sync.tickets import finish_backlinks


def link_by_hand(rt: Runtime, sentry_issue_id: str, jira_key: str, *, cause: str = "cli") -> LinkRecord:
    """Link the issue to an existing ticket; `cause` names who asked (`cli`, `console:<person>`)."""
    if not sentry_issue_id.isdigit():
        raise PermanentError(f"{sentry_issue_id!r} is not a Sentry issue id")
    existing = links.live(rt.engine, sentry_issue_id)
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
    link = links.create_active(
        rt.engine,
        {
            "sentry_issue_id": issue.id,
            "live_sentry_issue_id": issue.id,
            "sentry_project": issue.project_slug,
            "jira_issue_id": ticket.id,
            "jira_key": ticket.key,
            "state": LinkState.ACTIVE,
            "route": "by hand",
            "sentry_status": issue.status,
            "sentry_substatus": issue.substatus,
            "sentry_changed_at": now,
            "jira_status": ticket.status,
            "jira_status_category": ticket.status_category,
            "jira_changed_at": ticket.updated or now,
            "synced_at": now,
            "changed_by": cause[:200],
        },
        audit=[("syncer", "linked_by_hand", "")],
        cause=cause,
    )
    if link is None:
        raise PermanentError(f"sentry issue {sentry_issue_id} was linked meanwhile")
    finish_backlinks(rt, link, "", cause)
    return link


def unlink(rt: Runtime, sentry_issue_id: str) -> None:
    if links.unlink(rt.engine, sentry_issue_id, cause="cli", audit=[("syncer", "unlinked", "")]) is None:
        raise PermanentError(f"sentry issue {sentry_issue_id} has no live link")


def list_links(engine: Engine, *, state: str | None = None, limit: int = 100) -> list[LinkRecord]:
    return links.listed(engine, state=state, limit=limit)


def format_row(link: LinkRecord) -> str:
    return (
        f"{link.sentry_issue_id:>12}  {link.jira_key or '-':<12} {link.state:<10} "
        f"sentry={link.sentry_status or '?':<11} jira={link.jira_status or '?':<12} {link.route}"
    )


def format_detail(engine: Engine, sentry_issue_id: str) -> str:
    found, entries = links.history(engine, sentry_issue_id)
    if not found and not entries:
        return f"sentry issue {sentry_issue_id}: no links"
    # An issue a notify route left to its channel has no link, but what people did in Slack is audited.
    lines = [] if found else [f"sentry issue {sentry_issue_id}: no links"]
    for link in found:
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
