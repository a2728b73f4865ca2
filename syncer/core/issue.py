"""The two sides' objects as syncer sees them: parsed once at the edge, plain data everywhere else.

`SentryIssue.from_api` accepts both the webhook's `data.issue` and the REST API's issue object
(they have the same shape). It is defensive: payloads come from outside, so a missing or mistyped
field becomes a default, never a crash; only a missing `id` is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit


class PayloadError(ValueError):
    """A payload that is valid JSON but not the shape we need."""


def well_formed(text: str) -> str:
    """`text` with lone surrogates replaced by U+FFFD. JSON's `"\\ud800"` decodes to a string that no
    encoder takes (UTF-8, UTF-16, a database column), so it must not get past the edge."""
    if text.isascii():
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _text(value: Any, limit: int = 10_000) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return well_formed(value[:limit])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def _int(value: Any) -> int:
    # Sentry sends `count` as a string and `userCount` as an int.
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    if isinstance(value, float):
        return int(value)
    return 0


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 (Sentry) or epoch milliseconds (Jira) to an aware datetime; None when absent or bad."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        text = value.strip().replace("Z", "+00:00")
        # Jira writes offsets as +0000; fromisoformat wants +00:00.
        if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
            text = f"{text[:-2]}:{text[-2:]}"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _on_sentry(url: str, sentry_url: str) -> bool:
    """Whether `url` is on the host (or a subdomain of the host) and port of `sentry_url`."""
    try:
        given, base = urlsplit(url), urlsplit(sentry_url)
        given_port, base_port = given.port, base.port
    except ValueError:
        return False
    host, home = (given.hostname or "").lower(), (base.hostname or "").lower()
    return (
        given.scheme in ("http", "https")
        and "@" not in given.netloc
        and bool(home)
        and (host == home or host.endswith("." + home))
        and given_port == base_port
    )


@dataclass(frozen=True)
class SentryActor:
    """Who made a change on Sentry's side: a `user`, or an `application` (ours, or Sentry itself)."""

    type: str
    id: str
    name: str = ""
    email: str = ""

    @classmethod
    def from_api(cls, raw: Any) -> SentryActor | None:
        if not isinstance(raw, Mapping):
            return None
        return cls(
            type=_text(raw.get("type"), 50),
            id=_text(raw.get("id"), 200),
            name=_text(raw.get("name"), 200),
            email=_text(raw.get("email"), 320),
        )

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
    web_url: str = ""
    status_details: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Any) -> SentryIssue:
        if not isinstance(raw, Mapping):
            raise PayloadError("issue is not an object")
        issue_id = _text(raw.get("id"), 40)
        if not issue_id or not issue_id.isdigit():
            raise PayloadError("issue.id is missing or not numeric")
        project = raw.get("project") if isinstance(raw.get("project"), Mapping) else {}
        assert isinstance(project, Mapping)
        details = raw.get("statusDetails")
        metadata = raw.get("metadata")
        return cls(
            id=issue_id,
            short_id=_text(raw.get("shortId"), 100),
            title=_text(raw.get("title"), 10_000),
            culprit=_text(raw.get("culprit"), 10_000),
            level=_text(raw.get("level"), 50),
            status=_text(raw.get("status"), 50),
            substatus=_text(raw.get("substatus"), 50),
            issue_type=_text(raw.get("issueType") or raw.get("type"), 100),
            issue_category=_text(raw.get("issueCategory"), 100),
            platform=_text(raw.get("platform") or project.get("platform"), 100),
            project_id=_text(project.get("id"), 40),
            project_slug=_text(project.get("slug"), 200),
            project_name=_text(project.get("name"), 200),
            first_seen=parse_time(raw.get("firstSeen")),
            last_seen=parse_time(raw.get("lastSeen")),
            count=_int(raw.get("count")),
            user_count=_int(raw.get("userCount")),
            assigned_to=SentryActor.from_api(raw.get("assignedTo")),
            permalink=_text(raw.get("permalink"), 2000),
            web_url=_text(raw.get("web_url"), 2000),
            status_details=dict(details) if isinstance(details, Mapping) else {},
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        )

    def url(self, sentry_url: str, org: str) -> str:
        """A link a person can open; only `created` webhooks are sure to carry one. The payload's
        link is used only when it points at the configured Sentry (or a subdomain of it, like
        sentry.io's `<org>.sentry.io`): a payload must not choose where a ticket sends people."""
        for candidate in (self.web_url, self.permalink):
            if candidate and _on_sentry(candidate, sentry_url):
                return candidate
        return f"{sentry_url.rstrip('/')}/organizations/{org}/issues/{self.id}/"


@dataclass(frozen=True)
class JiraTicket:
    """A Jira issue's sync-relevant state."""

    id: str
    key: str
    status: str = ""
    status_id: str = ""
    status_category: str = ""  # new | indeterminate | done
    resolution: str = ""
    assignee_account_id: str = ""
    assignee_email: str = ""
    labels: tuple[str, ...] = ()
    project_key: str = ""
    updated: datetime | None = None
    issue_type_id: str = ""  # with project and status: which workflow (and transitions) applies

    @classmethod
    def from_api(cls, raw: Any) -> JiraTicket:
        """From a REST issue object or a webhook's `issue` (same shape)."""
        if not isinstance(raw, Mapping):
            raise PayloadError("issue is not an object")
        issue_id = _text(raw.get("id"), 40)
        key = _text(raw.get("key"), 100)
        if not issue_id:
            raise PayloadError("issue.id is missing")
        fields = raw.get("fields") if isinstance(raw.get("fields"), Mapping) else {}
        assert isinstance(fields, Mapping)
        status = fields.get("status") if isinstance(fields.get("status"), Mapping) else {}
        assert isinstance(status, Mapping)
        category = status.get("statusCategory") if isinstance(status.get("statusCategory"), Mapping) else {}
        assert isinstance(category, Mapping)
        resolution = fields.get("resolution") if isinstance(fields.get("resolution"), Mapping) else {}
        assert isinstance(resolution, Mapping)
        assignee = fields.get("assignee") if isinstance(fields.get("assignee"), Mapping) else {}
        assert isinstance(assignee, Mapping)
        project = fields.get("project") if isinstance(fields.get("project"), Mapping) else {}
        assert isinstance(project, Mapping)
        labels = fields.get("labels") if isinstance(fields.get("labels"), list) else []
        assert isinstance(labels, list)
        issue_type = fields.get("issuetype") if isinstance(fields.get("issuetype"), Mapping) else {}
        assert isinstance(issue_type, Mapping)
        return cls(
            id=issue_id,
            key=key,
            status=_text(status.get("name"), 200),
            status_id=_text(status.get("id"), 40),
            status_category=_text(category.get("key"), 40),
            resolution=_text(resolution.get("name"), 200),
            assignee_account_id=_text(assignee.get("accountId") or assignee.get("name"), 200),
            assignee_email=_text(assignee.get("emailAddress"), 320),
            labels=tuple(_text(label, 255) for label in labels if isinstance(label, str)),
            project_key=_text(project.get("key"), 100),
            updated=parse_time(fields.get("updated")),
            issue_type_id=_text(issue_type.get("id"), 40),
        )
