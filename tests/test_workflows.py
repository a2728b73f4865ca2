"""Workflows as company-managed sites have them, through the real stack: a strict workflow walked one
step at a time, statuses named otherwise, a status no way reaches, transition screens that require
fields. A person acts in the fake Sentry, a real worker walks the fake Jira's ticket, and the fake's
webhook for every step comes back and must end as ours.

The worker's policy (tests/fixtures/policies/service.toml) sends `workflow-*` issues to the team
"flow", in OPS, whose archive moves tickets to "Won't Do" and for whom "Rejected" is a won't-fix status
too ([status.teams.flow]); PAY's transition screens get "Root cause" = "Sentry" ([status.projects.PAY]).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.runtime import Runtime
from syncer.store.schema import DeliveryState
from syncer.sync import reconcile
from tests.harness import audit_of, deliveries, letters, link_of, wait_for
from tests.test_status_sync import (
    SENTRY_PUT,
    bot_moves,
    jira_status,
    linked_issue,
    settle,
    wait_jira,
)

FLOW = "workflow-api"  # routed to the team "flow", in OPS


def test_a_close_walks_the_strict_workflow_and_each_steps_echo_is_ours(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("PAY", "strict")
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    fake_sentry.calls.reset()

    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)

    assert bot_moves(fake_jira, key) == ["In Progress", "Done"]
    # In Progress came back as our own step, not as a person reopening or starting the ticket.
    echoes = [d.outcome for d in deliveries(engine, "jira") if "our own change" in d.outcome]
    assert any("'In Progress'" in o and "a step on a way of ours" in o for o in echoes), echoes
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0
    assert fake_sentry.issue(issue_id)["status"] == "resolved"
    link = link_of(engine, issue_id)
    assert link is not None and (link.jira_status, link.jira_status_category) == ("Done", "done")
    [close] = [a for a in audit_of(engine, issue_id) if a.action == "close"]
    assert "by way of 'In Progress'" in close.detail
    assert letters(engine) == []


def test_statuses_named_otherwise_stand_in_by_their_category(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("OPS", "strict", todo="Open", done="Closed")  # no "Done", no "To Do"
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine, project=FLOW)
    assert key.startswith("OPS-") and jira_status(fake_jira, key) == "Open"

    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Closed")
    settle(engine, fake_sentry, fake_jira)
    fake_sentry.regress(issue_id)
    wait_jira(fake_jira, key, "Open")
    settle(engine, fake_sentry, fake_jira)

    assert bot_moves(fake_jira, key) == ["In Progress", "Closed", "Open"]
    assert fake_sentry.issue(issue_id)["status"] == "unresolved"
    [close] = [a for a in audit_of(engine, issue_id) if a.action == "close"]
    assert "'Closed' now" in close.detail
    assert letters(engine) == []


def test_an_archive_walks_to_the_teams_archive_status(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("OPS", "strict", rejected="Won't Do")
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine, project=FLOW)

    fake_sentry.person_archive(issue_id)
    wait_jira(fake_jira, key, "Won't Do")
    settle(engine, fake_sentry, fake_jira)

    assert bot_moves(fake_jira, key) == ["In Progress", "Won't Do"]
    assert fake_sentry.issue(issue_id)["status"] == "ignored"  # our own Won't Do archives nothing again
    assert [a.action for a in audit_of(engine, issue_id) if a.side == "jira"].count("transition") == 1
    assert letters(engine) == []


def test_a_person_rejecting_the_ticket_archives_by_the_teams_wont_fix(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("OPS", "strict", rejected="Rejected")  # a done status, won't-fix for flow only
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine, project=FLOW)

    fake_jira.person_transition(key, "In Progress")
    fake_jira.person_transition(key, "Rejected")
    wait_for(lambda: fake_sentry.issue(issue_id)["status"] == "ignored", 30, what="the issue archived")
    settle(engine, fake_sentry, fake_jira)

    assert fake_sentry.issue(issue_id)["substatus"] == "archived_forever"  # archived, not resolved
    assert [a.action for a in audit_of(engine, issue_id) if a.side == "sentry" and a.action != "linked"] == [
        "archive"]


def test_a_status_the_workflow_lacks_is_a_dead_letter_that_says_what_to_set(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("OPS", "strict")  # no Won't Do, and an archive falls back on nothing
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine, project=FLOW)
    fake_jira.calls.reset()

    fake_sentry.person_archive(issue_id)  # issue.ignored and its alias issue.archived: two events
    wait_for(lambda: len(letters(engine)) == 2, 30, what="a dead letter for each")
    settle(engine, fake_sentry, fake_jira)

    for letter in letters(engine):
        assert key in letter.error and "Won't Do" in letter.error
        assert "its statuses: 'To Do', 'In Progress', 'Done'" in letter.error
        assert "status.projects.OPS.archive_to" in letter.error
    assert fake_jira.calls.count("POST", r"/transitions$") == 0
    assert jira_status(fake_jira, key) == "To Do"
    dead = [d for d in deliveries(engine, "sentry") if d.state == DeliveryState.DEAD]
    assert [d.attempts for d in dead] == [1, 1]  # permanent: no retries


def test_a_status_no_way_reaches_is_a_dead_letter_naming_the_way_walked(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("PAY", "strict")
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)
    fake_jira.remove_transition("PAY", "Reopen")  # Done is now a dead end
    fake_jira.calls.reset()

    fake_sentry.regress(issue_id)
    [letter] = wait_for(lambda: letters(engine), 30, what="a dead letter")
    settle(engine, fake_sentry, fake_jira)

    assert letter.error.endswith(
        f"{key}: no way to 'To Do' in PAY's workflow (walked: 'Done'; statuses its transitions reach, as far "
        "as seen: none); set status.projects.PAY.reopen_to to a status the workflow reaches, or add the "
        "transition in Jira"), letter.error
    assert fake_jira.calls.count("POST", r"/transitions$") == 0
    assert jira_status(fake_jira, key) == "Done"


def test_a_required_screen_field_is_filled_from_the_projects_policy(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("PAY", "strict")
    cause = fake_jira.add_custom_field("Root cause", "select", ["Code", "Config", "Sentry"])
    fake_jira.add_transition_field("PAY", "Done", cause)
    fake_jira.add_transition_field("PAY", "Done", "resolution")
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)

    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)

    ticket = fake_jira.issue(key)
    assert ticket is not None
    assert ticket["custom"][cause] == "Sentry"  # [status.projects.PAY.transition_fields]
    assert ticket["resolution"] == "Done"  # close_resolution
    assert letters(engine) == []


def test_a_required_screen_field_without_a_value_is_a_dead_letter_naming_it_and_its_values(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("PAY", "strict")
    for version in ("2.4", "3.0"):
        fake_jira.add_version("PAY", version)
    fake_jira.add_transition_field("PAY", "Done", "fixVersions")
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)

    fake_sentry.person_resolve(issue_id)
    [letter] = wait_for(lambda: letters(engine), 30, what="a dead letter")
    settle(engine, fake_sentry, fake_jira)

    assert key in letter.error and "'Done' ('In Progress' -> 'Done')" in letter.error
    assert 'requires "Fix versions" (fixVersions)' in letter.error and '"2.4", "3.0"' in letter.error
    assert "[status.projects.PAY.transition_fields]" in letter.error
    [dead] = [d for d in deliveries(engine, "sentry") if d.state == DeliveryState.DEAD]
    assert dead.attempts == 1  # said once, not retried in a loop
    # The step before the screen was taken; a retry after the policy is fixed goes on from there.
    assert jira_status(fake_jira, key) == "In Progress"
    assert fake_sentry.issue(issue_id)["status"] == "resolved"  # our In Progress resolves nothing away


def test_a_walk_cut_short_between_its_steps_goes_on_and_repeats_nothing(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.set_workflow("PAY", "strict")
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    # The first step is made and its answer lost: to the worker, the walk died between its steps.
    fake_jira.faults.append(Fault("POST", r"/transitions$", after=True, drop=True))

    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira, timeout=60)

    assert bot_moves(fake_jira, key) == ["In Progress", "Done"]
    [resolved] = [d for d in deliveries(engine, "sentry") if d.action == "resolved"]
    assert resolved.state == DeliveryState.DONE and resolved.attempts >= 2
    assert [a.action for a in audit_of(engine, issue_id)].count("close") == 1
    assert letters(engine) == []


def test_reconcile_repairs_a_lost_archive_by_the_teams_settings_and_walks_there(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, runtime: Runtime
) -> None:
    fake_jira.set_workflow("OPS", "strict", rejected="Won't Do")
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine, project=FLOW)
    fake_sentry.webhooks.enabled = False  # the archive's webhooks are lost
    fake_sentry.person_archive(issue_id)
    fake_sentry.webhooks.enabled = True

    report = reconcile.run(runtime)
    settle(engine, fake_sentry, fake_jira)

    # [status.teams.flow] on_archive = "transition": the [status] default would leave the ticket alone.
    assert jira_status(fake_jira, key) == "Won't Do", report
    assert bot_moves(fake_jira, key) == ["In Progress", "Won't Do"]
    link = link_of(engine, issue_id)
    assert link is not None and (link.sentry_status, link.jira_status) == ("ignored", "Won't Do")
    assert letters(engine) == []
