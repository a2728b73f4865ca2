"""The audit trail: every change syncer makes on either side, with its cause."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from syncer.store.schema import AuditEntry, Link, utcnow


def row(*, link: Link | None, side: str, action: str, detail: str = "", cause: str = "") -> dict[str, Any]:
    """The audit row as column values, for a prebuilt INSERT (the ticket path's; see sync/tickets.py)."""
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


def record(
    session: Session, *, link: Link | None, side: str, action: str, detail: str = "", cause: str = ""
) -> None:
    session.add(
        AuditEntry(
            link_id=link.id if link else None,
            sentry_issue_id=link.sentry_issue_id if link else "",
            jira_key=(link.jira_key or "") if link else "",
            side=side,
            action=action,
            detail=detail,
            cause=cause[:200],
        )
    )
