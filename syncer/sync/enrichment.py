"""[enrichment] `new_release` on the webhook path: one comment on a linked ticket naming a release
its issue is newly seen in, read from the delivery itself (no Sentry call), once per release and
throttled with the growth comments by the ticket's `min_hours_between`."""

from __future__ import annotations

import logging

from syncer.core import growth
from syncer.core.render import sentry_issue_url
from syncer.errors import SyncerError
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import LinkRecord
from syncer.store.schema import utcnow

log = logging.getLogger(__name__)


def on_release_seen(rt: Runtime, link: LinkRecord, release: str, cause: str) -> str | None:
    """What was said (for the delivery's outcome), or None. A ticket with no release recorded yet
    (made before `new_release`, or from a webhook that named none) only records this one."""
    policy = rt.policy.enrichment
    if not policy.new_release or not release or not link.jira_key:
        return None
    if link.noted_release is None:
        links.note_release(rt.engine, link, release, telling=False)
        return None
    if not growth.release_news(policy, release=release, noted_release=link.noted_release,
                               noted_at=link.noted_at, now=utcnow()):
        return None
    if not links.note_release(rt.engine, link, release, telling=True):
        return None  # another delivery told it first
    url = sentry_issue_url(rt.settings.sentry_links_url, rt.settings.sentry_org or "", link.sentry_issue_id)
    try:
        rt.jira.add_comment(link.jira_key, f"The Sentry issue is now seen in release {release} "
                                           f"(last told: {link.noted_release}). [Open it in Sentry|{url}]")
    except SyncerError as exc:
        log.warning("%s: release comment not posted: %s", link.jira_key, exc)
        links.release_told(rt.engine, link, release, told=False)
        return None
    links.release_told(rt.engine, link, release, told=True, cause=cause)
    return f"told {link.jira_key} of release {release}"
