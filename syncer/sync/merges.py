"""Merged Sentry issues. Sentry sends no webhook for a merge; a read of a merged-away id answers the
issue it was merged into, with that issue's id (GroupEndpoint follows GroupRedirect, getsentry/sentry
`api/bases/group.py`), and the `group=` lookup no longer lists it. Whoever reads the link's issue
and meets another id (reconciliation's pages, a Jira webhook's handler) calls `follow`, under the
link's lock, so both paths do the same.

`[merges] on_merge` decides: "move" (default) hands this ticket to the issue merged into when that
issue has no ticket; when it has one (or with "close"), this link ends (`merged`, kept for audit) and
its ticket gets a comment naming the issue, and the surviving ticket when there is one. No ticket is
ever deleted or closed by it: a person decides."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from syncer.core.issue import SentryIssue
from syncer.core.render import sentry_issue_url
from syncer.errors import SyncerError
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import LinkRecord
from syncer.sync import tickets
from syncer.sync.outcome import Outcome

log = logging.getLogger(__name__)


def follow(
    rt: Runtime, link: LinkRecord, target: SentryIssue, *, cause: str, installation_uuid: str = ""
) -> tuple[Outcome, LinkRecord | None]:
    """`link`'s issue was merged into `target`: (what was done, the link carrying on with the target,
    or None when this link ended)."""
    old = link.sentry_issue_id
    why = f"Sentry issue {old} was merged into {target.id}"
    if rt.policy.merges.on_merge == "move":
        moved = links.move_to_issue(
            rt.engine, link, target.id, cause=cause, why=f"{why}: {link.jira_key} follows it",
            sentry_project=target.project_slug[:200], sentry_status=target.status[:40],
            sentry_substatus=target.substatus[:60],
        )
        if moved is not None:
            note = f"{why}: {link.jira_key} now follows {target.id}"
            _back_links(rt, moved, installation_uuid, cause)
            return Outcome(note), moved
    survivor = links.live(rt.engine, target.id)
    surviving = survivor.jira_key if survivor is not None and survivor.jira_key else None
    # The comment before the link ends: a retry after a failure repeats it rather than losing it.
    assert link.jira_key is not None
    rt.jira.add_comment(link.jira_key, merge_comment(rt, old, target, surviving))
    ending = f"{why}, whose ticket is {surviving}" if surviving else why
    links.mark_merged(rt.engine, link, cause=cause, why=f"{ending}: {link.jira_key} kept, no longer synced")
    return Outcome(f"{ending}: link of {link.jira_key} ended, the ticket commented"), None


def merge_comment(rt: Runtime, old: str, target: SentryIssue, surviving: str | None) -> str:
    url = sentry_issue_url(rt.settings.sentry_links_url, rt.settings.sentry_org or "", target.id)
    name = f"{target.short_id} ({target.id})" if target.short_id else target.id
    lines = [f"Sentry issue {old} was merged into [{name}|{url}]."]
    if surviving:
        lines.append(f"That issue's ticket is {surviving}: this one is kept, and no longer synced.")
    else:
        lines.append("This ticket is kept, and no longer synced with Sentry.")
    return "\n".join(lines)


def _back_links(rt: Runtime, moved: LinkRecord, installation_uuid: str, cause: str) -> None:
    """The ticket's links to its new issue, both ways (Sentry does not carry external issues over
    in a merge). A failure leaves them to reconciliation (`backlinks_missing`): the move holds."""
    try:
        tickets.finish_backlinks(rt, moved, installation_uuid, cause)
    except (SyncerError, SQLAlchemyError) as exc:
        log.warning("merge: back-links of %s to sentry issue %s: %s",
                    moved.jira_key, moved.sentry_issue_id, exc)
