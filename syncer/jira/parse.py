"""Jira's issue JSON, read into syncer's plain `JiraTicket` (`syncer.core.issue`).

A REST issue object and a webhook's `issue` have the same shape, so the client and the webhook
parser both read tickets here. Defensive: a missing or mistyped field becomes a default; only a
missing `id` is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncer.core.issue import JiraTicket
from syncer.errors import PayloadError
from syncer.payload import as_mapping, as_text, as_time


def parse_ticket(raw: Any) -> JiraTicket:
    if not isinstance(raw, Mapping):
        raise PayloadError("issue is not an object")
    issue_id = as_text(raw.get("id"), 40)
    key = as_text(raw.get("key"), 100)
    if not issue_id:
        raise PayloadError("issue.id is missing")
    fields = as_mapping(raw.get("fields"))
    status = as_mapping(fields.get("status"))
    category = as_mapping(status.get("statusCategory"))
    resolution = as_mapping(fields.get("resolution"))
    assignee = as_mapping(fields.get("assignee"))
    labels = fields.get("labels") if isinstance(fields.get("labels"), list) else []
    assert isinstance(labels, list)
    return JiraTicket(
        id=issue_id,
        key=key,
        status=as_text(status.get("name"), 200),
        status_id=as_text(status.get("id"), 40),
        status_category=as_text(category.get("key"), 40),
        resolution=as_text(resolution.get("name"), 200),
        # accountId on Cloud, name on Server/DC
        assignee_account_id=as_text(assignee.get("accountId") or assignee.get("name"), 200),
        assignee_email=as_text(assignee.get("emailAddress"), 320),
        labels=tuple(as_text(label, 255) for label in labels if isinstance(label, str)),
        project_key=as_text(as_mapping(fields.get("project")).get("key"), 100),
        updated=as_time(fields.get("updated")),
        issue_type_id=as_text(as_mapping(fields.get("issuetype")).get("id"), 40),
        priority=as_text(as_mapping(fields.get("priority")).get("name"), 200),
    )
