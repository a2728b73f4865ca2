"""Sentry's statuses and substatuses as Sentry sends them, each through the status policy, through
a real worker of this module's own (its policy tells Sentry's snoozes from "archived forever")
against the fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.engine import Engine

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from tests.conftest import FIXTURES, clean_redis
from tests.harness import SyncerProcess, audit_of, letters, private_stack, wait_for
from tests.test_tickets import wait_ticket


@pytest.fixture(scope="module")
def archives_worker(
    environment: None, engine: Engine, process_env: dict[str, str], fake_sentry: FakeSentry,
    fake_jira: FakeJira, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SyncerProcess, redis.Redis]]:
    """A broker, web app and worker of this module's own, with tests/fixtures/policies/archives.toml."""
    env = {**process_env, "SYNCER_CONFIG": str(FIXTURES / "policies" / "archives.toml")}
    with private_stack(engine, env, fake_sentry, fake_jira, tmp_path_factory.mktemp("statuses"),
                       "statuses-worker") as stack:
        yield stack


@pytest.fixture
def sentry(clean: None, archives_worker: tuple[SyncerProcess, redis.Redis],
           fake_sentry: FakeSentry) -> Iterator[FakeSentry]:
    clean_redis(archives_worker[1])
    yield fake_sentry
    fake_sentry.reset()


def status_of(fake_jira: FakeJira, key: str) -> str:
    found = fake_jira.issue(key)
    assert found is not None
    return str(found["status"])


def test_archived_forever_parks_the_ticket_and_unarchiving_brings_it_back(
    sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = sentry.file_issue(project="checkout-api", title="RuntimeError: we decided to live with it")
    key = wait_ticket(fake_jira, engine, issue["id"], timeout=60)["key"]

    sentry.person_archive(issue["id"], "archived_forever")
    wait_for(lambda: status_of(fake_jira, key) == "Won't Do", 60, what="status.archive_forever_to")
    assert "sentry-archived" not in fake_jira.issue(key)["labels"]  # type: ignore[index]

    # A person unarchives it; versions that send a webhook for that (switch) reach the ticket now,
    # others at the next reconcile. syncer parked the ticket, so it comes back, won't-fix or not.
    sentry.webhook_on_unignore = True
    sentry.person_unresolve(issue["id"])
    wait_for(lambda: status_of(fake_jira, key) == "To Do", 60, what="the ticket to come back")
    assert letters(engine) == []


def test_a_snooze_labels_the_ticket_and_its_escalation_takes_the_label_off(
    sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = sentry.file_issue(project="checkout-api", title="RuntimeError: quiet until it grows")
    key = wait_ticket(fake_jira, engine, issue["id"], timeout=60)["key"]

    sentry.person_archive(issue["id"], "archived_until_condition_met",
                          details={"ignoreCount": 5, "ignoreWindow": 60})
    wait_for(lambda: "sentry-archived" in fake_jira.issue(key)["labels"], 60,  # type: ignore[index]
             what="the archive label")
    assert status_of(fake_jira, key) == "To Do"  # a snooze is not "forever": no transition
    assert any("until 5 more events in 60 minutes" in a.detail for a in audit_of(engine, issue["id"]))

    sentry.record_events(issue["id"], 5)  # the condition is met: Sentry escalates it
    wait_for(lambda: "sentry-archived" not in fake_jira.issue(key)["labels"], 60,  # type: ignore[index]
             what="the label to come off")
    assert sentry.issue(issue["id"])["substatus"] == "escalating"
    assert letters(engine) == []


@pytest.mark.parametrize(
    ("how", "words"),
    [({"in_release": "2.4.1"}, "in release 2.4.1"), ({"in_next_release": True}, "in the next release"),
     ({"in_commit": "8f2a1c0"}, "in commit 8f2a1c0")],
    ids=["in-release", "in-next-release", "in-commit"],
)
def test_a_resolution_in_a_release_or_commit_closes_the_ticket_and_says_how(
    sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, how: dict[str, object], words: str
) -> None:
    issue = sentry.file_issue(project="checkout-api", title=f"RuntimeError: fixed {words}")
    key = wait_ticket(fake_jira, engine, issue["id"], timeout=60)["key"]

    sentry.person_resolve(issue["id"], **how)  # type: ignore[arg-type]

    wait_for(lambda: status_of(fake_jira, key) == "Done", 60, what="the ticket to close")
    wait_for(lambda: any(f"resolved in Sentry {words}" in a.detail for a in audit_of(engine, issue["id"])),
             30, what="the audit line naming the resolution")
