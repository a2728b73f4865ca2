"""From an inbox delivery to the handler for its source, resource and action.

Unknown events are not errors: they are recorded as ignored, with what they were, so an operator
can see that syncer received them and chose to do nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from syncer.errors import PayloadError
from syncer.jira import webhooks as jira_webhooks
from syncer.jira.webhooks import JiraEvent
from syncer.runtime import Runtime
from syncer.sentry import webhooks as sentry_webhooks
from syncer.sentry.webhooks import SentryEvent
from syncer.store.deliveries import Taken
from syncer.sync import inbound, outbound, tickets
from syncer.sync.outcome import Outcome

SentryHandler = Callable[[Runtime, SentryEvent, str], Outcome]
JiraHandler = Callable[[Runtime, JiraEvent, str], Outcome]

# (resource, action) -> handler. Each handler re-reads what it needs; the payload is a hint.
SENTRY_HANDLERS: dict[tuple[str, str], SentryHandler] = {
    ("issue", "created"): tickets.on_sentry_issue,
    # Linked: reopen / follow the assignee (outbound); not linked yet: make sure there is a ticket.
    ("issue", "unresolved"): outbound.on_sentry_unresolved,
    ("issue", "assigned"): outbound.on_sentry_assigned,
    ("issue", "resolved"): outbound.on_sentry_status,
    ("issue", "ignored"): outbound.on_sentry_status,
    ("issue", "archived"): outbound.on_sentry_status,
    ("event_alert", "triggered"): tickets.on_sentry_issue,
}

# webhookEvent -> handler
JIRA_HANDLERS: dict[str, JiraHandler] = {
    "jira:issue_updated": inbound.on_jira_issue_updated,
    "jira:issue_deleted": inbound.on_jira_issue_deleted,
}


def handle(rt: Runtime, delivery: Taken) -> Outcome:
    """Parse and dispatch one delivery. PayloadError means the shape is unusable (permanent)."""
    cause = f"delivery:{delivery.id}"
    try:
        payload = json.loads(delivery.payload)
    except ValueError as exc:  # the web tier checked this; a row edited by hand could still be bad
        raise PayloadError(f"stored payload is not JSON: {exc}") from None
    if delivery.source == "sentry":
        event = sentry_webhooks.parse_event(delivery.resource, payload)
        sentry_handler = SENTRY_HANDLERS.get((event.resource, event.action))
        if sentry_handler is None:
            return Outcome.ignore(f"no handler for sentry {event.resource}.{event.action}")
        return sentry_handler(rt, event, cause)
    if delivery.source == "jira":
        jira_event = jira_webhooks.parse_event(payload)
        jira_handler = JIRA_HANDLERS.get(jira_event.webhook_event)
        if jira_handler is None:
            return Outcome.ignore(f"no handler for jira {jira_event.webhook_event}")
        return jira_handler(rt, jira_event, cause)
    return Outcome.ignore(f"unknown source {delivery.source!r}")


def unhandled(source: str, resource: str, action: str) -> str | None:
    """For Jira deliveries: why one would be ignored for want of a handler (the outcome `handle`
    records), or None when there is a handler. The web tier stores such deliveries as ignored at once:
    Jira announces every ticket syncer creates (`jira:issue_created`, which the README has operators
    subscribe to), and running a task only to say "no handler" cost a fifth of the worker's CPU per
    ticket (docs/benchmarks.md). Sentry's unhandled events are rare (the integration subscribes to
    issues) and keep going through the worker."""
    if source != "jira" or not resource or resource[:100] in JIRA_HANDLERS:
        return None
    return f"no handler for jira {resource[:100]}"
