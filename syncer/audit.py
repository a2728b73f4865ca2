"""The audit trail: every change syncer makes on either side, with its cause."""

from __future__ import annotations

from sqlmodel import Session

from syncer.db.models import AuditEntry, Link


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
