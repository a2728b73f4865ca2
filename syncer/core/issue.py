"""The two sides' objects as syncer sees them: plain data, everywhere past the edges.

Each edge reads its vendor's JSON into these (`syncer.sentry.parse`, `syncer.jira.parse`), so
nothing here knows a field name of either API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SentryActor:
    """Who made a change on Sentry's side: a `user`, or an `application` (ours, or Sentry itself)."""

    type: str
    id: str
    name: str = ""
    email: str = ""

    def as_owner(self) -> str:
        """The `type:name` form routes use, e.g. `team:payments` or `user:alice@example.com`."""
        return f"{self.type}:{self.email or self.name or self.id}"


@dataclass(frozen=True)
class SentryIssue:
    id: str
    short_id: str = ""
    title: str = ""
    culprit: str = ""
    level: str = ""
    status: str = ""
    substatus: str = ""
    issue_type: str = ""
    issue_category: str = ""
    platform: str = ""
    project_id: str = ""
    project_slug: str = ""
    project_name: str = ""
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int = 0
    user_count: int = 0
    assigned_to: SentryActor | None = None
    permalink: str = ""
    web_url: str = ""  # only `created` webhooks are sure to carry one
    priority: str = ""  # high | medium | low; "" from Sentry before issue priority (2024)
    status_details: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # The versions of the releases its first and latest events named: in the issue's details only
    # (`GET .../issues/{id}/`), not in webhooks or lists; "" when unknown.
    first_release: str = ""
    last_release: str = ""
    # The URLs of the issue's external issues (GroupSerializer's `annotations`: plugin and
    # integration-platform links), or None when the answer had no `annotations` at all.
    annotations: tuple[str, ...] | None = None


@dataclass(frozen=True)
class JiraTicket:
    """A Jira issue's sync-relevant state."""

    id: str
    key: str
    status: str = ""
    status_id: str = ""
    status_category: str = ""  # new | indeterminate | done
    resolution: str = ""
    assignee_account_id: str = ""  # accountId on Cloud, name on Server/DC
    assignee_email: str = ""
    labels: tuple[str, ...] = ()
    project_key: str = ""
    updated: datetime | None = None
    issue_type_id: str = ""  # with project and status: which workflow (and transitions) applies
    priority: str = ""  # the priority's name
