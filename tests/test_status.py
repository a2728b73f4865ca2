"""Status decisions, pure: what a change on one side means for the other, every branch."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from syncer.core.issue import JiraTicket, SentryActor, SentryIssue
from syncer.core.people import People, Person
from syncer.core.status import (
    AssigneeDecision,
    OutboundDecision,
    closed_since,
    closing_kind,
    decide_assignee_inbound,
    decide_assignee_outbound,
    decide_inbound,
    decide_outbound,
    is_stale,
    newer,
    past_new_ticket_window,
    predecessor_comment,
    release_of,
    reopen_comment,
    reopen_note,
    successor_comment,
    triage_inbound,
    triage_outbound,
)
from syncer.jira import webhooks as jira_webhooks
from syncer.jira.webhooks import JiraEvent
from syncer.policy import StatusPolicy
from syncer.sentry import webhooks as sentry_webhooks
from syncer.sentry.webhooks import SentryEvent
from syncer.store.schema import Link

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = StatusPolicy()


@dataclass
class Known:
    """The link's stored state, as the decisions read it (Link has the same attributes)."""

    sentry_status: str = "unresolved"
    sentry_substatus: str = ""
    sentry_changed_at: datetime | None = None
    jira_status: str = "To Do"
    jira_status_category: str = "new"
    jira_changed_at: datetime | None = None
    reopen_commented_at: datetime | None = None
    reopens_since_comment: int = 0


def ticket(status: str = "To Do", category: str = "new", **changes: Any) -> JiraTicket:
    return JiraTicket(id="10001", key="OPS-12", status=status, status_category=category, **changes)


DONE = ticket("Done", "done")
WONT_DO = ticket("Won't Do", "done")
TODO = ticket("To Do", "new")
IN_PROGRESS = ticket("In Progress", "indeterminate")


def issue(status: str = "unresolved", substatus: str = "", **changes: Any) -> SentryIssue:
    fields: dict[str, Any] = {"id": "4506", "short_id": "BILLING-API-1A", **changes}
    return SentryIssue(status=status, substatus=substatus, **fields)


def policy(**changes: Any) -> StatusPolicy:
    return StatusPolicy.model_validate(changes)


# --- watermarks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_at", "watermark", "stale"),
    [
        (T0 - timedelta(milliseconds=1), T0, True),
        (T0, T0, False),  # a duplicate delivery: harmless, every decision is a no-op by then
        (T0 + timedelta(seconds=1), T0, False),
        (None, T0, False),  # no source timestamp: nothing to compare
        (T0, None, False),  # nothing applied yet
        (datetime(2026, 3, 1, 11, 59), T0, True),  # naive times are UTC
    ],
)
def test_an_event_older_than_the_watermark_is_stale(
    event_at: datetime | None, watermark: datetime | None, stale: bool
) -> None:
    assert is_stale(event_at, watermark) is stale


def test_the_watermark_never_moves_backwards() -> None:
    assert newer(T0, T0 + timedelta(1)) == T0 + timedelta(1)
    assert newer(T0 + timedelta(1), T0) == T0 + timedelta(1)
    assert newer(None, T0) == T0
    assert newer(T0, None) == T0
    assert newer(None, None) is None


# --- what a ticket status asks of Sentry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "category", "kind"),
    [
        ("Done", "done", "resolve"),
        ("Won't Do", "done", "archive"),
        ("won't do", "done", "archive"),  # Jira compares status names without case
        ("Duplicate", "done", "archive"),
        ("In Progress", "indeterminate", None),
        ("To Do", "new", None),
        ("", "", None),
    ],
)
def test_what_a_ticket_status_asks_of_sentry(status: str, category: str, kind: str | None) -> None:
    assert closing_kind(status, category, POLICY) == kind


def test_resolve_on_can_name_other_categories() -> None:
    wide = policy(resolve_on=["indeterminate", "done"])

    assert closing_kind("In Review", "indeterminate", wide) == "resolve"


# --- inbound: Jira -> Sentry ----------------------------------------------------------------------


def inbound(
    tkt: JiraTicket, sentry: SentryIssue, known: Known | None = None, pol: StatusPolicy = POLICY, **kw: Any
) -> Any:
    kw.setdefault("status_changed", True)
    return decide_inbound(ticket=tkt, known=known or Known(), issue=sentry, policy=pol, **kw)


def test_done_resolves_the_sentry_issue() -> None:
    decision = inbound(DONE, issue())

    assert decision.action == "resolve"
    assert decision.sentry_status == "resolved"
    assert decision.changes
    assert decision.record
    assert "OPS-12" in decision.reason


def test_done_resolves_in_the_next_release_when_the_policy_says_so() -> None:
    decision = inbound(DONE, issue(), pol=policy(sentry_resolution="resolvedInNextRelease"))

    assert (decision.action, decision.sentry_status) == ("resolve", "resolvedInNextRelease")


def test_done_when_the_issue_is_resolved_already_is_a_no_op() -> None:
    decision = inbound(DONE, issue("resolved"))

    assert decision.action == "nothing"
    assert not decision.changes
    assert decision.record  # the ticket's state is still worth storing
    assert "resolved already" in decision.reason


def test_wont_do_archives_instead_of_resolving() -> None:
    decision = inbound(WONT_DO, issue())

    assert decision.action == "archive"
    assert decision.sentry_status == "ignored"
    assert decision.status_details == {}


def test_wont_do_archives_an_issue_that_was_resolved() -> None:
    closed = Known(jira_status="Done", jira_status_category="done")

    assert inbound(WONT_DO, issue("resolved"), closed).action == "archive"


def test_wont_do_when_archived_already_is_a_no_op() -> None:
    decision = inbound(WONT_DO, issue("ignored", "archived_forever"))

    assert decision.action == "nothing"
    assert "archived already" in decision.reason


def test_done_leaves_an_archived_issue_archived() -> None:
    decision = inbound(DONE, issue("ignored", "archived_until_escalating"))

    assert decision.action == "nothing"
    assert "unarchive_from_jira" in decision.reason


def test_done_resolves_an_archived_issue_when_the_policy_allows() -> None:
    decision = inbound(DONE, issue("ignored"), pol=policy(unarchive_from_jira=True))

    assert decision.action == "resolve"


def test_reopened_in_jira_unresolves() -> None:
    closed = Known(sentry_status="resolved", jira_status="Done", jira_status_category="done")

    decision = inbound(TODO, issue("resolved"), closed)

    assert decision.action == "unresolve"
    assert decision.sentry_status == "unresolved"


def test_reopened_in_jira_leaves_an_archived_issue_archived() -> None:
    closed = Known(jira_status="Done", jira_status_category="done")

    decision = inbound(IN_PROGRESS, issue("ignored"), closed)

    assert decision.action == "nothing"
    assert "stays so" in decision.reason


def test_reopened_in_jira_unarchives_when_the_policy_allows() -> None:
    closed = Known(jira_status="Won't Do", jira_status_category="done")

    decision = inbound(TODO, issue("ignored"), closed, pol=policy(unarchive_from_jira=True))

    assert decision.action == "unresolve"


def test_reopened_when_the_issue_is_unresolved_already_is_a_no_op() -> None:
    closed = Known(jira_status="Done", jira_status_category="done")

    decision = inbound(TODO, issue("unresolved", "regressed"), closed)

    assert decision.action == "nothing"
    assert "unresolved already" in decision.reason


def test_moving_between_open_statuses_changes_nothing() -> None:
    decision = inbound(IN_PROGRESS, issue("resolved"), Known(jira_status="To Do", jira_status_category="new"))

    assert decision.action == "nothing"
    assert "did not leave a closed status" in decision.reason


def test_the_changelog_says_it_left_done_when_the_link_missed_the_close() -> None:
    # The delivery that closed the ticket was lost; this one's `from` still tells.
    decision = inbound(TODO, issue("resolved"), Known(), previous_status="Done")

    assert decision.action == "unresolve"


def test_the_changelog_says_it_left_a_wont_fix_status() -> None:
    decision = inbound(TODO, issue("ignored"), Known(), previous_status="Won't Do",
                       pol=policy(unarchive_from_jira=True))

    assert decision.action == "unresolve"


def test_a_changelog_from_an_open_status_does_not_count_as_closed() -> None:
    assert inbound(TODO, issue("resolved"), Known(), previous_status="In Progress").action == "nothing"


def test_an_update_without_a_status_change_changes_nothing() -> None:
    decision = inbound(DONE, issue(), status_changed=False)

    assert decision.action == "nothing"
    assert not decision.record  # comments and edits must not move the Jira watermark
    assert decision.reason == "not a status change"


def test_our_own_jira_change_echoed_back_changes_nothing() -> None:
    # Our transition stored where it led before its echo could be handled (under the link's lock).
    decision = inbound(DONE, issue(), Known(jira_status="Done", jira_status_category="done"), own_echo=True)

    assert decision.action == "nothing"
    assert decision.record  # but it tells when the ticket closed: the watermark moves
    assert "our own change" in decision.reason


def test_the_echo_of_a_step_on_our_way_is_ours_and_not_recorded() -> None:
    """To Do -> In Progress -> Done by us: the link holds Done; In Progress's echo, however late,
    neither moves Sentry nor overwrites the link."""
    closed = Known(sentry_status="resolved", jira_status="Done", jira_status_category="done")

    decision = inbound(IN_PROGRESS, issue("resolved"), closed, own_echo=True, previous_status="To Do",
                       event_at=T0 + timedelta(seconds=5))

    assert (decision.action, decision.record) == ("nothing", False)
    assert "a step on a way of ours" in decision.reason and "'Done'" in decision.reason


def test_a_jira_event_older_than_the_watermark_is_dropped() -> None:
    decision = inbound(DONE, issue(), Known(jira_changed_at=T0), event_at=T0 - timedelta(seconds=5))

    assert decision.action == "nothing"
    assert not decision.record
    assert decision.reason.startswith("stale:")
    assert "2026-03-01T11:59:55Z" in decision.reason


def test_a_jira_event_at_the_watermark_is_applied() -> None:
    assert inbound(DONE, issue(), Known(jira_changed_at=T0), event_at=T0).action == "resolve"


def test_out_of_order_jira_updates_end_in_the_newest_state() -> None:
    """To Do -> Done (t1) then Done -> To Do (t2), delivered t2 first: nothing changes in Sentry,
    and t1 is then stale."""
    known = Known(jira_changed_at=T0)
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)

    first = inbound(TODO, issue(), known, event_at=t2, previous_status="Done")
    assert first.action == "nothing"  # Sentry is unresolved, as the newest ticket state wants
    known.jira_changed_at = newer(t2, known.jira_changed_at)

    second = inbound(DONE, issue(), known, event_at=t1, previous_status="To Do")
    assert second.action == "nothing"
    assert not second.record


def test_the_link_satisfies_the_known_state_protocol() -> None:
    link = Link(sentry_issue_id="4506", jira_status="Done", jira_status_category="done", jira_changed_at=T0)

    assert decide_inbound(ticket=TODO, known=link, issue=issue("resolved"), policy=POLICY,
                          status_changed=True).action == "unresolve"


# --- outbound: Sentry -> Jira ---------------------------------------------------------------------


def outbound(
    action: str, sentry: SentryIssue, tkt: JiraTicket, known: Known | None = None, pol: StatusPolicy = POLICY,
    now: datetime = T0, **kw: Any,
) -> OutboundDecision:
    known = known or Known()
    return decide_outbound(action, issue=sentry, ticket=tkt, known=known, policy=pol, now=now, **kw)


def test_resolved_in_sentry_closes_the_ticket() -> None:
    decision = outbound("resolved", issue("resolved"), TODO)

    assert decision.action == "close"
    assert decision.transition_to == "Done"
    assert decision.resolution == "Done"
    assert decision.note is None


def test_resolved_uses_the_configured_status_and_resolution() -> None:
    decision = outbound("resolved", issue("resolved"), IN_PROGRESS,
                        pol=policy(close_to="Closed", close_resolution="Fixed"))

    assert (decision.transition_to, decision.resolution) == ("Closed", "Fixed")


@pytest.mark.parametrize("tkt", [DONE, WONT_DO, ticket("Closed", "done")])
def test_resolved_when_the_ticket_is_closed_already_is_a_no_op(tkt: JiraTicket) -> None:
    decision = outbound("resolved", issue("resolved"), tkt)

    assert decision.action == "nothing"
    assert "closed already" in decision.reason


@pytest.mark.parametrize(
    ("action", "now_status"),
    [("resolved", "unresolved"), ("unresolved", "resolved"), ("ignored", "unresolved")],
)
def test_an_event_the_issue_has_moved_on_from_is_dropped(action: str, now_status: str) -> None:
    decision = outbound(action, issue(now_status, "regressed"), DONE)

    assert decision.action == "nothing"
    assert not decision.record
    assert f"the issue is {now_status} now" in decision.reason


def test_our_own_sentry_change_echoed_back_changes_nothing() -> None:
    decision = outbound("resolved", issue("resolved"), TODO, own_echo=True)

    assert decision.action == "nothing"
    assert "our own change" in decision.reason


def test_a_sentry_event_older_than_the_watermark_is_dropped() -> None:
    decision = outbound("resolved", issue("resolved"), TODO, Known(sentry_changed_at=T0),
                        event_at=T0 - timedelta(minutes=5))

    assert decision.action == "nothing"
    assert not decision.record


@pytest.mark.parametrize("substatus", ["regressed", "escalating"])
def test_a_regression_reopens_the_ticket_with_a_comment(substatus: str) -> None:
    closed = Known(jira_status="Done", jira_status_category="done", jira_changed_at=T0 - timedelta(days=2))

    decision = outbound("unresolved", issue("unresolved", substatus), DONE, closed)

    assert decision.action == "reopen"
    assert decision.transition_to == "To Do"
    assert decision.note is not None
    assert decision.note.post
    assert decision.note.folded == 0
    assert decision.resolution is None


def test_a_regression_of_an_open_ticket_is_a_no_op() -> None:
    decision = outbound("unresolved", issue("unresolved", "regressed"), IN_PROGRESS)

    assert decision.action == "nothing"
    assert "open already" in decision.reason


def test_a_regression_after_the_window_opens_a_new_ticket() -> None:
    closed = Known(jira_status="Done", jira_status_category="done", jira_changed_at=T0 - timedelta(days=31))

    decision = outbound("unresolved", issue("unresolved", "regressed"), DONE, closed)

    assert decision.action == "new_ticket"
    assert "closed since 2026-01-29T12:00:00Z" in decision.reason
    assert decision.transition_to is None


@pytest.mark.parametrize(("closed_for", "expected"), [
    (timedelta(days=30), "new_ticket"),  # the window is inclusive
    (timedelta(days=30) - timedelta(seconds=1), "reopen"),
])
def test_the_new_ticket_window_boundary(closed_for: timedelta, expected: str) -> None:
    closed = Known(jira_status="Done", jira_status_category="done", jira_changed_at=T0 - closed_for)

    assert outbound("unresolved", issue("unresolved", "regressed"), DONE, closed).action == expected


def test_a_zero_day_window_always_opens_a_new_ticket() -> None:
    decision = outbound("unresolved", issue("unresolved", "regressed"), DONE, Known(),
                        pol=policy(new_ticket_after_days=0))

    assert decision.action == "new_ticket"


def test_closed_since_is_unknown_without_a_done_watermark_or_updated() -> None:
    assert closed_since(Known(jira_changed_at=T0), DONE) is None
    assert not past_new_ticket_window(Known(jira_changed_at=T0 - timedelta(days=90)), DONE, POLICY, T0)
    assert outbound("unresolved", issue("unresolved", "regressed"), DONE, Known()).action == "reopen"


def test_closed_since_falls_back_to_the_tickets_updated_time() -> None:
    stale_known = Known(jira_status="In Progress", jira_status_category="indeterminate")
    old = dataclasses.replace(DONE, updated=T0 - timedelta(days=45))

    assert closed_since(stale_known, old) == T0 - timedelta(days=45)
    assert outbound("unresolved", issue("unresolved", "regressed"), old, stale_known).action == "new_ticket"


def test_closed_since_is_the_jira_watermark_while_done() -> None:
    known = Known(jira_status="Done", jira_status_category="done", jira_changed_at=T0)

    assert closed_since(known, dataclasses.replace(DONE, updated=T0 + timedelta(days=3))) == T0
    assert closed_since(Known(jira_changed_at=T0), TODO) is None


@pytest.mark.parametrize("closed_for", [timedelta(days=1), timedelta(days=400)])
def test_a_regression_of_a_wont_fix_ticket_comments_and_stays_closed(closed_for: timedelta) -> None:
    closed = Known(jira_status="Won't Do", jira_status_category="done", jira_changed_at=T0 - closed_for)

    decision = outbound("unresolved", issue("unresolved", "regressed"), WONT_DO, closed)

    assert decision.action == "comment"
    assert decision.transition_to is None
    assert decision.note is not None
    assert decision.note.post
    assert "stays closed" in decision.reason


def test_a_persons_unresolve_reopens_a_closed_ticket_without_a_comment() -> None:
    long_closed = Known(jira_status="Done", jira_status_category="done", jira_changed_at=T0 - timedelta(90))

    decision = outbound("unresolved", issue("unresolved", "ongoing"), DONE, long_closed)

    assert decision.action == "reopen"  # never a new ticket: it is not a regression
    assert decision.transition_to == "To Do"
    assert decision.note is None


def test_a_persons_unresolve_leaves_a_wont_fix_ticket_closed() -> None:
    decision = outbound("unresolved", issue("unresolved", "ongoing"), WONT_DO)

    assert decision.action == "nothing"
    assert "wont_fix" in decision.reason


def test_a_persons_unresolve_of_an_open_ticket_is_a_no_op() -> None:
    assert outbound("unresolved", issue("unresolved", "ongoing"), TODO).action == "nothing"


# --- triage: what is decided before reading either side ------------------------------------------


def test_inbound_triage_leaves_a_current_status_change_to_the_full_decision() -> None:
    assert triage_inbound(known=Known(jira_changed_at=T0), status_changed=True, own_echo=False,
                          event_at=T0 + timedelta(seconds=1)) is None
    stale = triage_inbound(known=Known(jira_changed_at=T0), status_changed=True, own_echo=True,
                           event_at=T0 - timedelta(seconds=1))
    assert stale is not None
    assert "our own change" in stale.reason
    assert not stale.record  # an old echo must not move the watermark


def test_outbound_triage_needs_a_status_action() -> None:
    assert triage_outbound("resolved", known=Known(), own_echo=False, event_at=None) is None
    other = triage_outbound("created", known=Known(), own_echo=False, event_at=None)
    assert other is not None
    assert other.action == "nothing"
    assert not other.changes
    echo = triage_outbound("archived", known=Known(), own_echo=True, event_at=None)
    assert echo is not None
    assert echo.record


def test_a_decision_that_changes_something_says_so() -> None:
    assert outbound("resolved", issue("resolved"), TODO).changes


# --- the reopen comment cooldown ------------------------------------------------------------------


def test_the_first_regression_comments() -> None:
    assert reopen_note(Known(), POLICY, T0).post


def test_a_regression_within_the_cooldown_is_counted_not_commented() -> None:
    known = Known(reopen_commented_at=T0 - timedelta(minutes=59), reopens_since_comment=2)

    note = reopen_note(known, POLICY, T0)

    assert not note.post
    assert note.folded == 3
    assert note.counter_after == 3


def test_the_first_regression_after_the_cooldown_comments_with_the_count() -> None:
    known = Known(reopen_commented_at=T0 - timedelta(minutes=60), reopens_since_comment=3)

    note = reopen_note(known, POLICY, T0)

    assert note.post
    assert note.folded == 3
    assert note.counter_after == 0


def test_a_zero_cooldown_comments_every_time() -> None:
    known = Known(reopen_commented_at=T0, reopens_since_comment=0)

    assert reopen_note(known, policy(reopen_comment_cooldown_minutes=0), T0).post


def test_a_regression_storm_leaves_one_comment_per_cooldown() -> None:
    """Fifty regressions a minute apart, the ticket closed again by a person each time: one
    comment an hour, each counting the ones held back since the last."""
    known = Known(jira_status="Done", jira_status_category="done")
    comments: list[int] = []
    with freeze_time(T0) as clock:
        for _ in range(150):
            now = datetime.now(UTC)
            decision = outbound("unresolved", issue("unresolved", "regressed"), DONE, known, now=now)
            assert decision.action == "reopen"
            note = decision.note
            assert note is not None
            if note.post:
                comments.append(note.folded)
                known.reopen_commented_at = now
            known.reopens_since_comment = note.counter_after
            known.jira_changed_at = now  # the person closed it again
            clock.tick(timedelta(minutes=1))

    assert comments == [0, 59, 59]
    assert known.reopens_since_comment == 29


def test_the_new_ticket_window_with_the_clock_running() -> None:
    with freeze_time(T0) as clock:
        known = Known(jira_status="Done", jira_status_category="done", jira_changed_at=datetime.now(UTC))
        clock.tick(timedelta(days=29, hours=23))
        assert outbound("unresolved", issue("unresolved", "regressed"), DONE, known,
                        now=datetime.now(UTC)).action == "reopen"
        clock.tick(timedelta(hours=1))
        assert outbound("unresolved", issue("unresolved", "regressed"), DONE, known,
                        now=datetime.now(UTC)).action == "new_ticket"


# --- archive --------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["ignored", "archived"])
def test_archive_does_nothing_by_default(action: str) -> None:
    decision = outbound(action, issue("ignored", "archived_forever"), TODO)

    assert decision.action == "nothing"
    assert 'on_archive = "nothing"' in decision.reason


def test_archive_can_label_the_ticket() -> None:
    decision = outbound("archived", issue("ignored"), TODO, pol=policy(on_archive="label"))

    assert (decision.action, decision.label) == ("label", "sentry-archived")


def test_archive_label_already_there_is_a_no_op() -> None:
    labelled = dataclasses.replace(TODO, labels=("sentry", "sentry-archived"))

    decision = outbound("archived", issue("ignored"), labelled, pol=policy(on_archive="label"))

    assert decision.action == "nothing"


@pytest.mark.parametrize(
    ("action", "sentry", "then"),
    [
        ("unresolved", issue("unresolved", "escalating"), "reopen"),
        ("unresolved", issue("unresolved", "ongoing"), "reopen"),
        ("resolved", issue("resolved"), "nothing"),
    ],
)
def test_the_archive_label_goes_when_the_issue_is_no_longer_archived(
    action: str, sentry: SentryIssue, then: str
) -> None:
    labelled = dataclasses.replace(DONE, labels=("sentry", "sentry-archived"))

    decision = outbound(action, sentry, labelled, pol=policy(on_archive="label"))

    assert (decision.action, decision.unlabel, decision.changes) == (then, "sentry-archived", True)
    assert "remove the label 'sentry-archived'" in decision.reason


def test_no_archive_label_to_remove_without_the_label_policy_or_the_label() -> None:
    labelled = dataclasses.replace(TODO, labels=("sentry", "sentry-archived"))
    assert outbound("unresolved", issue("unresolved"), labelled).unlabel is None  # on_archive = "nothing"
    assert outbound("unresolved", issue("unresolved"), TODO, pol=policy(on_archive="label")).unlabel is None


def test_archive_can_move_the_ticket() -> None:
    pol = policy(on_archive="transition", archive_to="Won't Do")

    decision = outbound("ignored", issue("ignored"), IN_PROGRESS, pol=pol)

    assert (decision.action, decision.transition_to) == ("transition", "Won't Do")
    assert outbound("ignored", issue("ignored"), WONT_DO, pol=pol).action == "nothing"


def test_other_actions_do_not_change_status() -> None:
    decision = outbound("assigned", issue(), TODO)

    assert decision.action == "nothing"
    assert not decision.record


# --- assignees ------------------------------------------------------------------------------------

ALICE = SentryActor(type="user", id="7", name="Alice", email="alice@example.com")
TO_JIRA = policy(assignee_to_jira=True)
TO_SENTRY = policy(assignee_to_sentry=True)


@pytest.mark.parametrize(
    ("pol", "assignee", "tkt", "own_echo", "expected"),
    [
        (POLICY, ALICE, TODO, False, AssigneeDecision(False, "status.assignee_to_jira is off")),
        (TO_JIRA, ALICE, TODO, True, AssigneeDecision(False, "our own assignment, echoed back by Sentry")),
        (TO_JIRA, SentryActor(type="team", id="3", name="payments"), TODO, False,
         AssigneeDecision(False, "assigned to team in Sentry; only people map to Jira accounts")),
        (TO_JIRA, None, TODO, False,
         AssigneeDecision(False, "assigned to nobody in Sentry; only people map to Jira accounts")),
        (TO_JIRA, dataclasses.replace(ALICE, email=""), TODO, False,
         AssigneeDecision(False, "Sentry did not send the assignee's e-mail (enhanced privacy) and "
                                 "[people] names no Sentry user 7")),
        (TO_JIRA, ALICE, dataclasses.replace(TODO, assignee_email="Alice@Example.com"), False,
         AssigneeDecision(False, "OPS-12 is assigned to alice@example.com already")),
        (TO_JIRA, ALICE, TODO, False,
         AssigneeDecision(True, "assigned in Sentry: assign OPS-12 to alice@example.com",
                          "alice@example.com")),
    ],
)
def test_sentry_assignee_to_jira(
    pol: StatusPolicy,
    assignee: SentryActor | None,
    tkt: JiraTicket,
    own_echo: bool,
    expected: AssigneeDecision,
) -> None:
    assert decide_assignee_outbound(pol, assignee, tkt, own_echo=own_echo) == expected


PEOPLE = People([Person("alice@example.com", "acc-alice", "7"), Person("bob@example.com", "acc-1")])


@pytest.mark.parametrize(
    ("assignee", "tkt", "assign", "email"),
    [
        # Enhanced privacy: no e-mail from Sentry, but [people] knows Sentry user 7.
        (dataclasses.replace(ALICE, email=""), TODO, True, "alice@example.com"),
        (SentryActor(type="user", id="8", email="Bob@example.com"), TODO, True, "bob@example.com"),
        # Jira hides the assignee's e-mail; the account [people] names for the person says it all.
        (dataclasses.replace(ALICE, email=""), dataclasses.replace(TODO, assignee_account_id="ACC-alice"),
         False, ""),
        (SentryActor(type="user", id="99"), TODO, False, ""),
    ],
)
def test_sentry_assignee_to_jira_by_people(
    assignee: SentryActor, tkt: JiraTicket, assign: bool, email: str
) -> None:
    decision = decide_assignee_outbound(TO_JIRA, assignee, tkt, people=PEOPLE)

    assert (decision.assign, decision.email) == (assign, email), decision


ASSIGNED = dataclasses.replace(TODO, assignee_account_id="acc-1", assignee_email="bob@example.com")
HIDDEN = dataclasses.replace(ASSIGNED, assignee_email="")


@pytest.mark.parametrize(
    ("pol", "tkt", "sentry", "own_echo", "assign", "why"),
    [
        (POLICY, ASSIGNED, issue(), False, False, "assignee_to_sentry is off"),
        (TO_SENTRY, ASSIGNED, issue(), True, False, "echoed back by Jira"),
        (TO_SENTRY, TODO, issue(), False, False, "was unassigned; Sentry keeps its assignee"),
        (TO_SENTRY, HIDDEN, issue(), False, False, "hides the e-mail"),
        (TO_SENTRY, ASSIGNED, issue(assigned_to=SentryActor("user", "9", "Bob", "BOB@example.com")), False,
         False, "assigned to BOB@example.com already"),
        (TO_SENTRY, ASSIGNED, issue(assigned_to=ALICE), False, True,
         "assign the Sentry issue to bob@example.com"),
    ],
)
def test_jira_assignee_to_sentry(
    pol: StatusPolicy, tkt: JiraTicket, sentry: SentryIssue, own_echo: bool, assign: bool, why: str
) -> None:
    decision = decide_assignee_inbound(pol, tkt, sentry, own_echo=own_echo)

    assert decision.assign is assign
    assert why in decision.reason
    assert decision.email == ("bob@example.com" if assign else "")
    assert decision.sentry_ref == decision.email  # no [people]: Sentry takes the e-mail as username


HIDDEN_ALICE = dataclasses.replace(TODO, assignee_account_id="acc-alice", assignee_email="")


@pytest.mark.parametrize(
    ("tkt", "sentry", "assign", "ref", "why"),
    [
        (HIDDEN_ALICE, issue(), True, "user:7", "assign the Sentry issue to alice@example.com"),
        # Bob has no Sentry id in [people]: his e-mail (the table's key) names him to Sentry.
        (dataclasses.replace(HIDDEN, assignee_account_id="ACC-1"), issue(), True, "bob@example.com",
         "to bob@example.com"),
        (HIDDEN_ALICE, issue(assigned_to=SentryActor("user", "7", "Alice")), False, "",
         "assigned to alice@example.com already"),
        (dataclasses.replace(HIDDEN, assignee_account_id="acc-stranger"), issue(), False, "",
         "[people] does not name acc-stranger"),
    ],
)
def test_jira_assignee_to_sentry_by_people(
    tkt: JiraTicket, sentry: SentryIssue, assign: bool, ref: str, why: str
) -> None:
    decision = decide_assignee_inbound(TO_SENTRY, tkt, sentry, people=PEOPLE)

    assert (decision.assign, decision.sentry_ref) == (assign, ref)
    assert why in decision.reason


# --- the texts ------------------------------------------------------------------------------------


def test_the_reopen_comment_says_what_regressed() -> None:
    regressed = issue("unresolved", "regressed", last_seen=T0, count=1234, user_count=1,
                      status_details={"inRelease": "billing@2.4.1"})

    text = reopen_comment(regressed, moved_to="To Do", url="https://sentry.io/organizations/acme/issues/4506/")

    assert text.splitlines()[0] == (
        "Sentry issue [BILLING\\-API\\-1A|https://sentry.io/organizations/acme/issues/4506/] regressed."
    )
    assert "* last seen 2026-03-01T12:00:00Z" in text
    assert "* release billing\\@2.4.1" in text  # a bare @ could start a mention
    assert "* 1234 events" in text
    assert "* 1 user" in text
    assert "syncer moved this ticket to To Do." in text
    assert "came back" not in text


def test_the_reopen_comment_counts_the_regressions_held_back() -> None:
    text = reopen_comment(issue("unresolved", "escalating", count=1), folded=4, cooldown_minutes=60)

    assert "is escalating." in text
    assert "last seen (unknown)" in text
    assert "* 1 event\n" in text
    assert (
        "It also came back 4 more times since the last such comment within the 60-minute comment cooldown."
    ) in text
    assert "release" not in text


def test_the_reopen_comment_on_a_wont_fix_ticket_says_it_stays() -> None:
    text = reopen_comment(issue("unresolved", "regressed"), folded=1, stays_in="Won't Do")

    assert "came back 1 more time since the last such comment." in text
    assert "This ticket stays Won't Do, a won't-fix status; reopen it by hand" in text


def test_the_reopen_comment_keeps_sentry_text_inert() -> None:
    hostile = issue("unresolved", "regressed", short_id="[~admin] {code}x",
                    status_details={"inRelease": "v1 [click|http://evil.example] !img.png!\nh1. big"})

    text = reopen_comment(hostile, url="javascript:alert(1)")

    assert "[~admin]" not in text
    assert "{code}" not in text
    assert "[click|" not in text
    assert "!img.png!" not in text
    assert "javascript:" not in text  # an unsafe URL is dropped, the name stays plain
    assert text.startswith("Sentry issue \\[\\~admin\\] \\{code\\}x regressed.")
    assert "release v1 \\[click\\|http://evil.example\\] \\!img.png\\! h1. big" in text


@pytest.mark.parametrize(
    ("details", "release"),
    [
        ({}, ""),
        ({"inRelease": "1.0"}, "1.0"),
        ({"inRelease": "latest", "regressedRelease": "2.0"}, "2.0"),
        ({"release": {"version": "3.0"}}, "3.0"),
        ({"inNextRelease": True}, ""),
        ({"inRelease": "  "}, ""),
    ],
)
def test_the_release_comes_from_status_details(details: dict[str, Any], release: str) -> None:
    assert release_of(issue(status_details=details)) == release


def test_the_comments_that_tie_an_old_and_a_new_ticket() -> None:
    # Keys stay bare, so Jira links them to the tickets.
    assert successor_comment(new_key="OPS-99", closed_days=45) == (
        "The Sentry issue regressed after 45 days closed; syncer opened OPS-99 to follow it up."
    )
    assert successor_comment(new_key="OPS-99", closed_days=1).count("1 day closed") == 1
    assert successor_comment(new_key="OPS-99", closed_days=None) == (
        "The Sentry issue regressed; syncer opened OPS-99 to follow it up."
    )
    assert predecessor_comment(old_key="OPS-12") == (
        "This Sentry issue was tracked earlier in OPS-12, closed before it regressed."
    )


def test_a_key_not_shaped_like_one_is_escaped() -> None:
    assert "[~admin]" not in successor_comment(new_key="[~admin]", closed_days=None)
    assert predecessor_comment(old_key="ops-1 {code}") == (
        "This Sentry issue was tracked earlier in ops\\-1 \\{code\\}, closed before it regressed."
    )


# --- stored webhooks in, decisions out ------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OUR_APP = "5c1e5a00-0000-4000-8000-00000000a11e"


def jira_event(name: str) -> JiraEvent:
    return jira_webhooks.parse_event(json.loads((FIXTURES / "jira" / name).read_text()))


def sentry_event(name: str) -> SentryEvent:
    return sentry_webhooks.parse_event("issue", json.loads((FIXTURES / "sentry" / name).read_text()))


def inbound_from(event: JiraEvent, known: Known, sentry: SentryIssue, bot: str = "bot-account-id") -> Any:
    assert event.ticket is not None
    change = event.status_change()
    return decide_inbound(
        ticket=event.ticket, known=known, issue=sentry, policy=POLICY, status_changed=change is not None,
        own_echo=event.user_id == bot, event_at=event.timestamp,
        previous_status=change.from_string if change else "",
    )


def test_a_stored_done_webhook_resolves() -> None:
    event = jira_event("issue_updated_done.json")

    assert inbound_from(event, Known(), issue()).action == "resolve"


def test_a_stored_done_webhook_from_our_bot_is_an_echo() -> None:
    event = jira_event("issue_updated_done.json")

    closed = Known(jira_status="Done", jira_status_category="done")  # as our transition left it

    decision = inbound_from(event, closed, issue(), bot=event.user_id)

    assert decision.action == "nothing"
    assert decision.record


def test_a_stored_reopen_webhook_unresolves() -> None:
    event = jira_event("issue_updated_reopened.json")
    closed = Known(jira_status="Done", jira_status_category="done")

    assert inbound_from(event, closed, issue("resolved")).action == "unresolve"


def test_a_stored_reopen_webhook_older_than_the_done_one_is_stale() -> None:
    done, reopened = jira_event("issue_updated_done.json"), jira_event("issue_updated_reopened.json")
    assert done.timestamp is not None
    assert reopened.timestamp is not None
    assert done.timestamp < reopened.timestamp

    decision = inbound_from(done, Known(jira_changed_at=reopened.timestamp), issue())

    assert not decision.record
    assert decision.reason.startswith("stale:")


def test_a_stored_comment_webhook_is_not_a_status_change() -> None:
    event = jira_webhooks.parse_event(json.loads((FIXTURES / "jira" / "comment_created.json").read_text()))

    assert event.status_change() is None


@pytest.mark.parametrize(
    ("fixture", "tkt", "action"),
    [
        ("issue_resolved.json", TODO, "close"),
        ("issue_unresolved_regressed.json", DONE, "reopen"),
        ("issue_ignored.json", TODO, "nothing"),
    ],
)
def test_stored_sentry_webhooks(fixture: str, tkt: JiraTicket, action: str) -> None:
    event = sentry_event(fixture)
    assert event.issue is not None
    known = Known(jira_status=tkt.status, jira_status_category=tkt.status_category, jira_changed_at=T0)

    decision = outbound(event.action, event.issue, tkt, known, own_echo=event.is_own_echo(OUR_APP))

    assert decision.action == action


def test_a_stored_resolve_by_our_app_is_an_echo() -> None:
    event = sentry_event("issue_resolved_by_us.json")
    assert event.issue is not None
    assert event.is_own_echo(OUR_APP)

    decision = outbound(event.action, event.issue, TODO, own_echo=True)

    assert decision.action == "nothing"
    assert "our own change" in decision.reason
