"""Jira's webhooks, verified and parsed into plain events. Pure: no I/O, no clock.

A delivery is authentic when its `X-Hub-Signature: sha256=<hex>` is the HMAC-SHA256 of the raw body
under the webhook's secret (or, for Jira setups that cannot sign, when the URL's `?token=` matches).
`X-Atlassian-Webhook-Identifier` is stable across Jira's retries, so it names the delivery for dedup.

Payloads come from outside: `parse_event` turns any shape it cannot use into `PayloadError` and
mistyped optional fields into defaults; it never raises anything else. Unknown `webhookEvent` values
parse fine: `HANDLED_EVENTS` and `IGNORED_EVENTS` are the one table of what syncer does with each,
consulted at intake (`receive`), and the worker (`syncer.sync.dispatch`) has one handler per `Job`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from syncer.core.issue import JiraTicket
from syncer.errors import PayloadError, WrongFormat
from syncer.jira.parse import parse_ticket
from syncer.lanes import jira_lane
from syncer.payload import Envelope, as_mapping, as_time, decode_object, well_formed

SIGNATURE_PREFIX = "sha256="
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
_IDENTIFIER = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
MAX_CHANGELOG_ITEMS = 500


class Job(StrEnum):
    """What a handled event asks of syncer."""

    TICKET_UPDATED = "ticket_updated"  # a transition, an edit or a comment: follow it in Sentry
    TICKET_DELETED = "ticket_deleted"  # the link is broken
    COMMENT = "comment"  # written, edited or deleted: copied to Sentry when [comments] says so


# webhookEvent -> the job. Each handler re-reads what it needs; the payload is a hint.
HANDLED_EVENTS: Mapping[str, Job] = {
    "jira:issue_updated": Job.TICKET_UPDATED,
    "jira:issue_deleted": Job.TICKET_DELETED,
    "comment_created": Job.COMMENT,
    "comment_updated": Job.COMMENT,
    "comment_deleted": Job.COMMENT,
}
# Events the webhook the README sets up sends that syncer does nothing with, and why. Anything in
# neither table is ignored too, as an event syncer has no handler for.
IGNORED_EVENTS: Mapping[str, str] = {
    # Every ticket syncer creates is announced back; running a task only to ignore it cost a fifth
    # of the worker's CPU per ticket (docs/benchmarks.md), so intake stores it as ignored at once.
    "jira:issue_created": "tickets are created from Sentry, not followed from Jira",
}


def unhandled(webhook_event: str) -> str | None:
    """Why an event will be ignored, or None when a handler runs for it."""
    event = webhook_event[:100]
    if event in HANDLED_EVENTS:
        return None
    reason = IGNORED_EVENTS.get(event)
    return f"jira {event}: {reason}" if reason else f"no handler for jira {event}"


def receive(body: bytes) -> Envelope:
    """What intake stores about a delivery: its `webhookEvent` (as the resource), its
    `issue_event_type_name` (as the action), and whether it will be ignored. PayloadError when the
    body is not a JSON object, WrongFormat when it is Jira 5's post-function body. An event that is
    missing or not text is left for the worker, whose parse makes it a dead letter."""
    payload = decode_object(body)
    event, kind = payload.get("webhookEvent"), payload.get("issue_event_type_name")
    if event is None and isinstance(payload.get("transition"), Mapping):
        # Jira 5's webhook, still what a workflow post function's "trigger a webhook" sends: a
        # `transition` object (workflowName, transitionName, from_status, to_status) beside the
        # issue, and no `webhookEvent`. Top-level keys only: intake is benchmarked.
        raise WrongFormat(
            "Jira 5's post-function (transition) webhook format",
            "syncer takes Jira's system webhooks (jira:issue_updated, with a changelog): register "
            "one as the README says and take the URL out of the workflow's post function",
        )
    event = event if isinstance(event, str) else ""
    return Envelope(event, kind if isinstance(kind, str) else "", (unhandled(event) or "") if event else "",
                    lane=jira_lane(event, payload))


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is `sha256=<hex HMAC-SHA256 of body under secret>`."""
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    given = header[len(SIGNATURE_PREFIX):].strip()
    if not _HEX_DIGEST.match(given):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.lower())


def verify_token(secret: str, token: str | None) -> bool:
    """The `?token=` alternative for webhooks registered without a secret."""
    if not secret or not token:
        return False
    return hmac.compare_digest(secret.encode(), token.encode())


# Jira Cloud retries a delivery for up to about 30 minutes (wire-formats.md).
RETRIED_WITHIN = timedelta(minutes=35)


def delivery_key(identifier_header: str | None, body: bytes) -> str:
    """What names one delivery for dedup: Jira's identifier, or else the body's hash."""
    if identifier_header is not None:
        identifier = identifier_header.strip()
        if _IDENTIFIER.match(identifier):
            return identifier
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


@dataclass(frozen=True)
class ChangeItem:
    """One entry of `changelog.items`: ids in from/to, display values in the strings."""

    field: str
    from_id: str = ""
    from_string: str = ""
    to_id: str = ""
    to_string: str = ""


@dataclass(frozen=True)
class JiraEvent:
    webhook_event: str  # jira:issue_created | jira:issue_updated | jira:issue_deleted | comment_created | ...
    event_type_name: str = ""  # issue_event_type_name: issue_generic, issue_assigned, issue_commented, ...
    timestamp: datetime | None = None
    user_id: str = ""  # accountId on Cloud, name on Server/DC: compare with our bot's to spot echoes
    ticket: JiraTicket | None = None
    changelog: tuple[ChangeItem, ...] = ()
    comment: str = ""
    comment_id: str = ""
    comment_author: str = ""  # the author's display name
    # Jira Service Management: a comment the customer sees (jsdPublic on a service project's ticket).
    # Every Cloud comment carries jsdPublic, true outside service projects too, so both are needed.
    comment_customer_visible: bool = False

    @property
    def job(self) -> Job | None:
        return HANDLED_EVENTS.get(self.webhook_event)

    def change(self, field_name: str) -> ChangeItem | None:
        """The last change to `field_name` (case-insensitive) in this event's changelog."""
        wanted = field_name.lower()
        for item in reversed(self.changelog):
            if item.field.lower() == wanted:
                return item
        return None

    def status_change(self) -> ChangeItem | None:
        return self.change("status")

    def assignee_change(self) -> ChangeItem | None:
        return self.change("assignee")


def _text(value: Any, limit: int) -> str:
    if isinstance(value, str):
        return well_formed(value[:limit])
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)[:limit]
    return ""


def _user_id(user: Any) -> str:
    user = as_mapping(user)
    return _text(user.get("accountId"), 200) or _text(user.get("name"), 200) or _text(user.get("key"), 200)


def _change_item(raw: Mapping[str, Any]) -> ChangeItem:
    # Cloud's assignee items also carry tmpFromAccountId/tmpToAccountId; from/to hold the same ids.
    return ChangeItem(
        field=_text(raw.get("field") or raw.get("fieldId"), 200),
        from_id=_text(raw.get("from"), 1000) or _text(raw.get("tmpFromAccountId"), 200),
        from_string=_text(raw.get("fromString"), 10_000),
        to_id=_text(raw.get("to"), 1000) or _text(raw.get("tmpToAccountId"), 200),
        to_string=_text(raw.get("toString"), 10_000),
    )


def parse_event(payload: Any) -> JiraEvent:
    """Parse one delivery. `payload` is the raw body (bytes or str), or the decoded JSON."""
    if isinstance(payload, (bytes, bytearray, str)):
        payload = decode_object(payload)
    if not isinstance(payload, Mapping):
        raise PayloadError("webhook body is not an object")
    raw_event = payload.get("webhookEvent")
    if not isinstance(raw_event, str) or not raw_event:
        raise PayloadError("webhookEvent is missing or not text")
    webhook_event = raw_event[:100]
    raw_issue = payload.get("issue")
    if raw_issue is None and webhook_event.startswith("jira:issue_"):
        raise PayloadError(f"{webhook_event} without an issue")
    ticket = parse_ticket(raw_issue) if raw_issue is not None else None
    comment = as_mapping(payload.get("comment"))
    items = as_mapping(payload.get("changelog")).get("items")
    changelog = tuple(
        _change_item(item)
        for item in (items if isinstance(items, list) else [])[:MAX_CHANGELOG_ITEMS]
        if isinstance(item, Mapping)
    )
    return JiraEvent(
        webhook_event=webhook_event,
        event_type_name=_text(payload.get("issue_event_type_name"), 100),
        timestamp=as_time(payload.get("timestamp")),
        # Comment events carry no top-level user on Cloud: the comment's author acted.
        user_id=_user_id(payload.get("user")) or _user_id(comment.get("updateAuthor"))
        or _user_id(comment.get("author")),
        ticket=ticket,
        changelog=changelog,
        comment=_text(comment.get("body"), 100_000),
        comment_id=_text(comment.get("id"), 40),
        comment_author=_text(as_mapping(comment.get("author")).get("displayName"), 200),
        comment_customer_visible=(comment.get("jsdPublic") is True
                                  and _project_type(raw_issue) == "service_desk"),
    )


def _project_type(raw_issue: Any) -> str:
    project = as_mapping(as_mapping(as_mapping(raw_issue).get("fields")).get("project"))
    return _text(project.get("projectTypeKey"), 50)
