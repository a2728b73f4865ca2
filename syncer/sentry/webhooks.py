"""Sentry's integration-platform webhooks (inbound): verify, identify, parse. Pure: no I/O, no clock.

A delivery is `POST` with headers `Sentry-Hook-Resource`, `Sentry-Hook-Signature` (hex HMAC-SHA256 of
the raw body, keyed with the integration's client secret), `Sentry-Hook-Timestamp` (unsigned) and
`Request-ID` (new on every attempt), and a body `{"action", "installation": {"uuid"}, "actor", "data"}`.
Bodies come from the internet: anything malformed becomes `PayloadError`, never another exception.

`HANDLED_EVENTS` and `IGNORED_EVENTS` are the one table of what syncer does with each event; the
worker (`syncer.sync.dispatch`) has one handler for each `Job` and records the rest as ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from syncer.core.choices import settings_values
from syncer.core.issue import SentryActor, SentryIssue
from syncer.errors import PayloadError, WrongFormat
from syncer.lanes import sentry_lane
from syncer.payload import Envelope, decode_object
from syncer.sentry.parse import parse_actor, parse_issue
from syncer.sentry.ui import RESOURCE, FormRequest, parse_form

ISSUE_ACTIONS = frozenset({"created", "resolved", "assigned", "ignored", "archived", "unresolved"})
COMMENT_ACTIONS = frozenset({"created", "updated", "deleted"})


class Job(StrEnum):
    """What a handled event asks of syncer."""

    ENSURE_TICKET = "ensure_ticket"  # an issue that matches a route has its ticket
    UNRESOLVED = "unresolved"  # linked: reopen, or open a successor; not yet: ensure a ticket
    ASSIGNED = "assigned"  # linked: follow the assignee; not yet: ensure a ticket
    STATUS = "status"  # resolved or archived: close or mark the ticket
    FORM_CREATE = "form_create"  # the issue-link create form in Sentry's issue page
    FORM_LINK = "form_link"  # the issue-link link form: an existing ticket named by a person
    COMMENT = "comment"  # a note written, edited or deleted: copied to Jira when [comments] says so
    INSTALLATION = "installation"  # installed or uninstalled: external-issue links go on or stop


# (resource, action) -> the job. Each handler re-reads what it needs; the payload is a hint.
HANDLED_EVENTS: Mapping[tuple[str, str], Job] = {
    ("issue", "created"): Job.ENSURE_TICKET,
    ("issue", "unresolved"): Job.UNRESOLVED,
    ("issue", "assigned"): Job.ASSIGNED,
    ("issue", "resolved"): Job.STATUS,
    ("issue", "ignored"): Job.STATUS,  # older installations' word for archived
    ("issue", "archived"): Job.STATUS,
    ("event_alert", "triggered"): Job.ENSURE_TICKET,  # an alert rule with syncer as its action
    # Not webhooks: the submissions of Sentry's issue-link forms, stored in the inbox by the web's
    # screen endpoints (syncer.web.sentry_ui) so that the worker files them like any event.
    ("comment", "created"): Job.COMMENT,
    ("comment", "updated"): Job.COMMENT,
    ("comment", "deleted"): Job.COMMENT,
    (RESOURCE, "create"): Job.FORM_CREATE,
    (RESOURCE, "link"): Job.FORM_LINK,
    ("installation", "created"): Job.INSTALLATION,
    ("installation", "deleted"): Job.INSTALLATION,
}
# Events Sentry sends an integration that syncer does nothing with, and why. Anything in neither
# table is ignored too, as an event syncer has no handler for.
IGNORED_EVENTS: Mapping[tuple[str, str], str] = {
    ("error", "created"): "errors reach syncer as the issues they are grouped into",
    ("metric_alert", "critical"): "metric alerts name no issue",
    ("metric_alert", "warning"): "metric alerts name no issue",
    ("metric_alert", "resolved"): "metric alerts name no issue",
}


def unhandled(resource: str, action: str) -> str | None:
    """Why an event will be ignored, or None when a handler runs for it."""
    event = (resource[:50], action[:50])
    if event in HANDLED_EVENTS:
        return None
    name = f"sentry {event[0]}.{event[1]}"
    reason = IGNORED_EVENTS.get(event)
    return f"{name}: {reason}" if reason else f"no handler for {name}"


# The body of Sentry's legacy "WebHooks" plugin (per project, before the integration platform):
# the issue's fields at the top level, no `action`/`data` (getsentry/sentry `sentry_plugins/webhooks`
# WebHooksPlugin.get_group_data, kept as `build_legacy_webhook_payload` by the workflow engine).
_LEGACY_PLUGIN_KEYS = frozenset({"project_slug", "triggering_rules", "project_name"})


def receive(resource: str, body: bytes) -> Envelope:
    """What intake stores about a delivery (`resource` is the `Sentry-Hook-Resource` header): its
    action. PayloadError when the body is not a JSON object, WrongFormat when it is the legacy
    plugin's. Unlike Jira's, Sentry's unhandled events are rare (the integration subscribes to
    issues), so all of them go to the worker, which records the ignored ones with `unhandled`'s
    reason."""
    payload = decode_object(body)
    action = payload.get("action")
    if action is None and "data" not in payload and not _LEGACY_PLUGIN_KEYS.isdisjoint(payload):
        # Top-level keys only: intake is benchmarked, and these never occur in the platform's body.
        raise WrongFormat(
            "Sentry's legacy WebHooks plugin format",
            "syncer takes the integration platform's webhooks (an internal integration, see the "
            "README's Sentry set-up); turn the plugin off for this URL",
        )
    action = action if isinstance(action, str) else ""
    return Envelope(resource, action, lane=sentry_lane(resource, action))

_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """Whether `signature` (the `Sentry-Hook-Signature` header) is the HMAC-SHA256 of the raw `body`.

    Compared in constant time over the digest bytes, so hex case does not matter (Sentry sends lower
    case); anything that is not exactly 64 hex digits is refused, as is an empty secret (which would
    make every forged signature computable)."""
    if not secret or not isinstance(body, (bytes, bytearray)) or not isinstance(signature, str):
        return False
    if not _SIGNATURE.fullmatch(signature):
        return False
    expected = hmac.new(secret.encode(), bytes(body), hashlib.sha256).digest()
    return hmac.compare_digest(expected, bytes.fromhex(signature))


# Sentry retries a delivery up to 3 times, 5 minutes apart (wire-formats.md, "Delivery"). A look-alike
# body stored longer ago than this is a new event, not a retry.
RETRIED_WITHIN = timedelta(minutes=20)


def delivery_key(resource: str, body: bytes) -> str:
    """The identity of one delivery, for deduplication: sha256 over the resource and the raw body.

    Sentry's `Request-ID` is new on every attempt (its retried task rebuilds the request), so it cannot
    tell a retry from a new event; the body of a retry is the same bytes, so its hash can. Two genuinely
    different events with byte-identical bodies (the same issue resolved twice with nothing else
    changed) share a key too: the key counts only within `RETRIED_WITHIN` of the first (later, the
    inbox stores the look-alike as new), and handlers re-read current state rather than trust the
    event, so a retry let through costs nothing; a repeat within that time is what reconciliation
    catches."""
    digest = hashlib.sha256()
    digest.update(resource.encode("utf-8", "replace"))
    digest.update(b"\x00")
    digest.update(bytes(body))
    return digest.hexdigest()


def timestamp_ok(header: str | None, now: float, window_seconds: float) -> bool:
    """Replay-window check of `Sentry-Hook-Timestamp` (Unix seconds) against `now`; a window of 0
    turns the check off.

    Absent -> refused while the window is on: Sentry sends the header with every delivery
    (wire-formats.md), so a delivery without it is not Sentry's, or a proxy stripped it; the window
    would mean nothing if leaving the header out got past it. Such a proxy's operator turns the
    window off. Present but malformed -> refused. Each retry carries a fresh timestamp, so a window
    of a few minutes does not refuse Sentry's own retries."""
    if window_seconds <= 0:
        return True
    if header is None or header == "":
        return False
    if not isinstance(header, str) or not _TIMESTAMP.fullmatch(header.strip()):
        return False
    return abs(now - float(header.strip())) <= window_seconds


@dataclass(frozen=True)
class SentryEvent:
    """One parsed webhook. `issue` is set for the `issue` resource; `issue_id` for every event about an
    issue (from `data.issue.id`, `data.event.issue_id` for alerts, `data.issue_id` for comments)."""

    resource: str
    action: str
    installation_uuid: str = ""
    actor: SentryActor | None = None
    issue: SentryIssue | None = None
    issue_id: str | None = None
    resolution_type: str = ""  # `resolved`: now | in_release | in_next_release | in_commit | with_commit
    assignee: SentryActor | None = None  # `assigned`: data.assignee, else the issue's assignedTo
    rule: str = ""  # `event_alert`: the label of the triggered rule
    # `event_alert`: the rule's saved syncer settings (`data.issue_alert.settings`), name -> value.
    alert_settings: Mapping[str, str] = field(default_factory=dict)
    form: FormRequest | None = None  # an issue-link form's submission
    comment_id: str = ""  # `comment`: data.comment_id, the note's id
    comment: str = ""  # `comment`: data.comment, the note's text (as it was, for `deleted`)
    # The release the event names ([enrichment] `new_release`): an alert's event's, or an issue
    # webhook's `lastRelease` when it carries one; "" when it names none.
    release: str = ""

    @property
    def job(self) -> Job | None:
        return HANDLED_EVENTS.get((self.resource, self.action))

    def is_own_echo(self, app_id: str | None) -> bool:
        """Whether our own integration made this change (a change we made through the API coming back)."""
        return (
            bool(app_id)
            and self.actor is not None
            and self.actor.type == "application"
            and self.actor.id == app_id
        )


def parse_event(resource: str, payload: Any) -> SentryEvent:
    """Parse one delivery. `payload` is the raw body (bytes or str), or the decoded JSON.

    Events we use (issue.*, event_alert.triggered, comment.*) must have the shape we need, else
    PayloadError; other resources and actions parse to an event with what could be read, for the
    dispatcher to ignore."""
    if not isinstance(resource, str):
        raise PayloadError("resource is not a string")
    if isinstance(payload, (bytes, bytearray, str)):
        payload = decode_object(payload)
    if not isinstance(payload, Mapping):
        raise PayloadError("webhook body is not an object")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise PayloadError("action is missing")
    installation = payload.get("installation")
    uuid = installation.get("uuid") if isinstance(installation, Mapping) else None
    data = payload.get("data")
    data = data if isinstance(data, Mapping) else {}
    base = SentryEvent(
        resource=resource[:50],
        action=action[:50],
        installation_uuid=uuid[:100] if isinstance(uuid, str) else "",
        actor=parse_actor(payload.get("actor")),
    )
    if resource == "issue":
        return _issue_event(base, action, data)
    if resource == "event_alert":
        event = data.get("event")
        issue_id = _alert_issue_id(event) if isinstance(event, Mapping) else None
        if action == "triggered" and issue_id is None:
            raise PayloadError("event_alert names no issue (no data.event.issue_id, issue_url or web_url)")
        rule = data.get("triggered_rule")
        alert = data.get("issue_alert")
        settings = settings_values(alert.get("settings")) if isinstance(alert, Mapping) else {}
        return replace(base, issue_id=issue_id, rule=rule[:500] if isinstance(rule, str) else "",
                       alert_settings=settings,
                       release=_event_release(event) if isinstance(event, Mapping) else "")
    if resource == RESOURCE:
        form = parse_form(action, data)  # the web stores {"action", "data": <the form body>}
        return replace(base, issue_id=form.issue_id, form=form, actor=form.actor,
                       installation_uuid=form.installation_uuid)
    if resource == "installation":
        # data.installation is the whole installation (SentryAppInstallationSerializer); its uuid is
        # the one the top-level `installation` names too.
        inner = data.get("installation")
        uuid = inner.get("uuid") if isinstance(inner, Mapping) else None
        if isinstance(uuid, str) and uuid:
            return replace(base, installation_uuid=uuid[:100])
        return base
    if resource == "comment":
        issue_id = _numeric_id(data.get("issue_id"))
        comment_id = _numeric_id(data.get("comment_id"))
        if action in COMMENT_ACTIONS and (issue_id is None or comment_id is None):
            raise PayloadError("comment without data.issue_id or data.comment_id")
        text = data.get("comment")
        return replace(base, issue_id=issue_id, comment_id=comment_id or "",
                       comment=text[:100_000] if isinstance(text, str) else "")
    if resource == "error":
        error = data.get("error")
        issue_id = _numeric_id(error.get("issue_id")) if isinstance(error, Mapping) else None
        return replace(base, issue_id=issue_id)
    return base


# Sentry before January 2022 sent alerts without `data.event.issue_id` (getsentry/sentry#31222 added
# it to `_webhook_event_data`); the issue is then named only in `issue_url` (.../api/0/issues/<id>/)
# and `web_url` (.../issues/<id>/events/<event id>/, on an organisation's own host or under
# /organizations/<slug>/). Anchored on /api/0/ and /issues/ so a self-hosted path prefix is no matter.
_ISSUE_URL_ID = re.compile(r"/api/0/issues/([0-9]{1,20})/")
_WEB_URL_ID = re.compile(r"/issues/([0-9]{1,20})(?:/|$|\?)")


def _event_release(event: Mapping[str, Any]) -> str:
    """The release version an alert's event names. `_webhook_event_data` sends the stored event
    (`event.data`): its `release` is the version, and its tags keep it as `sentry:release` (the
    API's `release` tag), so a body without the top-level key is read from its tags."""
    release = event.get("release")
    if isinstance(release, str) and release.strip():
        return release.strip()[:200]
    tags = event.get("tags")
    for tag in tags[:200] if isinstance(tags, list) else ():
        if isinstance(tag, (list, tuple)) and len(tag) == 2 and tag[0] in ("sentry:release", "release") \
                and isinstance(tag[1], str) and tag[1].strip():
            return tag[1].strip()[:200]
    return ""


def _alert_issue_id(event: Mapping[str, Any]) -> str | None:
    issue_id = _numeric_id(event.get("issue_id"))
    if issue_id is not None:
        return issue_id
    for key, pattern in (("issue_url", _ISSUE_URL_ID), ("web_url", _WEB_URL_ID)):
        url = event.get(key)
        found = pattern.search(url[:2000]) if isinstance(url, str) else None
        if found:
            return _numeric_id(found.group(1))
    return None


def _issue_event(base: SentryEvent, action: str, data: Mapping[str, Any]) -> SentryEvent:
    raw = data.get("issue")
    if action in ISSUE_ACTIONS:
        issue: SentryIssue | None = parse_issue(raw)  # PayloadError when unusable
    else:
        try:
            issue = parse_issue(raw)
        except PayloadError:
            issue = None
    assignee = None
    if action == "assigned":
        # Sentry sends `data.assignee`; the issue's `assignedTo` names the same actor, so it stands in.
        assignee = parse_actor(data.get("assignee"))
        if assignee is None or not assignee.type:
            assignee = issue.assigned_to if issue else None
    resolution = data.get("resolution_type")
    return replace(
        base,
        issue=issue,
        issue_id=issue.id if issue else None,
        resolution_type=resolution[:50] if isinstance(resolution, str) else "",
        assignee=assignee,
        release=issue.last_release if issue else "",
    )


def _numeric_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return value
    return None

