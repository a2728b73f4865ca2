"""From an inbox delivery to the handler for the job its event asks for.

Which events are handled and which are ignored is the edges' table (`HANDLED_EVENTS` and
`IGNORED_EVENTS` in `syncer.sentry.webhooks` and `syncer.jira.webhooks`), with the reason for each
ignored one (`unhandled`). Intake already stores Jira's ignored events as such (`receive`), so no
task runs for them; Sentry's are recorded here. Ignored events are not errors: they are recorded
as ignored, with what they were, so an operator can see that syncer received them and chose to do
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from syncer import logs
from syncer.errors import PayloadError
from syncer.jira import webhooks as jira_webhooks
from syncer.jira.webhooks import JiraEvent
from syncer.runtime import Runtime
from syncer.sentry import webhooks as sentry_webhooks
from syncer.sentry.webhooks import SentryEvent
from syncer.store import installations
from syncer.store.deliveries import Taken
from syncer.sync import comments, forms, inbound, installation, outbound, slack, tickets
from syncer.sync.outcome import Outcome

SentryHandler = Callable[[Runtime, SentryEvent, str], Outcome]
JiraHandler = Callable[[Runtime, JiraEvent, str], Outcome]

SENTRY_HANDLERS: dict[sentry_webhooks.Job, SentryHandler] = {
    # New issues: gathered for a bulk create under a backlog (`syncer.sync.gathering`).
    sentry_webhooks.Job.ENSURE_TICKET: tickets.on_new_issue,
    # Linked: reopen / follow the assignee (outbound); not linked yet: make sure there is a ticket.
    sentry_webhooks.Job.UNRESOLVED: outbound.on_sentry_unresolved,
    sentry_webhooks.Job.ASSIGNED: outbound.on_sentry_assigned,
    sentry_webhooks.Job.STATUS: outbound.on_sentry_status,
    sentry_webhooks.Job.COMMENT: comments.on_sentry_comment,
    sentry_webhooks.Job.FORM_CREATE: forms.on_form_create,
    sentry_webhooks.Job.FORM_LINK: forms.on_form_link,
    sentry_webhooks.Job.INSTALLATION: installation.on_sentry_installation,
}

JIRA_HANDLERS: dict[jira_webhooks.Job, JiraHandler] = {
    jira_webhooks.Job.TICKET_UPDATED: inbound.on_jira_issue_updated,
    jira_webhooks.Job.TICKET_DELETED: inbound.on_jira_issue_deleted,
    jira_webhooks.Job.COMMENT: comments.on_jira_comment,
}


def handle(rt: Runtime, delivery: Taken) -> Outcome:
    """Parse (the one decode of the stored body) and dispatch one delivery. PayloadError means the
    shape is unusable (permanent)."""
    cause = f"delivery:{delivery.id}"
    if delivery.source == "sentry":
        event = sentry_webhooks.parse_event(delivery.resource, delivery.payload)
        logs.bind(sentry_issue_id=event.issue.id if event.issue else event.issue_id)
        if event.installation_uuid:
            installations.seen(rt.engine, event.installation_uuid)  # writes only when new to this process
        if event.job is None:
            return Outcome.ignore(sentry_webhooks.unhandled(event.resource, event.action) or "")
        outcome = SENTRY_HANDLERS[event.job](rt, event, cause)
        issue_id = event.issue.id if event.issue else event.issue_id
        if issue_id and event.resource == "issue":
            slack.after_sentry_event(rt, issue_id, action=event.action,
                                     substatus=event.issue.substatus if event.issue else "",
                                     own_echo=event.is_own_echo(rt.settings.sentry_app_id),
                                     delivery_id=delivery.id)
        return outcome
    if delivery.source == "jira":
        jira_event = jira_webhooks.parse_event(delivery.payload)
        logs.bind(jira_key=jira_event.ticket.key if jira_event.ticket else None)
        if jira_event.job is None:
            return Outcome.ignore(jira_webhooks.unhandled(jira_event.webhook_event) or "")
        outcome = JIRA_HANDLERS[jira_event.job](rt, jira_event, cause)
        if not outcome.ignored and jira_event.ticket is not None:
            slack.after_ticket_change(rt, jira_event.ticket.id)
        return outcome
    if delivery.source == "slack":
        return slack.on_act(rt, delivery.resource, delivery.payload, cause)
    if delivery.source == slack.SOURCE:
        return slack.run(rt, delivery.resource, delivery.payload, cause)
    return Outcome.ignore(f"unknown source {delivery.source!r}")


def subject(delivery: Taken) -> str:
    """What a dead delivery was about, for the person reading `syncer dead-letters list`: the issue
    or ticket and the event ("sentry issue 123: issue.resolved", "OPS-7: jira:issue_updated"), or
    just the event when its body does not say."""
    event_name = (f"{delivery.resource}.{delivery.action}" if delivery.source == "sentry"
                  else delivery.resource)
    try:
        if delivery.source == "sentry":
            event = sentry_webhooks.parse_event(delivery.resource, delivery.payload)
            issue_id = event.issue.id if event.issue else event.issue_id
            if issue_id:
                return f"sentry issue {issue_id}: {event_name}"
        elif delivery.source == "jira":
            ticket = jira_webhooks.parse_event(delivery.payload).ticket
            if ticket is not None and ticket.key:
                return f"{ticket.key}: {event_name}"
        elif delivery.source == slack.SOURCE:
            issue = json.loads(delivery.payload).get("issue", "?")
            return f"slack {delivery.resource} of sentry issue {issue}"
    except (PayloadError, ValueError, AttributeError):
        pass
    return f"{delivery.source} {event_name}".strip()
