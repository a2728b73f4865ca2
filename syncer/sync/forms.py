"""Sentry's issue-link forms, submitted in an issue's page: create a ticket, or link one by key.

The web stores each submission in the inbox (syncer.web.sentry_ui) and waits for its outcome, so a
form takes the same path as a webhook: the create goes through `tickets.create_or_link` (its claim
makes a second submit, or a webhook racing the form, link the one ticket), and who submitted is
named in the audit.
"""

from __future__ import annotations

from dataclasses import replace

from syncer.core import choices
from syncer.core.issue import SentryIssue
from syncer.core.routing import Decision, decide, ticket_target
from syncer.errors import PayloadError, PermanentError
from syncer.runtime import Runtime
from syncer.sentry.ui import actor_name
from syncer.sentry.webhooks import SentryEvent
from syncer.store import links
from syncer.store.schema import LinkState, utcnow
from syncer.sync import tickets
from syncer.sync.outcome import Outcome


def on_form_create(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    form = event.form
    if form is None:
        raise PayloadError("issue-link create without its form")
    who = actor_name(form.actor)
    try:
        chosen = choices.parse_choices(form.fields, rt.policy, where=f"Sentry form by {who}")
    except choices.ChoiceError as exc:
        raise PermanentError(str(exc), status=400) from None
    link = links.live(rt.engine, form.issue_id)
    if link is not None and link.state == LinkState.ACTIVE:
        tickets.finish_backlinks(rt, link, form.installation_uuid, cause)
        return Outcome.ignore(f"already linked to {link.jira_key}")
    issue = rt.sentry.get_issue(form.issue_id)
    title = form.fields.get("title", "").strip()
    if title:
        issue = replace(issue, title=title)
    decision = choices.apply(decide(issue, rt.policy, lambda: tickets.tags_for(rt, issue.id)),
                             rt.policy, issue, chosen)
    if decision.target is None:  # the routes ignore it, yet a person asked for a ticket
        decision = _defaults(rt, decision, issue, chosen)
    # A notify route (or "notify only") waits for a person to ask: this form is that person.
    decision = decision.asked_for_ticket(where=f"Sentry by {who}")
    description = form.fields.get("description", "").strip()
    return tickets.create_or_link(rt, issue, decision, installation_uuid=form.installation_uuid,
                                  cause=f"{cause} by {who}"[:200], description=description or None)


def _defaults(rt: Runtime, decision: Decision, issue: SentryIssue, chosen: choices.Choices) -> Decision:
    target = ticket_target(rt.policy, None, None, issue.level, issue.priority)
    target = replace(target, priority=chosen.priority or target.priority,
                     assignee_email=chosen.assignee or target.assignee_email)
    return replace(decision, action="create", target=target,
                   reason=f"{decision.reason}; filed by a person from Sentry: [defaults]")


def on_form_link(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    form = event.form
    if form is None:
        raise PayloadError("issue-link link without its form")
    key = form.fields.get("ticket", "").strip().upper()
    if not key:
        raise PermanentError("choose a Jira ticket to link", status=400)
    who = actor_name(form.actor)
    existing = links.live(rt.engine, form.issue_id)
    if existing is not None and existing.state == LinkState.ACTIVE and existing.jira_key == key:
        tickets.finish_backlinks(rt, existing, form.installation_uuid, cause)
        return Outcome.ignore(f"already linked to {key}")
    if existing is not None:
        raise PermanentError(
            f"this issue is already linked to {existing.jira_key or 'a ticket being created'}; "
            "unlink it first", status=409,
        )
    ticket = rt.jira.get_ticket(key)
    if ticket is None:
        raise PermanentError(f"Jira has no ticket {key} (or syncer's account cannot see it)", status=404)
    taken = links.active_for_ticket(rt.engine, ticket.id)
    if taken is not None:
        raise PermanentError(f"{ticket.key} is already linked to Sentry issue {taken.sentry_issue_id}",
                             status=409)
    issue = rt.sentry.get_issue(form.issue_id)
    now = utcnow()
    link = links.create_active(
        rt.engine,
        {
            "sentry_issue_id": issue.id, "live_sentry_issue_id": issue.id,
            "sentry_project": issue.project_slug[:200], "jira_issue_id": ticket.id, "jira_key": ticket.key,
            "state": LinkState.ACTIVE, "route": "sentry form", "sentry_status": issue.status,
            "sentry_substatus": issue.substatus, "sentry_changed_at": issue.last_seen or now,
            "jira_status": ticket.status, "jira_status_category": ticket.status_category,
            "jira_changed_at": ticket.updated or now, "synced_at": now, "changed_by": cause,
        },
        audit=[("syncer", "linked_by_hand", f"from Sentry's issue page by {who}")],
        cause=f"{cause} by {who}"[:200],
    )
    if link is None:
        raise PermanentError("this issue was linked meanwhile; refresh the page", status=409)
    tickets.finish_backlinks(rt, link, form.installation_uuid, cause)
    return Outcome(f"linked {ticket.key} from Sentry by {who}")
