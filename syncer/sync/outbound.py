"""Sentry -> Jira: a linked issue's status (and, optionally, assignee) moves its ticket.

`resolved` closes the ticket, a regression reopens it with a comment (or, long after it closed,
opens a new ticket linked to the old one; a won't-fix ticket stays closed and gets the comment
only), an archive does what `status.on_archive` says. As inbound: our own echoes and events the
issue has moved on from end early, events for one link are applied under its lock, both sides are
re-read before writing, and only a ticket that is not in the wanted state is touched.

`issue.unresolved` and `issue.assigned` also mean "make sure this issue has a ticket" (see
`tickets.on_sentry_issue`); the routers here send them there when the issue has no active link.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from syncer.core import priority, status
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.core.render import issue_url
from syncer.core.routing import decide
from syncer.errors import PayloadError, PermanentError, TransientError
from syncer.jira.client import Moved
from syncer.jira.workflow import Goal
from syncer.locks import link_lock
from syncer.policy import StatusPolicy
from syncer.runtime import Runtime
from syncer.sentry.webhooks import SentryEvent
from syncer.store import links
from syncer.store.links import AuditLine, LinkRecord
from syncer.store.schema import LinkState, utcnow
from syncer.sync import assignees, merges, tickets
from syncer.sync.inbound import flag_reach, sentry_fields, unreachable_note
from syncer.sync.outcome import Outcome

# A ticket is being created for the issue right now: look again once it is linked.
PENDING_RETRY_SECONDS = 5.0


def on_sentry_unresolved(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    """`issue.unresolved`: reopen the linked ticket, or (no active link) make sure there is one."""
    link = links.live(rt.engine, _issue_id(event))
    if link is None or link.state != LinkState.ACTIVE:
        outcome = tickets.on_sentry_issue(rt, event, cause)
        _tie_successor(rt, _issue_id(event), cause)
        return outcome
    return on_sentry_status(rt, event, cause)


def on_sentry_assigned(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    """`issue.assigned`: follow the assignee when the policy says so; without an active link this
    is (also) the "make sure there is a ticket" event it always was."""
    link = links.live(rt.engine, _issue_id(event))
    if link is None or link.state != LinkState.ACTIVE or not rt.policy.status.assignee_to_jira:
        return tickets.on_sentry_issue(rt, event, cause)
    decision = status.decide_assignee_outbound(
        rt.policy.status, event.assignee, JiraTicket(id=link.jira_issue_id or "", key=link.jira_key or ""),
        own_echo=event.is_own_echo(rt.settings.sentry_app_id), people=rt.policy.directory,
    )
    if not decision.assign:
        return Outcome.ignore(decision.reason)
    return assign_ticket(rt, link, decision.email, decision.reason, cause=cause)


def assign_ticket(rt: Runtime, link: LinkRecord, email: str, reason: str, *, cause: str) -> Outcome:
    """Assign the link's ticket to the person with this e-mail (their Jira account through [people]
    or Jira's own search), once Sentry's issue is theirs."""
    with link_lock(rt, link.id, expiry=rt.settings.link_lock_seconds):
        fresh = _active(rt, link)
        if fresh is None:
            return Outcome.ignore("the link is no longer active")
        ticket = _ticket_or_flag(rt, fresh, cause)
        if ticket is None:
            return Outcome.ignore(unreachable_note(fresh))
        project = ticket.project_key or (ticket.key.split("-")[0] if ticket.key else "")
        account = assignees.resolve(rt, email, project)
        if account.account_id is None:
            why = f"assigned to {email} in Sentry, who has no Jira account Jira would accept: " \
                  f"{account.reason}; {ticket.key} keeps its assignee"
            assignees.left_unassigned(rt, account.problem)
            links.save(rt.engine, fresh.id, cause=cause, changes=[("jira", "assign_skipped", why)])
            return Outcome.ignore(why)
        if ticket.assignee_account_id == account.account_id:
            return Outcome.ignore(f"{ticket.key} is assigned to {email} already")
        try:
            rt.jira.assign(ticket.key, account.account_id)
        except PermanentError as exc:
            words = assignees.refused(exc)
            if words is None:
                raise
            assignees.forget(rt, email, project)
            assignees.left_unassigned(rt, assignees.REFUSED)
            why = f"assignee {email} refused by Jira: {words}; {ticket.key} keeps its assignee"
            links.save(rt.engine, fresh.id, cause=cause, changes=[("jira", "assign_refused", why)])
            return Outcome.ignore(why)
        links.save(rt.engine, fresh.id, cause=cause, changes=[("jira", "assigned", reason)])
    return Outcome(reason)


def on_sentry_status(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    """`issue.resolved`, `issue.ignored`/`issue.archived`, and `issue.unresolved` of a linked issue."""
    issue_id = _issue_id(event)
    link = links.live(rt.engine, issue_id)
    if link is None:
        return Outcome.ignore(f"sentry issue {issue_id} has no ticket")
    if link.state == LinkState.PENDING:
        raise TransientError(f"a ticket for sentry issue {issue_id} is being created",
                             retry_after=PENDING_RETRY_SECONDS)
    own_echo = event.is_own_echo(rt.settings.sentry_app_id)
    early = status.triage_outbound(event.action, known=link, own_echo=own_echo, event_at=None)
    if early is not None:
        return Outcome.ignore(early.reason)
    with link_lock(rt, link.id, expiry=rt.settings.link_lock_seconds):
        fresh = _active(rt, link)
        if fresh is None:
            return Outcome.ignore("the link is no longer active")
        issue = rt.sentry.find_issue(issue_id)
        if issue is None:  # deleted since its webhook was sent
            why = f"Sentry has no issue {issue_id} any more (deleted)"
            links.mark_broken(rt.engine, fresh, cause=cause, why=why, issue_gone=True)
            return Outcome(f"{why}: link marked broken")
        if issue.id != issue_id:
            # Merged since its webhook was sent: the state read is the other issue's. The merge
            # decides what becomes of the link, as when reconciliation meets it.
            return merges.follow(rt, fresh, issue, cause=cause, installation_uuid=event.installation_uuid)[0]
        ticket = _ticket_or_flag(rt, fresh, cause)
        if ticket is None:
            # Not a deletion (that comes as `jira:issue_deleted`, and breaks the link): a second
            # ticket for a regression would be a duplicate once the first is visible again.
            return Outcome.ignore(unreachable_note(fresh))
        decision = status.decide_outbound(event.action, issue=issue, ticket=ticket, known=fresh,
                                          policy=rt.policy.status.for_ticket(ticket.project_key, fresh.team),
                                          now=utcnow())
        outcome = _apply(rt, fresh, issue, ticket, decision, installation_uuid=event.installation_uuid,
                         cause=cause)
    # Outside the lock: what follows works on the issue's new link, not on this one.
    if decision.action == "new_ticket" and not outcome.ignored:
        _tie_successor(rt, issue_id, cause)
    return outcome


# --- applying a decision --------------------------------------------------------------------------


def _apply(
    rt: Runtime, link: LinkRecord, issue: SentryIssue, ticket: JiraTicket,
    decision: status.OutboundDecision, *, installation_uuid: str, cause: str,
) -> Outcome:
    fields = sentry_fields(issue, link)  # re-read just now: current, whatever the event said
    if ticket.key != link.jira_key:
        fields["jira_key"] = ticket.key  # moved to another project since we last looked
    changes: list[AuditLine] = []
    note = decision.reason
    policy = rt.policy.status.for_ticket(ticket.project_key, link.team)
    if decision.action in ("close", "reopen", "transition"):
        assert decision.transition_to is not None
        comment = _comment_for(rt, link, issue, decision, moved_to=decision.transition_to)
        moved = rt.jira.move_to(ticket.key, _goal(decision, policy), resolution=decision.resolution,
                                field_values=policy.transition_fields, comment=comment, current=ticket)
        if moved is not None:
            note = _walked(note, moved)
            changes.append(("jira", decision.action, note))
        elif comment:  # someone moved it there meanwhile: the regression still deserves its note
            rt.jira.add_comment(ticket.key, comment)
        if comment:
            changes.append(("jira", "commented", _comment_detail(decision)))
        elif decision.note is not None:
            note += _held_back(policy.reopen_comment_cooldown_minutes)
        if moved is not None:
            fields.update(_after_transition(moved))
        fields.update(_note_fields(decision, comment))
    elif decision.action == "comment":
        comment = _comment_for(rt, link, issue, decision, stays_in=ticket.status)
        if comment:
            rt.jira.add_comment(ticket.key, comment)
            changes.append(("jira", "commented", f"{decision.reason}; {_comment_detail(decision)}"))
        else:
            note += _held_back(policy.reopen_comment_cooldown_minutes)
        fields.update(_note_fields(decision, comment))
    elif decision.action == "label":
        assert decision.label is not None
        rt.jira.add_labels(ticket.key, [decision.label])
        changes.append(("jira", "labelled", decision.reason))
    elif decision.action == "new_ticket":
        return _open_successor(rt, link, issue, ticket, decision, installation_uuid, cause, fields)
    followed = _follow_priority(rt, link, issue, ticket, fields)
    if followed:
        changes += followed
        note += "; " + "; ".join(detail for _, _, detail in followed)
    if decision.unlabel is not None:
        rt.jira.remove_labels(ticket.key, [decision.unlabel])
        unlabelled = f"no longer archived in Sentry: label {decision.unlabel!r} removed"
        changes.append(("jira", "unlabelled", unlabelled))
    if fields or changes:
        links.save(rt.engine, link.id, cause=cause, changes=changes, **fields)
    return Outcome(note) if changes else Outcome.ignore(note)


def _goal(decision: status.OutboundDecision, policy: StatusPolicy) -> Goal:
    """Where the ticket should end: the status the decision names, standing in for it (the workflow
    lacking that name) a status of its fallback category that is not a won't-fix one."""
    assert decision.transition_to is not None
    setting = {"close": "close_to", "reopen": "reopen_to", "transition": "archive_to"}[decision.action]
    return Goal(decision.transition_to, setting=setting, fallback_category=decision.fallback_category,
                avoid=frozenset(policy.wont_fix))


def _walked(reason: str, moved: Moved) -> str:
    """The reason, with where the ticket ended and the statuses it passed through, if any."""
    where = f"{reason}; it is {moved.transition.to_name!r} now"
    return f"{where}, by way of {', '.join(repr(s) for s in moved.via)}" if moved.via else where


def _follow_priority(
    rt: Runtime, link: LinkRecord, issue: SentryIssue, ticket: JiraTicket, fields: dict[str, Any]
) -> list[AuditLine]:
    """`[priorities] follow_sentry`: Sentry's priority of the issue changed since the ticket last
    followed it (an escalation raises it; a person may set it): the ticket takes the new one's
    Jira priority. A link that never knew a priority (made before syncer stored it, or by a
    Sentry without priorities) only starts knowing it."""
    decision = priority.decide_follow(rt.policy.priorities, issue.priority, link.sentry_priority,
                                      ticket.priority)
    if decision.record:
        fields["sentry_priority"] = issue.priority
    if decision.jira_priority is None:
        return []
    rt.jira.set_priority(ticket.key, decision.jira_priority)
    return [("jira", "prioritised", decision.reason)]


def _comment_for(
    rt: Runtime, link: LinkRecord, issue: SentryIssue, decision: status.OutboundDecision, *,
    moved_to: str | None = None, stays_in: str | None = None,
) -> str | None:
    note = decision.note
    if note is None or not note.post:
        return None
    return status.reopen_comment(
        issue, folded=note.folded, cooldown_minutes=rt.policy.status.reopen_comment_cooldown_minutes,
        moved_to=moved_to, stays_in=stays_in,
        url=issue_url(issue, rt.settings.sentry_links_url, rt.settings.sentry_org or ""),
    )


def _comment_detail(decision: status.OutboundDecision) -> str:
    folded = decision.note.folded if decision.note else 0
    return "regression comment" + (f", counting {folded} held back by the cooldown" if folded else "")


def _held_back(cooldown_minutes: int) -> str:
    return f" (its comment held back by the {cooldown_minutes}-minute cooldown, and counted)"


def _note_fields(decision: status.OutboundDecision, comment: str | None) -> dict[str, Any]:
    if decision.note is None:
        return {}
    fields: dict[str, Any] = {"reopens_since_comment": decision.note.counter_after}
    if comment:
        fields["reopen_commented_at"] = utcnow()
    return fields


def _after_transition(moved: Moved) -> dict[str, Any]:
    """The ticket's state after our transition: the transition's target, with no read back.

    The watermark moves to the time of the transition on Jira's clock (its answer's `Date`): Jira's
    webhooks are judged stale against it, and a person's change just after ours must not be dropped
    because Jira's clock is behind ours. It moves now, not when our own echo arrives: the ticket's
    closed-since time (`new_ticket_after_days`) must not depend on that webhook. Our clock only when
    Jira's answer told no time."""
    return {
        "jira_status": moved.transition.to_name[:200],
        "jira_status_category": moved.transition.to_category[:40],
        "jira_changed_at": moved.at or utcnow(),
    }


# --- a new ticket for an old regression -----------------------------------------------------------


def _open_successor(
    rt: Runtime, link: LinkRecord, issue: SentryIssue, ticket: JiraTicket, decision: status.OutboundDecision,
    installation_uuid: str, cause: str, fields: dict[str, Any],
) -> Outcome:
    """Supersede the old link and open (or adopt) a ticket for the issue through the usual path.
    Routing is asked first: an issue the policy now ignores keeps its old, closed ticket."""
    route = decide(issue, rt.policy, lambda: tickets.tags_for(rt, issue.id))
    if not route.files_ticket:
        if fields:
            links.save(rt.engine, link.id, cause=cause, **fields)
        return Outcome.ignore(f"{decision.reason}, but route {route.route_name} now ignores the issue "
                              f"({route.reason}); {ticket.key} stays closed")
    links.save(rt.engine, link.id, cause=cause, changes=[("syncer", "superseded", decision.reason)],
              state=LinkState.SUPERSEDED, live_sentry_issue_id=None, **fields)
    created = tickets.create_or_link(rt, issue, route, installation_uuid=installation_uuid, cause=cause)
    return Outcome(f"{decision.reason}: {created.note}")


def _tie_successor(rt: Runtime, sentry_issue_id: str, cause: str) -> None:
    """Link a new ticket to the one it follows (comments both ways, `previous_link_id`).

    Separate from the creation so that it also completes after a retry: when the create failed
    after the old link was superseded, the retried delivery creates the ticket through the
    ordinary no-link path and finishes here."""
    pair = links.untied_successor(rt.engine, sentry_issue_id)
    if pair is None:
        return
    new, old = pair
    if not old.jira_key or not new.jira_key or old.jira_issue_id == new.jira_issue_id:
        return
    closed_days = _days_since(old.jira_changed_at) if old.jira_status_category == status.DONE else None
    rt.jira.add_comment(old.jira_key, status.successor_comment(new_key=new.jira_key, closed_days=closed_days))
    rt.jira.add_comment(new.jira_key, status.predecessor_comment(old_key=old.jira_key))
    links.tie(rt.engine, new, old, cause=cause,
              audit=[("jira", "follows", f"{new.jira_key} follows {old.jira_key}")])


def _days_since(moment: datetime | None) -> int | None:
    return (utcnow() - moment).days if moment is not None else None


# --- small things ---------------------------------------------------------------------------------


def _issue_id(event: SentryEvent) -> str:
    issue_id = event.issue.id if event.issue else event.issue_id
    if not issue_id:
        raise PayloadError(f"{event.resource}.{event.action} names no issue")
    return issue_id


def _active(rt: Runtime, link: LinkRecord) -> LinkRecord | None:
    fresh = links.load(rt.engine, link.id)
    return fresh if fresh is not None and fresh.state == LinkState.ACTIVE else None


def _ticket_or_flag(rt: Runtime, link: LinkRecord, cause: str) -> JiraTicket | None:
    """The linked ticket as Jira shows it now; None when Jira answers 404, which without a
    `jira:issue_deleted` webhook means only that the bot may not see it (see `flag_reach`)."""
    assert link.jira_issue_id is not None
    ticket = rt.jira.get_ticket(link.jira_issue_id)
    flag_reach(rt, link, ticket, cause)
    return ticket


# --- reconciliation: the same writes, from state read in batches ----------------------------------


def apply_outbound(
    rt: Runtime, link: LinkRecord, issue: SentryIssue, ticket: JiraTicket,
    decision: status.OutboundDecision, *, cause: str, installation_uuid: str = "",
) -> Outcome:
    """Apply a decided Sentry -> Jira change to a pair whose current state the caller has read
    (reconciliation reads both sides in batches), through `_apply` as `on_sentry_status` does for
    a webhook. The Sentry action the change stands for is in `decision` already (it was decided
    from it), so it is not passed again. The caller holds `link_lock`, passes the link as loaded under it,
    and calls `tie_successor` once the lock is released when the decision was `new_ticket`."""
    return _apply(rt, link, issue, ticket, decision, installation_uuid=installation_uuid, cause=cause)


def tie_successor(rt: Runtime, sentry_issue_id: str, cause: str) -> None:
    """Link a regression's new ticket to the one it follows (see `_tie_successor`)."""
    _tie_successor(rt, sentry_issue_id, cause)
