"""Status sync decisions: what a status change on one side means for the other.

Pure: data in, a decision out, no I/O and no clock reads (`now` is passed in). The sync layer
(`syncer.sync.inbound`, `syncer.sync.outbound`) re-reads both sides, asks here, and applies.

Vocabulary: *inbound* is Jira -> Sentry, *outbound* is Sentry -> Jira. *Known* state is what the
link row last stored about both sides, with each side's own timestamp of that state (the
watermark). Every decision is "nothing" when the target side already is in the wanted state, so
that our own changes, echoed back by either side, end there even when the echo is not recognised.

Rules that are easy to get wrong, and why they are as they are:
- An archived (ignored) Sentry issue stays archived whatever Jira does, unless the policy says
  `unarchive_from_jira`: someone decided in Sentry not to hear about it, and a ticket closed or
  reopened in Jira is no reason to overrule them. With an `on_archive = "transition"` into a done
  status, resolving it would also fight the archive that caused the transition.
- "Left the done category" is judged against the link's known ticket state (and the changelog's
  `from`), not the changelog alone: a late or reordered delivery's `from` can be stale.
- Closed-since, for the new-ticket window, is the Jira watermark while the known category is done;
  only status changes move that watermark, so comments on a closed ticket do not reset it.
- Sentry's webhooks carry no time of the change (`Sentry-Hook-Timestamp` is the time of sending,
  new on every retry), so outbound has no Sentry watermark to compare: the caller re-reads the
  issue, and an event whose status the issue no longer has is dropped as stale.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from syncer.core.issue import JiraTicket, SentryActor, SentryIssue
from syncer.core.moments import aware, utc_text
from syncer.core.people import People
from syncer.core.render import escape_wiki, safe_url, strip_control
from syncer.policy import StatusPolicy

DONE = "done"
NEW = "new"
NOBODY = People()  # no [people] table
# Sentry's substatuses of `unresolved` that mean "it came back" (not a person's unresolve).
REGRESSION_SUBSTATUSES = ("regressed", "escalating")
# Sentry actions for an archive; older installations send `ignored`, newer `archived`.
ARCHIVE_ACTIONS = ("ignored", "archived")
STATUS_ACTIONS = ("resolved", "unresolved", *ARCHIVE_ACTIONS)
# statusDetails keys that may name a release, most specific first.
_RELEASE_KEYS = ("regressedRelease", "inRelease", "release", "version")
_ISSUE_KEY = re.compile(r"[A-Z][A-Z0-9_]*-[0-9]+")


class KnownState(Protocol):
    """What syncer last stored about a linked pair: `syncer.store.schema.Link` satisfies it."""

    @property
    def sentry_status(self) -> str: ...
    @property
    def sentry_substatus(self) -> str: ...
    @property
    def sentry_changed_at(self) -> datetime | None: ...
    @property
    def jira_status(self) -> str: ...
    @property
    def jira_status_category(self) -> str: ...
    @property
    def jira_changed_at(self) -> datetime | None: ...
    @property
    def reopen_commented_at(self) -> datetime | None: ...
    @property
    def reopens_since_comment(self) -> int: ...


# --- watermarks -----------------------------------------------------------------------------------


def is_stale(event_at: datetime | None, watermark: datetime | None) -> bool:
    """An event older than what was already applied for its side. Equal times are not stale: a
    duplicate delivery is harmless (every decision is a no-op once the target is in state)."""
    if event_at is None or watermark is None:
        return False
    return aware(event_at) < aware(watermark)


def newer(event_at: datetime | None, watermark: datetime | None) -> datetime | None:
    """The watermark after applying an event: never moves backwards."""
    if event_at is None:
        return watermark
    if watermark is None:
        return event_at
    return max(aware(event_at), aware(watermark))


# --- what a ticket's status means -----------------------------------------------------------------

Closing = Literal["resolve", "archive"]


def closing_kind(status: str, category: str, policy: StatusPolicy) -> Closing | None:
    """What a ticket in this status asks of its Sentry issue: archive (a wont_fix status), resolve
    (a status in a `resolve_on` category), or nothing (the ticket is open)."""
    if is_wont_fix(status, policy):
        return "archive"
    if category and category in policy.resolve_on:
        return "resolve"
    return None


def is_wont_fix(status: str, policy: StatusPolicy) -> bool:
    # Jira matches status names without regard to case (JQL `status = "won't do"` works).
    wanted = status.strip().casefold()
    return bool(wanted) and any(wanted == name.casefold() for name in policy.wont_fix)


def same_status(a: str, b: str) -> bool:
    """Jira matches status names without regard to case or surrounding space."""
    return a.strip().casefold() == b.strip().casefold()


# --- inbound: Jira -> Sentry ----------------------------------------------------------------------

InboundAction = Literal["resolve", "archive", "unresolve", "nothing"]


@dataclass(frozen=True)
class InboundDecision:
    """What to do to the Sentry issue. `sentry_status`/`status_details` are the PUT's body when
    `action` is not "nothing". `record`: the event is current, so the ticket's state and the Jira
    watermark should be stored on the link (False for stale and irrelevant events)."""

    action: InboundAction
    reason: str
    sentry_status: str | None = None
    status_details: Mapping[str, Any] | None = None
    record: bool = True

    @property
    def changes(self) -> bool:
        return self.action != "nothing"


def triage_inbound(
    *, known: KnownState, status_changed: bool, own_echo: bool, event_at: datetime | None, status: str = ""
) -> InboundDecision | None:
    """The decisions that need no current state of either side (stale, not a status change, our
    own echo); None when the caller must read both sides and ask `decide_inbound`."""
    # Our own echo first: it is also older than the watermark our transition set, but "our own
    # change" is the explanation an operator needs.
    if own_echo and status_changed:
        if status and known.jira_status and not same_status(status, known.jira_status):
            # A step of a walk through the workflow (To Do -> In Progress -> Done): the link holds
            # where the walk ended (or, cut short, where it began), and Jira's order of delivery is
            # not the order of the steps, so an earlier step's echo must not overwrite it.
            return InboundDecision("nothing", f"our own change to {status!r}, echoed back by Jira: a step "
                                   f"on a way of ours; the link holds {known.jira_status!r}", record=False)
        return InboundDecision("nothing", f"our own change to {status!r}, echoed back by Jira",
                               record=not is_stale(event_at, known.jira_changed_at))
    if is_stale(event_at, known.jira_changed_at):
        return InboundDecision("nothing", f"stale: Jira event of {utc_text(event_at)} is older than the "
                               f"last applied change ({utc_text(known.jira_changed_at)})", record=False)
    if not status_changed:
        return InboundDecision("nothing", "not a status change", record=False)
    return None


def decide_inbound(
    *,
    ticket: JiraTicket,
    known: KnownState,
    issue: SentryIssue,
    policy: StatusPolicy,
    status_changed: bool,
    own_echo: bool = False,
    event_at: datetime | None = None,
    previous_status: str = "",
) -> InboundDecision:
    """A `jira:issue_updated` for a linked ticket.

    `ticket` is the ticket's current state (re-read, or the event's), `issue` the Sentry issue's
    current state (re-read), `status_changed` whether the event's changelog has a status item,
    `previous_status` that item's `fromString`, `event_at` the event's own timestamp.
    """
    early = triage_inbound(known=known, status_changed=status_changed, own_echo=own_echo, event_at=event_at,
                           status=ticket.status)
    if early is not None:
        return early

    wanted = closing_kind(ticket.status, ticket.status_category, policy)
    where = f"ticket {ticket.key} is {ticket.status!r} ({ticket.status_category or 'unknown category'})"
    if wanted == "archive":
        if issue.status == "ignored":
            return InboundDecision("nothing", f"{where}; the Sentry issue is archived already")
        return InboundDecision("archive", f"{where}, a wont_fix status: archive the Sentry issue",
                               sentry_status="ignored", status_details={})
    if wanted == "resolve":
        if issue.status == "resolved":
            return InboundDecision("nothing", f"{where}; the Sentry issue is resolved already")
        if issue.status == "ignored" and not policy.unarchive_from_jira:
            return InboundDecision("nothing", f"{where}; the Sentry issue is archived and stays so "
                                   "(status.unarchive_from_jira is off)")
        return InboundDecision("resolve", f"{where}: resolve the Sentry issue ({policy.sentry_resolution})",
                               sentry_status=policy.sentry_resolution, status_details={})

    was = closing_kind(known.jira_status, known.jira_status_category, policy)
    if was is None and previous_status and (
        is_wont_fix(previous_status, policy) or same_status(previous_status, policy.close_to)
    ):
        was = "archive" if is_wont_fix(previous_status, policy) else "resolve"
    if was is None:
        return InboundDecision("nothing", f"{where}; it did not leave a closed status")
    if issue.status == "unresolved":
        return InboundDecision("nothing", f"{where}; the Sentry issue is unresolved already")
    if issue.status == "ignored" and not policy.unarchive_from_jira:
        return InboundDecision("nothing", f"{where} again; the Sentry issue is archived and stays so "
                               "(status.unarchive_from_jira is off)")
    return InboundDecision("unresolve", f"{where}: reopened in Jira, unresolve the Sentry issue",
                           sentry_status="unresolved", status_details={})


# --- outbound: Sentry -> Jira ---------------------------------------------------------------------

OutboundAction = Literal["close", "reopen", "comment", "new_ticket", "label", "transition", "nothing"]


@dataclass(frozen=True)
class ReopenNote:
    """A regression's comment, under the cooldown. `post`: write it now. `folded`: regressions whose
    comment the cooldown held back, counted into the next comment (when posting: those before
    this one; when holding back: including this one)."""

    post: bool
    folded: int = 0

    @property
    def counter_after(self) -> int:
        """The link's `reopens_since_comment` once this regression is handled."""
        return 0 if self.post else self.folded


@dataclass(frozen=True)
class OutboundDecision:
    """What to do to the Jira ticket.

    close / reopen / transition: move it to `transition_to` (with `resolution` when the screen
    asks for one), or, when the ticket's workflow has no status of that name, to one in
    `fallback_category` (done for a close, new for a reopen; an archive's status is a choice a
    fallback must not guess); reopen and comment carry a `note` (post the reopen comment, or count one);
    new_ticket: open a new ticket linked to this one; label: add `label`. `note` is None when no
    regression comment is involved (a person's unresolve, a resolve, an archive).
    `unlabel`: remove the archive label as well (the issue is no longer archived).
    `record`: store the Sentry state and watermark on the link (False for stale events).
    """

    action: OutboundAction
    reason: str
    transition_to: str | None = None
    resolution: str | None = None
    fallback_category: str | None = None
    note: ReopenNote | None = None
    label: str | None = None
    record: bool = True
    unlabel: str | None = None

    @property
    def changes(self) -> bool:
        return self.action != "nothing" or self.unlabel is not None


def triage_outbound(
    action: str, *, known: KnownState, own_echo: bool, event_at: datetime | None
) -> OutboundDecision | None:
    """The decisions that need no current state (stale, our own echo, not a status action); None
    when the caller must read both sides and ask `decide_outbound`."""
    if action not in STATUS_ACTIONS:
        return OutboundDecision("nothing", f"issue.{action} does not change status", record=False)
    if is_stale(event_at, known.sentry_changed_at):
        return OutboundDecision("nothing", f"stale: Sentry event of {utc_text(event_at)} is older than the "
                                f"last applied change ({utc_text(known.sentry_changed_at)})", record=False)
    if own_echo:
        return OutboundDecision("nothing", f"our own change ({action}), echoed back by Sentry")
    return None


def decide_outbound(
    action: str,
    *,
    issue: SentryIssue,
    ticket: JiraTicket,
    known: KnownState,
    policy: StatusPolicy,
    now: datetime,
    own_echo: bool = False,
    event_at: datetime | None = None,
) -> OutboundDecision:
    """A Sentry `issue.<action>` for a linked issue.

    `issue` is the issue's current state (re-read: the webhook's may be stale, Sentry's delivery
    order is not guaranteed), `ticket` the ticket's current state (re-read).
    """
    early = triage_outbound(action, known=known, own_echo=own_echo, event_at=event_at)
    if early is not None:
        return early
    decision = _decide_outbound(action, issue, ticket, known, policy, now)
    if (
        policy.labels_archives
        and issue.status in ("resolved", "unresolved")
        and policy.archive_label in ticket.labels
        and decision.record
    ):
        # Unarchived, escalating or resolved: the label that said "archived" would now mislead.
        reason = f"{decision.reason}; no longer archived: remove the label {policy.archive_label!r}"
        return dataclasses.replace(decision, reason=reason, unlabel=policy.archive_label)
    return decision


def _decide_outbound(action: str, issue: SentryIssue, ticket: JiraTicket, known: KnownState,
                     policy: StatusPolicy, now: datetime) -> OutboundDecision:
    where = f"ticket {ticket.key} is {ticket.status!r}"
    if action == "resolved":
        if issue.status != "resolved":
            return _moved_on(action, issue)
        how = resolution_words(issue)
        if ticket.status_category == DONE:
            return OutboundDecision("nothing", f"resolved in Sentry{how}; {where}, closed already")
        return OutboundDecision("close", f"resolved in Sentry{how}: move {ticket.key} to {policy.close_to!r}",
                                transition_to=policy.close_to, resolution=policy.close_resolution,
                                fallback_category=DONE)
    if action == "unresolved":
        if issue.status != "unresolved":
            return _moved_on(action, issue)
        parked = next((to for to in policy.archive_statuses if same_status(ticket.status, to)), None)
        if parked is not None:
            # syncer moved it there for the archive (status.archive_to / archive_forever_to), even a
            # won't-fix status: the archive is over (escalating, a condition met, a person's
            # unarchive), so the ticket comes back with it.
            regression = issue.substatus in REGRESSION_SUBSTATUSES
            return OutboundDecision(
                "reopen", f"{issue.substatus or 'unresolved'} in Sentry, no longer archived: move "
                f"{ticket.key} from {parked!r} to {policy.reopen_to!r}", transition_to=policy.reopen_to,
                note=reopen_note(known, policy, now) if regression else None)
        if issue.substatus in REGRESSION_SUBSTATUSES:
            return _regression(issue, ticket, known, policy, now, where)
        # A person's unresolve: reopen a closed ticket, but without a regression comment, and a
        # wont_fix decision stands.
        if is_wont_fix(ticket.status, policy):
            return OutboundDecision("nothing", f"unresolved in Sentry; {where}, a wont_fix status, "
                                    "and stays closed")
        if ticket.status_category != DONE:
            return OutboundDecision("nothing", f"unresolved in Sentry; {where}, open already")
        return OutboundDecision("reopen", f"unresolved in Sentry: move {ticket.key} to {policy.reopen_to!r}",
                                transition_to=policy.reopen_to, fallback_category=NEW)
    if action in ARCHIVE_ACTIONS:
        if issue.status != "ignored":
            return _moved_on(action, issue)
        mode, archive_to = policy.archive_action(issue.substatus)
        what = f"archived in Sentry ({archive_words(issue)})"
        if mode == "label":
            if policy.archive_label in ticket.labels:
                return OutboundDecision("nothing", f"{what}; {ticket.key} has the label "
                                        f"{policy.archive_label!r} already")
            return OutboundDecision("label", f"{what}: label {ticket.key} "
                                    f"{policy.archive_label!r}", label=policy.archive_label)
        if mode == "transition":
            assert archive_to is not None  # StatusPolicy's validator requires it
            if same_status(ticket.status, archive_to):
                return OutboundDecision("nothing", f"{what}; {where} already")
            return OutboundDecision("transition", f"{what}: move {ticket.key} to "
                                    f"{archive_to!r}", transition_to=archive_to)
        key = ("on_archive_forever" if issue.substatus == "archived_forever"
               and policy.on_archive_forever is not None else "on_archive")
        return OutboundDecision("nothing", f'{what}; status.{key} = "nothing"')
    raise AssertionError(f"unreachable: triage_outbound passes only {STATUS_ACTIONS}, not {action!r}")


def resolution_words(issue: SentryIssue) -> str:
    """How Sentry says the issue was resolved, from statusDetails (group_index/update.py
    handle_resolve_in_release): " in the next release", " in release 1.2", " in commit abc123",
    or "" for a plain resolve."""
    details = issue.status_details
    if details.get("inNextRelease"):
        return " in the next release"
    release = details.get("inRelease")
    if isinstance(release, str) and release.strip():
        return f" in release {' '.join(strip_control(release).split())[:100]}"
    commit = details.get("inCommit")
    sha = commit.get("id") or commit.get("commit") if isinstance(commit, Mapping) else commit
    if isinstance(sha, str) and sha.strip():
        return f" in commit {' '.join(strip_control(sha).split())[:40]}"
    return ""


def archive_words(issue: SentryIssue) -> str:
    """Which archive, and until what, from the substatus and statusDetails as Sentry serializes
    them (GroupSerializerBase._get_status): counts with their windows, or a time."""
    if issue.substatus == "archived_until_escalating":
        return "until escalating"
    if issue.substatus != "archived_until_condition_met":
        return "forever" if issue.substatus == "archived_forever" else (issue.substatus or "ignored")
    details = issue.status_details
    conditions = []
    for count_key, window_key, noun in (("ignoreCount", "ignoreWindow", "events"),
                                        ("ignoreUserCount", "ignoreUserWindow", "users")):
        count, window = details.get(count_key), details.get(window_key)
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            within = f" in {window} minutes" if isinstance(window, int) and window > 0 else ""
            conditions.append(f"{count} more {noun}{within}")
    until = details.get("ignoreUntil")
    if isinstance(until, str) and until.strip():
        conditions.append(f"{' '.join(strip_control(until).split())[:40]}")
    return "until " + " or ".join(conditions) if conditions else "until a condition is met"


def _moved_on(action: str, issue: SentryIssue) -> OutboundDecision:
    # The webhook said one thing, Sentry now says another: a later event carries the newer state.
    return OutboundDecision("nothing", f"stale: issue.{action}, but the issue is {issue.status or 'unknown'} "
                            "now", record=False)


def _regression(
    issue: SentryIssue, ticket: JiraTicket, known: KnownState, policy: StatusPolicy, now: datetime, where: str
) -> OutboundDecision:
    what = issue.substatus  # regressed | escalating
    if is_wont_fix(ticket.status, policy):
        return OutboundDecision("comment", f"{what} in Sentry; {where}, a wont_fix status: it stays "
                                "closed, comment only", note=reopen_note(known, policy, now))
    if ticket.status_category != DONE:
        return OutboundDecision("nothing", f"{what} in Sentry; {where}, open already")
    if past_new_ticket_window(known, ticket, policy, now):
        since = closed_since(known, ticket)
        how_long = f"closed since {utc_text(since)}" if since else "closed"
        return OutboundDecision("new_ticket", f"{what} in Sentry; {ticket.key} {how_long}, longer than "
                                f"{policy.new_ticket_after_days} days: open a new linked ticket")
    return OutboundDecision("reopen", f"{what} in Sentry: move {ticket.key} to {policy.reopen_to!r}",
                            transition_to=policy.reopen_to, fallback_category=NEW,
                            note=reopen_note(known, policy, now))


def reopen_note(known: KnownState, policy: StatusPolicy, now: datetime) -> ReopenNote:
    """At most one reopen comment per ticket per cooldown; the ones held back are counted."""
    cooldown = timedelta(minutes=policy.reopen_comment_cooldown_minutes)
    last = known.reopen_commented_at
    if last is not None and aware(now) - aware(last) < cooldown:
        return ReopenNote(post=False, folded=known.reopens_since_comment + 1)
    return ReopenNote(post=True, folded=known.reopens_since_comment)


def closed_since(known: KnownState, ticket: JiraTicket) -> datetime | None:
    """Since when the ticket has been closed: the Jira watermark while the known category is done.
    When syncer never saw it close, the ticket's `updated` is a safe bound (it closed no later)."""
    if known.jira_status_category == DONE and known.jira_changed_at is not None:
        return known.jira_changed_at
    if ticket.status_category == DONE:
        return ticket.updated
    return None


def past_new_ticket_window(
    known: KnownState, ticket: JiraTicket, policy: StatusPolicy, now: datetime
) -> bool:
    days = policy.new_ticket_after_days
    if days == 0:
        return True  # the policy's "every regression of a closed ticket opens a new one"
    since = closed_since(known, ticket)
    return since is not None and aware(now) - aware(since) >= timedelta(days=days)


# --- assignees (both optional, by policy flag) ----------------------------------------------------


@dataclass(frozen=True)
class AssigneeDecision:
    """`email`: who to assign on the target side, when `assign`; `sentry_ref`: inbound, how Sentry's
    `assignedTo` names them (`user:<id>` from [people], else the e-mail)."""

    assign: bool
    reason: str
    email: str = ""
    sentry_ref: str = ""


def decide_assignee_outbound(
    policy: StatusPolicy, assignee: SentryActor | None, ticket: JiraTicket, *, own_echo: bool = False,
    people: People = NOBODY,
) -> AssigneeDecision:
    """Sentry `issue.assigned` -> the ticket's assignee: the person [people] names by Sentry id or
    e-mail, else by exact e-mail. The account lookup and the final "already assigned to that
    account" check are the caller's (they need Jira)."""
    if not policy.assignee_to_jira:
        return AssigneeDecision(False, "status.assignee_to_jira is off")
    if own_echo:
        return AssigneeDecision(False, "our own assignment, echoed back by Sentry")
    if assignee is None or assignee.type != "user":
        kind = assignee.type if assignee else "nobody"
        return AssigneeDecision(False, f"assigned to {kind} in Sentry; only people map to Jira accounts")
    person = people.by_sentry(assignee.id) or people.by_email(assignee.email)
    email = person.email if person else assignee.email
    if not email:
        return AssigneeDecision(False, "Sentry did not send the assignee's e-mail (enhanced privacy) and "
                                f"[people] names no Sentry user {assignee.id or '(no id)'}")
    same_account = person is not None and ticket.assignee_account_id.casefold() == person.jira.casefold()
    if same_account or (ticket.assignee_email and ticket.assignee_email.casefold() == email.casefold()):
        return AssigneeDecision(False, f"{ticket.key} is assigned to {email} already")
    return AssigneeDecision(True, f"assigned in Sentry: assign {ticket.key} to {email}", email=email)


def decide_assignee_inbound(
    policy: StatusPolicy, ticket: JiraTicket, issue: SentryIssue, *, own_echo: bool = False,
    people: People = NOBODY,
) -> AssigneeDecision:
    """A Jira assignee change -> the Sentry issue's assignee: the person [people] names by Jira
    account, else by the e-mail Jira shows (often none: hidden). A ticket made unassigned leaves
    Sentry's assignee alone: it is often a team, from Sentry's own ownership rules."""
    if not policy.assignee_to_sentry:
        return AssigneeDecision(False, "status.assignee_to_sentry is off")
    if own_echo:
        return AssigneeDecision(False, "our own assignment, echoed back by Jira")
    if not ticket.assignee_account_id:
        return AssigneeDecision(False, f"{ticket.key} was unassigned; Sentry keeps its assignee")
    person = people.by_jira(ticket.assignee_account_id)
    email = person.email if person else ticket.assignee_email
    if not email:
        return AssigneeDecision(False, f"Jira hides the e-mail of {ticket.key}'s assignee and [people] "
                                f"does not name {ticket.assignee_account_id}")
    current = issue.assigned_to
    if current is not None and current.type == "user" and (
        (current.email and current.email.casefold() == email.casefold())
        or (person is not None and person.sentry and current.id == person.sentry)
    ):
        return AssigneeDecision(False, f"the Sentry issue is assigned to {current.email or email} already")
    return AssigneeDecision(True, f"assigned in Jira: assign the Sentry issue to {email}", email=email,
                            sentry_ref=person.sentry_ref if person else email)


# --- the texts ------------------------------------------------------------------------------------


def release_of(issue: SentryIssue) -> str:
    """The release named in statusDetails, when Sentry gave one."""
    for key in _RELEASE_KEYS:
        value = issue.status_details.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, Mapping):  # some versions nest it: {"version": ..., ...}
            version = value.get("version")
            if isinstance(version, str) and version.strip():
                return version.strip()
    return ""


def reopen_comment(
    issue: SentryIssue,
    *,
    folded: int = 0,
    cooldown_minutes: int = 0,
    moved_to: str | None = None,
    stays_in: str | None = None,
    url: str = "",
) -> str:
    """The comment a regression leaves on its ticket, in Jira wiki markup. Everything that comes
    from Sentry is escaped: whoever triggers an error controls its release name and title."""
    what = "is escalating" if issue.substatus == "escalating" else "regressed"
    name = escape_wiki(" ".join(strip_control(issue.short_id or issue.id).split()))
    link = safe_url(url)
    subject = f"[{name}|{link}]" if link else name
    lines = [f"Sentry issue {subject} {what}."]
    facts = [f"last seen {utc_text(issue.last_seen)}" if issue.last_seen else "last seen (unknown)"]
    release = release_of(issue)
    if release:
        facts.append(f"release {escape_wiki(' '.join(strip_control(release).split()))}")
    facts.append(f"{issue.count} {_plural(issue.count, 'event')}")
    facts.append(f"{issue.user_count} {_plural(issue.user_count, 'user')}")
    lines.append("* " + "\n* ".join(facts))
    if folded:
        held = f" within the {cooldown_minutes}-minute comment cooldown" if cooldown_minutes else ""
        lines.append(f"It also came back {folded} more {_plural(folded, 'time')} since the last such "
                     f"comment{held}.")
    if moved_to:
        lines.append(f"syncer moved this ticket to {escape_wiki(moved_to)}.")
    if stays_in:
        lines.append(f"This ticket stays {escape_wiki(stays_in)}, a won't-fix status; reopen it by hand "
                     "if it needs work.")
    return "\n".join(lines)


def successor_comment(*, new_key: str, closed_days: int | None) -> str:
    """Left on an old ticket when a regression long after closing opened `new_key` instead."""
    since = f" after {closed_days} {_plural(closed_days, 'day')} closed" if closed_days is not None else ""
    return f"The Sentry issue regressed{since}; syncer opened {_issue_key(new_key)} to follow it up."


def predecessor_comment(*, old_key: str) -> str:
    """Left on the new ticket: where the earlier history of the same Sentry issue lives."""
    return f"This Sentry issue was tracked earlier in {_issue_key(old_key)}, closed before it regressed."


def _issue_key(key: str) -> str:
    # Jira links a bare issue key to the issue; escaping its dash would stop that. A key is Jira's
    # own text, but anything not shaped like one is escaped all the same.
    return key if _ISSUE_KEY.fullmatch(key) else escape_wiki(key)


def _plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"

