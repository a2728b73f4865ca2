"""Sentry's issue and actor JSON, read into syncer's plain types (`syncer.core.issue`).

The REST API's issue object and a webhook's `data.issue` have the same shape, so the client and the
webhook parser both read issues here. Defensive: payloads come from outside, so a missing or
mistyped field becomes a default, never a crash; only a missing or non-numeric `id` is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from syncer.core.issue import SentryActor, SentryIssue
from syncer.errors import PayloadError
from syncer.payload import as_int, as_mapping, as_text, as_time
from syncer.policy import SENTRY_PRIORITIES

# A short ID is the project's slug upper-cased, a hyphen and a counter in base 32 (`BILLING-API-3F`:
# getsentry/sentry `Group.qualified_short_id`; slugs are letters, digits, `_` and `-`). Anything else
# in that field is not Sentry's, and it would be shown as a ticket's link text: dropped, the issue's
# numeric id is shown instead.
_SHORT_ID = re.compile(r"[A-Z0-9_-]+-[A-Z0-9]+")


def parse_actor(raw: Any) -> SentryActor | None:
    """Who made a change (`actor`), or who is assigned (`assignedTo`, `data.assignee`)."""
    if not isinstance(raw, Mapping):
        return None
    return SentryActor(
        type=as_text(raw.get("type"), 50),
        id=as_text(raw.get("id"), 200),
        name=as_text(raw.get("name"), 200),
        email=as_text(raw.get("email"), 320),
    )


def _short_id(raw: Any) -> str:
    text = as_text(raw, 100)
    return text if _SHORT_ID.fullmatch(text) else ""


def _priority(raw: Any) -> str:
    text = as_text(raw, 20).lower()
    return text if text in SENTRY_PRIORITIES else ""


def parse_issue(raw: Any) -> SentryIssue:
    if not isinstance(raw, Mapping):
        raise PayloadError("issue is not an object")
    issue_id = as_text(raw.get("id"), 40)
    if not issue_id or not issue_id.isdigit():
        raise PayloadError("issue.id is missing or not numeric")
    project = as_mapping(raw.get("project"))
    details = raw.get("statusDetails")
    metadata = raw.get("metadata")
    return SentryIssue(
        id=issue_id,
        short_id=_short_id(raw.get("shortId")),
        title=as_text(raw.get("title"), 10_000),
        culprit=as_text(raw.get("culprit"), 10_000),
        level=as_text(raw.get("level"), 50),
        status=as_text(raw.get("status"), 50),
        substatus=as_text(raw.get("substatus"), 50),
        issue_type=as_text(raw.get("issueType") or raw.get("type"), 100),
        issue_category=as_text(raw.get("issueCategory"), 100),
        platform=as_text(raw.get("platform") or project.get("platform"), 100),
        project_id=as_text(project.get("id"), 40),
        project_slug=as_text(project.get("slug"), 200),
        project_name=as_text(project.get("name"), 200),
        first_seen=as_time(raw.get("firstSeen")),
        last_seen=as_time(raw.get("lastSeen")),
        count=as_int(raw.get("count")),
        user_count=as_int(raw.get("userCount")),
        assigned_to=parse_actor(raw.get("assignedTo")),
        permalink=as_text(raw.get("permalink"), 2000),
        web_url=as_text(raw.get("web_url"), 2000),
        # GroupSerializer's `priority` (PriorityLevel.to_str: "low" | "medium" | "high"), absent in
        # versions before it; anything else is not one and is left out.
        priority=_priority(raw.get("priority")),
        status_details=dict(details) if isinstance(details, Mapping) else {},
        metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        first_release=as_text(as_mapping(raw.get("firstRelease")).get("version"), 200),
        last_release=as_text(as_mapping(raw.get("lastRelease")).get("version"), 200),
        annotations=_annotations(raw.get("annotations")),
    )


def _annotations(raw: Any) -> tuple[str, ...] | None:
    # PlatformExternalIssue.get_annotations_for_group_list: `{"url", "displayName"}` per link, in
    # every issue the API serializes (the list too); older plugins' annotations are plain strings.
    if not isinstance(raw, list):
        return None
    urls = [item.get("url") if isinstance(item, Mapping) else item for item in raw[:100]]
    return tuple(url[:2000] for url in urls if isinstance(url, str))
