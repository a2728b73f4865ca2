"""Reconciliation decisions: what drift a linked pair shows, and what repairs it.

Pure: data in, a plan out, no I/O and no clock reads (`now` is passed in). The sync layer
(`syncer.sync.reconcile`) reads both sides in batches, asks here, and applies the plan through the
functions the webhook handlers use.

A three-way comparison. The base is what the link stored at the last sync; a side whose current
state differs from it changed since then, and its change is what a lost webhook would have said.
Each changed side's change is judged by the same decisions as its webhook (`syncer.core.status`),
so a change that means nothing for the other side (To Do -> In Progress) stays nothing, and a
target already in the wanted state is left alone.

Rules that are easy to get wrong, and why they are as they are:
- Both sides changed: precedence matters only when both changes want to write (they conflict: a
  ticket closed in Jira, an issue regressed in Sentry). When only one of them wants to write, it
  does, whatever the precedence says: the other change asks nothing of anyone.
- `newest` compares the ticket's `updated` with the issue's `lastSeen`. Sentry's API tells no time of
  a status change; `lastSeen` is the issue's latest event. That is what "a Jira close wins over a
  Sentry unresolve only when the Sentry change is older" needs: events after the close mean the
  problem outlived it. Without both times, Jira wins (its clock is the one we have).
- A Sentry substatus change is drift only into a regression (`regressed`, `escalating`): Sentry moves
  `new` to `ongoing` by itself after a few days, which asks nothing of the ticket.
- A ticket the batch read did not return is missing only once a direct read confirms it (Jira
  Cloud's search lags behind a just-created ticket); the caller does that before asking here.
- A missing ticket is `ticket_unreachable`, not deleted: Jira answers a deleted ticket and one the
  bot may no longer see (issue security, a permission change) alike, and a deletion comes as
  `jira:issue_deleted`, which breaks the link at once (`ticket_deleted`, audited there). Breaking it
  here would free the issue for a second ticket while the first may well exist; the link is flagged
  and kept, and the run reports it for a person to fix (grant the bot access, or unlink).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from syncer.core.issue import JiraTicket, SentryIssue
from syncer.core.moments import aware, utc_text
from syncer.core.status import (
    REGRESSION_SUBSTATUSES,
    InboundDecision,
    KnownState,
    OutboundDecision,
    decide_inbound,
    decide_outbound,
    same_status,
)
from syncer.policy import Policy

# What a drifted link can show; a link may show a move together with a status change.
KINDS = (
    "jira_changed",  # the ticket's status changed since the last sync (a lost Jira webhook)
    "sentry_changed",  # the issue's status changed since (a lost Sentry webhook)
    "both_changed",  # both did: the policy's precedence decides when they conflict
    "ticket_deleted",  # Jira said it deleted the ticket (its webhook): the link is marked broken
    "ticket_unreachable",  # Jira answers 404 without having sent a deletion: flagged, kept active
    "ticket_moved",  # same ticket id, new key (moved to another project): the link follows
    "issue_missing",  # Sentry no longer has the issue (deleted): the link is marked broken
    "issue_merged",  # a read of the issue answers another (merged into it): `[merges]` decides
    "stale_state",  # nothing to apply, but the stored state is behind (it is brought up to date)
    "backlinks_missing",  # made, but a side cannot find the other yet (its delivery died midway)
)
Kind = Literal[
    "jira_changed",
    "sentry_changed",
    "both_changed",
    "ticket_deleted",
    "ticket_unreachable",
    "ticket_moved",
    "issue_missing",
    "issue_merged",
    "stale_state",
    "backlinks_missing",
    "unlinked_in_sentry",
]

# break: mark the link broken; flag: mark it unreachable (kept active); inbound: apply the Jira
# change to Sentry; outbound: the Sentry change to Jira; record: store both sides' current state
# (and a new key).
Action = Literal["break", "flag", "inbound", "outbound", "record", "merge"]

# The issue statuses Sentry's API reports, as the webhook action that would have announced them.
_SENTRY_ACTIONS = {"resolved": "resolved", "unresolved": "unresolved", "ignored": "ignored"}


class StoredLink(KnownState, Protocol):
    """The link as reconciliation reads it: `syncer.store.schema.Link` satisfies it."""

    @property
    def jira_key(self) -> str | None: ...
    @property
    def sentry_issue_id(self) -> str: ...
    @property
    def team(self) -> str | None: ...


@dataclass(frozen=True)
class Plan:
    """What to do about one drifted link. `inbound`/`outbound`: the decision to apply (set for those
    actions, and for the side that lost under precedence, for the record). `sentry_action`: the
    Sentry webhook action the issue's current status stands for. `moved_to`: the ticket's new key."""

    kinds: tuple[Kind, ...]
    action: Action
    reason: str
    inbound: InboundDecision | None = None
    outbound: OutboundDecision | None = None
    sentry_action: str = ""
    moved_to: str = ""

    @property
    def kind(self) -> Kind:
        """The main kind, for a one-word summary (a move comes with a status change or alone)."""
        return next((k for k in self.kinds if k != "ticket_moved"), self.kinds[0])

    @property
    def repairs(self) -> bool:
        """Whether applying it changes either side or the link's identity (not just stored state)."""
        if self.action in ("break", "merge") or self.moved_to:
            return True
        decision = (
            self.inbound if self.action == "inbound" else self.outbound if self.action == "outbound" else None
        )
        return decision is not None and decision.changes

    def describe(self) -> str:
        """The action column of the drift table."""
        parts = [f"follow the move to {self.moved_to}"] if self.moved_to else []
        if self.action == "break":
            parts.append("mark the link broken")
        elif self.action == "flag":
            parts.append("flag the link unreachable (kept; a person must act)")
        elif self.action == "inbound" and self.inbound is not None:
            parts.append(_inbound_words(self.inbound))
        elif self.action == "outbound" and self.outbound is not None:
            parts.append(_outbound_words(self.outbound))
        elif self.action == "record":
            parts.append("record the current state")
        elif self.action == "merge":
            parts.append("follow the merge ([merges] on_merge)")
        return "; ".join(parts)


def plan(
    known: StoredLink, issue: SentryIssue | None, ticket: JiraTicket | None, policy: Policy, now: datetime
) -> Plan | None:
    """The drift of one active link and its repair; None when the link is in sync.

    `issue` and `ticket` are both sides' current state (None: that side does not have it)."""
    if ticket is None:
        return Plan(
            ("ticket_unreachable",),
            "flag",
            f"Jira answers 404 for {known.jira_key} and sent no deletion: the bot may not see it "
            "(issue security, permissions), or it was deleted unseen",
        )
    if issue is None:
        # Sentry sends no webhook for a deletion: this is where syncer learns of it. Broken, the link
        # stops every later close or reopen from failing on it, and the next run from reporting it.
        return Plan(
            ("issue_missing",),
            "break",
            f"Sentry has no issue {known.sentry_issue_id} any more (deleted)",
        )
    if issue.id and issue.id != known.sentry_issue_id:
        # A merged-away id reads as the issue it was merged into (GroupRedirect): the answer's id
        # is the only sign of a merge, for which Sentry sends no webhook.
        return Plan(
            ("issue_merged",),
            "merge",
            f"Sentry issue {known.sentry_issue_id} was merged into {issue.id}",
        )
    moved_to = ticket.key if ticket.key and ticket.key != known.jira_key else ""
    # A link made by creating its ticket knows the category ("new") but not yet the status's name.
    jira_changed = ticket.status_category != known.jira_status_category or (
        bool(known.jira_status) and not same_status(ticket.status, known.jira_status)
    )
    sentry_changed = issue.status != known.sentry_status or (
        issue.substatus != known.sentry_substatus and issue.substatus in REGRESSION_SUBSTATUSES
    )
    # A ticket syncer created was answered with its id and key only: its status's name is learnt
    # here, quietly (no drift kind: every new link would otherwise count as drift on its first run).
    unnamed = not known.jira_status and bool(ticket.status)
    stale = issue.substatus != known.sentry_substatus or (
        not unnamed and not same_status(ticket.status, known.jira_status)
    )
    if not (jira_changed or sentry_changed or moved_to or stale):
        if unnamed:
            learnt = f"{known.jira_key}'s status is {ticket.status!r}, not known since its creation"
            return Plan((), "record", learnt)
        return None

    # The ticket's project (and the link's team) may have status settings of their own.
    status_policy = policy.status.for_ticket(ticket.project_key, known.team)
    inbound = None
    if jira_changed:
        # No event time: reconciliation reads current state, which cannot be stale.
        inbound = decide_inbound(
            ticket=ticket,
            known=known,
            issue=issue,
            policy=status_policy,
            status_changed=True,
            previous_status=known.jira_status,
        )
    sentry_action = _SENTRY_ACTIONS.get(issue.status, "")
    outbound = None
    if sentry_changed and sentry_action:
        outbound = decide_outbound(
            sentry_action, issue=issue, ticket=ticket, known=known, policy=status_policy, now=now
        )

    kinds: list[Kind] = ["ticket_moved"] if moved_to else []
    if jira_changed and sentry_changed:
        kinds.append("both_changed")
    elif jira_changed:
        kinds.append("jira_changed")
    elif sentry_changed:
        kinds.append("sentry_changed")
    elif stale:
        kinds.append("stale_state")

    def made(action: Action, reason: str) -> Plan:
        return Plan(tuple(kinds), action, reason, inbound, outbound, sentry_action, moved_to)

    wants_in = inbound is not None and inbound.changes
    wants_out = outbound is not None and outbound.changes
    if wants_in and wants_out:
        assert inbound is not None and outbound is not None
        winner, why = precedence_winner(ticket, issue, policy.reconcile.precedence)
        if winner == "jira":
            return made("inbound", f"{inbound.reason} ({why}; Sentry's change is not applied)")
        return made("outbound", f"{outbound.reason} ({why}; Jira's change is not applied)")
    if wants_in:
        assert inbound is not None
        return made("inbound", inbound.reason)
    if wants_out:
        assert outbound is not None
        return made("outbound", outbound.reason)
    reasons = [d.reason for d in (inbound, outbound) if d is not None]
    if sentry_changed and not sentry_action:
        reasons.append(f"the Sentry issue is {issue.status!r}, which asks nothing of the ticket")
    if moved_to:
        reasons.insert(0, f"{known.jira_key} is now {moved_to}")
    if not reasons:
        reasons.append(
            f"stored {_pair(known.jira_status, known.sentry_status, known.sentry_substatus)}, "
            f"now {_pair(ticket.status, issue.status, issue.substatus)}: nothing to apply"
        )
    return made("record", "; ".join(reasons))


def precedence_winner(
    ticket: JiraTicket, issue: SentryIssue, precedence: str
) -> tuple[Literal["jira", "sentry"], str]:
    """Which side's change wins when both changed and want opposite things, and why."""
    if precedence == "jira":
        return "jira", 'reconcile.precedence = "jira"'
    if precedence == "sentry":
        return "sentry", 'reconcile.precedence = "sentry"'
    jira_at, sentry_at = ticket.updated, issue.last_seen
    if jira_at is None or sentry_at is None:
        return "jira", "newest wins, and only Jira's time of change is known"
    if aware(sentry_at) > aware(jira_at):
        return (
            "sentry",
            f"newest wins: the issue was seen at {utc_text(sentry_at)}, after the ticket changed "
            f"at {utc_text(jira_at)}",
        )
    return (
        "jira",
        f"newest wins: the ticket changed at {utc_text(jira_at)}, the issue was last seen at "
        f"{utc_text(sentry_at)}",
    )


# --- backfill: Sentry issues that should have a ticket and have none ------------------------------


def lookback_start(now: datetime, hours: int) -> datetime | None:
    """Since when a new, unlinked issue is backfilled; None when backfill is off (0 hours)."""
    if hours <= 0:
        return None
    return aware(now) - timedelta(hours=hours)


def backfill_query(since: datetime) -> str:
    """Sentry's search for the issues backfill looks at: unresolved, first seen since `since`.
    An absolute time (not `-24h`), so that a run reads the window it computed."""
    return f"is:unresolved firstSeen:>={aware(since).astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def in_lookback(first_seen: datetime | None, since: datetime) -> bool:
    """The window, checked again on our side: a search that returns more must not backfill more."""
    return first_seen is not None and aware(first_seen) >= aware(since)


# --- small things ---------------------------------------------------------------------------------


def _inbound_words(decision: InboundDecision) -> str:
    if decision.action == "nothing":
        return "record the current state"
    target = f" ({decision.sentry_status})" if decision.action == "resolve" else ""
    return f"{decision.action} the Sentry issue{target}"


def _outbound_words(decision: OutboundDecision) -> str:
    if decision.action == "nothing":
        return "record the current state"
    if decision.action in ("close", "reopen", "transition"):
        comment = " with a regression comment" if decision.note is not None and decision.note.post else ""
        return f"{decision.action} the ticket (to {decision.transition_to}){comment}"
    if decision.action == "comment":
        return "comment on the ticket (it stays closed)"
    if decision.action == "label":
        return f"label the ticket {decision.label}"
    return "open a new ticket linked to this one"


def _pair(jira_status: str, sentry_status: str, substatus: str) -> str:
    sentry = f"{sentry_status}/{substatus}" if substatus else sentry_status
    return f"{jira_status or '(unknown)'!r} / {sentry or '(unknown)'!r}"

