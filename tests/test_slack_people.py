"""Assigning from Slack through `[people]`, through a worker of this module's own (its policy has
`[people]` and `[slack] assign_on_acknowledge = true`; the session's policy stays as it is): the
reacting or clicking person is found by the e-mail of their Slack profile (`users.info`,
`profile.email`) and the Sentry issue is assigned to them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.fakes.slack import FakeSlack
from tests.conftest import FIXTURES, clean_redis
from tests.harness import SyncerProcess, audit_of, private_stack, wait_for
from tests.test_slack import CHANNEL, _posted
from tests.test_tickets import wait_ticket

PEOPLE = """

[slack]
assign_on_acknowledge = true

[people]
"bob@example.com" = { jira = "bob-jira" }
"alice@example.com" = { jira = "alice-jira" }
"""


@pytest.fixture(scope="module")
def people_worker(
    environment: None, engine: Engine, process_env: dict[str, str], fake_sentry: FakeSentry,
    fake_jira: FakeJira, fake_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SyncerProcess, redis.Redis]]:
    where = tmp_path_factory.mktemp("slack-people")
    policy = Path(where) / "policy.toml"
    service = (FIXTURES / "policies" / "service.toml").read_text()
    assert "\n[status]\n" in service
    policy.write_text(service.replace("\n[status]\n", "\n[status]\nassignee_to_jira = true\n") + PEOPLE)
    env = {**process_env, "SYNCER_CONFIG": str(policy)}
    with private_stack(engine, env, fake_sentry, fake_jira, where, "slack-people-worker",
                       slack=fake_slack) as stack:
        yield stack


@pytest.fixture
def people(clean: None, people_worker: tuple[SyncerProcess, redis.Redis], fake_sentry: FakeSentry,
           fake_jira: FakeJira, fake_slack: FakeSlack) -> Iterator[None]:
    clean_redis(people_worker[1])
    # The same people in Sentry, so that Sentry accepts them as assignees.
    fake_sentry.add_user("Bob", "bob@example.com")
    fake_sentry.add_user("Alice", "alice@example.com")
    fake_jira.add_user("bob-jira", "Bob", "bob@example.com")
    yield
    fake_sentry.reset()
    fake_jira.reset()
    fake_slack.reset()


def _assignee_email(fake_sentry: FakeSentry, issue_id: str) -> str | None:
    assigned = fake_sentry.issue(issue_id)["assignedTo"]
    return assigned.get("email") if assigned else None


def test_eyes_assigns_the_sentry_issue_to_the_reacting_person_in_people(
    people: None, fake_sentry: FakeSentry, fake_slack: FakeSlack, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="checkout-lab-api", title="LookupError: eyes on it")
    message = _posted(fake_slack, "LookupError: eyes on it")
    fake_slack.person_react("bob", CHANNEL, message["ts"], "eyes")
    wait_for(lambda: _assignee_email(fake_sentry, issue["id"]) == "bob@example.com", 45,
             what="the Sentry issue to be assigned to Bob")
    line = next(a for a in audit_of(engine, issue["id"]) if a.action == "acknowledged")
    assert "assigned in Sentry to bob@example.com" in line.detail
    assert fake_slack.user_id("bob") in line.detail


def test_assign_to_me_assigns_the_clicker_and_a_second_click_moves_it(
    people: None, fake_sentry: FakeSentry, fake_slack: FakeSlack, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="checkout-lab-api", title="LookupError: mine now")
    message = _posted(fake_slack, "LookupError: mine now")
    fake_slack.person_click("alice", CHANNEL, message["ts"], "assign_to_me")
    wait_for(lambda: _assignee_email(fake_sentry, issue["id"]) == "alice@example.com", 45,
             what="the Sentry issue to be assigned to Alice")
    fake_slack.person_click("bob", CHANNEL, message["ts"], "assign_to_me")
    wait_for(lambda: _assignee_email(fake_sentry, issue["id"]) == "bob@example.com", 45,
             what="Bob's click to take the issue over")
    again = wait_for(
        lambda: next((a for a in audit_of(engine, issue["id"]) if a.action == "acknowledge_again"), None),
        45, what="the second click's audit line",
    )
    assert "assigned in Sentry to bob@example.com" in again.detail


def test_eyes_on_a_ticketed_issue_assigns_the_ticket_too(
    people: None, fake_sentry: FakeSentry, fake_jira: FakeJira, fake_slack: FakeSlack, engine: Engine
) -> None:
    # status.assignee_to_jira is on: Sentry's echo of syncer's own assignment is left alone, so the
    # ticket follows from the reaction itself.
    issue = fake_sentry.file_issue(project="checkout-api", title="LookupError: ticket follows")
    key = wait_ticket(fake_jira, engine, issue["id"], timeout=60)["key"]
    message = _posted(fake_slack, "LookupError: ticket follows")
    fake_slack.person_react("bob", CHANNEL, message["ts"], "eyes")
    wait_for(lambda: fake_jira.issue(key)["assignee"] == "bob-jira", 45,  # type: ignore[index]
             what="the ticket to be assigned to Bob's Jira account")
    assert _assignee_email(fake_sentry, issue["id"]) == "bob@example.com"
    line = next(a for a in audit_of(engine, issue["id"]) if a.action == "acknowledged")
    assert f"assigned from Slack: assign {key} to bob@example.com" in line.detail
