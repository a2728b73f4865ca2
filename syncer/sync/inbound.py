"""Jira -> Sentry: a linked ticket's status (and, optionally, assignee) moves its Sentry issue.

Each handler
1. finds the link by the ticket's Jira id (ids survive a move to another project; keys do not);
2. drops what needs no work without reading anything (not a status change, a stale delivery, our
   own bot's change coming back), keeping the state an echo tells;
3. takes the link's lock, so events for one pair are applied one at a time across workers;
4. re-reads both sides (the webhook is a hint: Jira's delivery order is not guaranteed), asks
   `syncer.core.status` what to do, and writes only when the Sentry issue is not in the wanted
   state already;
5. stores both sides' state and the Jira watermark, and audits what it changed with its cause.

The link's columns for what each side says (`jira_fields`, `sentry_fields`) serve `outbound` and
reconciliation too; links are read and stored by `syncer.store.links`, and the link's lock is
`syncer.locks.link_lock`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncer.core import status
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.errors import PayloadError, PermanentError
from syncer.jira.webhooks import JiraEvent
from syncer.locks import link_lock
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import AuditLine, LinkRecord
from syncer.store.schema import LinkState, utcnow
from syncer.sync import merges
from syncer.sync.outcome import Outcome

log = logging.getLogger(__name__)


# --- the link's columns for what each side says --------------------------------------------------


def jira_fields(ticket: JiraTicket, known: LinkRecord, event_at: datetime | None) -> dict[str, Any]:
    """The link's Jira status columns for a ticket state seen at `event_at` (Jira's clock). Not the
    key: a webhook's key may predate a move, so keys are taken from fresh reads only."""
    return {
        "jira_status": ticket.status[:200],
        "jira_status_category": ticket.status_category[:40],
        "jira_changed_at": status.newer(event_at, known.jira_changed_at),
    }


def sentry_fields(issue: SentryIssue, known: LinkRecord) -> dict[str, Any]:
    """The link's Sentry columns. Sentry's webhooks carry no time of change, so the Sentry-side
    guard against late deliveries is the re-read, and `sentry_changed_at` notes when we saw it."""
    fields: dict[str, Any] = {"sentry_status": issue.status[:40], "sentry_substatus": issue.substatus[:60]}
    if (issue.status, issue.substatus) != (known.sentry_status, known.sentry_substatus):
        fields["sentry_changed_at"] = utcnow()
    return fields


# --- handlers -------------------------------------------------------------------------------------


@dataclass
class _Pair:
    """Both sides' current state, read at most once per event, only when a decision needs them."""

    rt: Runtime
    link: LinkRecord
    known_ticket: JiraTicket | None = None
    known_issue: SentryIssue | None = None
    notes: list[str] = field(default_factory=list)
    changed: bool = False
    merged_away: bool = False

    def ticket(self, cause: str) -> JiraTicket | None:
        if self.known_ticket is None:
            assert self.link.jira_issue_id is not None
            self.known_ticket = self.rt.jira.get_ticket(self.link.jira_issue_id)
            self.link = flag_reach(self.rt, self.link, self.known_ticket, cause)
            if self.known_ticket is None:
                self.notes.append(unreachable_note(self.link))
        return self.known_ticket

    def issue(self, cause: str) -> SentryIssue | None:
        """None when Sentry has no such issue any more: deleted, and Sentry sends no webhook for that;
        or merged into one with a ticket of its own, which ended this link (`merges.follow`, as
        reconciliation does). A link moved to the issue merged into carries on with it."""
        if self.known_issue is None:
            found = self.rt.sentry.find_issue(self.link.sentry_issue_id)
            if found is not None and found.id != self.link.sentry_issue_id:
                outcome, carrying_on = merges.follow(self.rt, self.link, found, cause=cause)
                self.notes.append(outcome.note)
                self.changed = True
                if carrying_on is None:
                    self.merged_away = True
                    return None
                self.link = carrying_on
            self.known_issue = found
        return self.known_issue

    def issue_gone(self, cause: str) -> None:
        if self.merged_away:  # not gone: its link ended with the merge, said so already
            return
        link = self.link
        why = f"Sentry has no issue {link.sentry_issue_id} any more (deleted)"
        links.mark_broken(self.rt.engine, link, cause=cause, why=why, issue_gone=True)
        self.notes.append(f"{why}: link marked broken")
        self.changed = True


def on_jira_issue_updated(rt: Runtime, event: JiraEvent, cause: str) -> Outcome:
    """`jira:issue_updated`: a status change, an assignee change, or a move to another project."""
    if event.ticket is None:
        raise PayloadError("jira:issue_updated without an issue")
    ticket = event.ticket
    link = links.active_for_ticket(rt.engine, ticket.id)
    if link is None:
        return Outcome.ignore(f"ticket {ticket.key or ticket.id} is not linked to a Sentry issue")
    status_item = event.status_change()
    assignee_item = event.assignee_change()
    moved = bool(ticket.key) and ticket.key != link.jira_key
    if status_item is None and assignee_item is None and not moved:
        return Outcome.ignore("not a status, assignee or project change")
    own_echo = bool(event.user_id) and event.user_id == rt.jira.bot_account_id()
    with link_lock(rt, link.id, expiry=rt.settings.link_lock_seconds):
        fresh = links.load(rt.engine, link.id)
        if fresh is None or fresh.state != LinkState.ACTIVE:
            return Outcome.ignore(f"the link of {ticket.key} is {fresh.state if fresh else 'gone'} now")
        pair = _Pair(rt, fresh)
        alive = not moved or _follow_move(pair, cause)
        if alive and status_item is not None:
            alive = _sync_status(pair, event, own_echo, status_item.from_string, cause)
        if alive and assignee_item is not None:
            _sync_assignee(pair, own_echo, cause)
    note = "; ".join(pair.notes) or "nothing to do"
    return Outcome(note) if pair.changed else Outcome.ignore(note)


def on_jira_issue_deleted(rt: Runtime, event: JiraEvent, cause: str) -> Outcome:
    """`jira:issue_deleted`: the link is kept, broken, and the issue may get a new ticket later."""
    if event.ticket is None:
        raise PayloadError("jira:issue_deleted without an issue")
    ticket = event.ticket
    link = links.active_for_ticket(rt.engine, ticket.id)
    if link is None:
        return Outcome.ignore(f"ticket {ticket.key or ticket.id} is not linked to a Sentry issue")
    with link_lock(rt, link.id, expiry=rt.settings.link_lock_seconds):
        fresh = links.load(rt.engine, link.id)
        if fresh is None or fresh.state != LinkState.ACTIVE:
            return Outcome.ignore(f"the link of {ticket.key} is {fresh.state if fresh else 'gone'} already")
        links.mark_broken(rt.engine, fresh, cause=cause, why=f"{ticket.key} was deleted in Jira")
    return Outcome(f"{ticket.key} deleted in Jira: the link to sentry issue {fresh.sentry_issue_id} is "
                   "kept, marked broken")


def _follow_move(pair: _Pair, cause: str) -> bool:
    """A new key for the same id: a move to another project. The event may be older than the move
    back (or a later one), so the key comes from a fresh read. False when the ticket is gone."""
    current = pair.ticket(cause)
    link = pair.link
    if current is None:
        return False
    if current.key and current.key != link.jira_key:
        pair.link = links.save(pair.rt.engine, link.id, cause=cause, jira_key=current.key,
                              changes=[("jira", "moved", f"{link.jira_key} is now {current.key}")])
        pair.notes.append(f"{link.jira_key} moved to {current.key}; the link follows it")
        pair.changed = True
    return True


def _sync_status(pair: _Pair, event: JiraEvent, own_echo: bool, previous_status: str, cause: str) -> bool:
    """Apply a status change to the Sentry issue. False when the ticket turned out to be gone."""
    rt, link, seen = pair.rt, pair.link, event.ticket
    assert seen is not None
    early = status.triage_inbound(known=link, status_changed=True, own_echo=own_echo,
                                  event_at=event.timestamp, status=seen.status)
    if early is not None:
        if early.record:
            # Our own change coming back: Jira's time of it is the watermark (and closed-since).
            pair.link = links.save(rt.engine, link.id, cause=cause,
                                   **jira_fields(seen, link, event.timestamp))
        pair.notes.append(early.reason)
        return True
    ticket = pair.ticket(cause)
    if ticket is None:
        return False
    issue = pair.issue(cause)
    if issue is None:
        pair.issue_gone(cause)
        return False
    link = pair.link  # a merge may have moved it to the issue merged into
    policy = rt.policy.status.for_ticket(ticket.project_key, link.team)
    decision = status.decide_inbound(ticket=ticket, known=link, issue=issue, policy=policy,
                                     status_changed=True, event_at=event.timestamp,
                                     previous_status=previous_status)
    outcome = apply_inbound(rt, link, ticket, issue, decision, cause=cause, event_at=event.timestamp)
    pair.known_issue = None  # written, maybe: read it again if anything else needs it
    pair.link = links.load(rt.engine, link.id) or link
    pair.changed = pair.changed or not outcome.ignored
    pair.notes.append(outcome.note)
    return True


def _sync_assignee(pair: _Pair, own_echo: bool, cause: str) -> None:
    rt, link = pair.rt, pair.link
    policy = rt.policy.status
    if not policy.assignee_to_sentry or own_echo:
        why = "status.assignee_to_sentry is off" if not policy.assignee_to_sentry else \
            "our own assignment, echoed back by Jira"
        pair.notes.append(why)
        return
    ticket = pair.ticket(cause)
    if ticket is None:
        return
    issue = pair.issue(cause)
    if issue is None:
        pair.issue_gone(cause)
        return
    link = pair.link
    decision = status.decide_assignee_inbound(policy, ticket, issue, people=rt.policy.directory)
    if not decision.assign:
        pair.notes.append(decision.reason)
        return
    try:
        # Sentry's assignedTo takes "user:<id>", "team:<id>" or a username; Sentry usernames are
        # e-mail addresses unless changed, and Sentry answers 400 when none matches.
        pair.known_issue = rt.sentry.update_issue(link.sentry_issue_id, assigned_to=decision.sentry_ref)
    except PermanentError as exc:
        if exc.status != 400:
            raise
        pair.notes.append(f"Sentry knows no user {decision.sentry_ref}: the Sentry assignee stays")
        return
    links.save(rt.engine, link.id, cause=cause, changes=[("sentry", "assigned", decision.reason)])
    pair.changed = True
    pair.notes.append(decision.reason)


def flag_reach(rt: Runtime, link: LinkRecord, ticket: JiraTicket | None, cause: str) -> LinkRecord:
    """Record what a read of the linked ticket showed: a 404 flags the link unreachable (kept
    active: Jira answers a deleted ticket and one the bot may no longer browse alike, "Issue does
    not exist or you do not have permission to see it", and a deletion comes as its own webhook); an
    answer clears the flag."""
    if ticket is None:
        return links.mark_unreachable(rt.engine, link, cause=cause, why=unreachable_why(link))
    return links.mark_reachable(rt.engine, link, cause=cause)


def unreachable_why(link: LinkRecord) -> str:
    return (f"Jira answers 404 for {link.jira_key} and sent no deletion: hidden from the bot (issue "
            "security, permissions) or deleted unseen; the link is kept until it answers or is unlinked")


def unreachable_note(link: LinkRecord) -> str:
    return f"ticket unreachable: {link.jira_key} answers 404 (no deletion webhook); nothing done"


# --- reconciliation: the same write, from state read in batches -----------------------------------


def apply_inbound(
    rt: Runtime, link: LinkRecord, ticket: JiraTicket, issue: SentryIssue,
    decision: status.InboundDecision, *, cause: str, event_at: datetime | None = None,
) -> Outcome:
    """Apply a decided Jira -> Sentry change to a pair whose current state the caller has read
    (a webhook's handler, or reconciliation, which reads both sides in batches): write only when
    the decision changes something, then store both sides' state, with `event_at` (a webhook's
    time; reconciliation: the ticket's `updated`) as the Jira watermark. The caller holds
    `link_lock` and passes the link as loaded under it."""
    fields = jira_fields(ticket, link, event_at or ticket.updated) if decision.record else {}
    if ticket.key and ticket.key != link.jira_key:
        fields["jira_key"] = ticket.key  # moved since; its own webhook may still be on the way
    changes: list[AuditLine] = []
    if decision.changes:
        assert decision.sentry_status is not None
        issue = rt.sentry.update_issue(issue.id, status=decision.sentry_status,
                                       status_details=decision.status_details)
        changes.append(("sentry", decision.action, decision.reason))
    fields.update(sentry_fields(issue, link))
    links.save(rt.engine, link.id, cause=cause, changes=changes, **fields)
    return Outcome(decision.reason) if changes else Outcome.ignore(decision.reason)
