"""Assignees Jira will accept, `[people]`, and labels taken from the issue, through a real worker
against the fakes.

This module runs a stack of its own (web app, broker, worker) with a policy that files tickets to
people the fake Jira refuses or cannot tell apart, maps one person in `[people]`, and follows
assignees both ways; the session's fakes and database are shared, their webhooks pointed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.fakes.base import FakeServer
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.settings import Settings
from syncer.store.schema import DeliveryState, LinkState
from tests.harness import (
    RedisServer,
    SyncerProcess,
    audit_of,
    deliveries,
    letters,
    link_of,
    start_worker,
    wait_for,
)

# Sentry's fake organisation starts with Alice (1), Bob (2) and Carol (3) after every reset.
BOB_SENTRY_ID = "2"
POLICY = f"""
[defaults]
jira_project = "OPS"
labels = ["sentry"]

[teams.payers]                 # the fake makes acc-payer unassignable in PAY
jira_project = "PAY"
assignee = "payer@example.com"

[teams.ghosts]                 # nobody has this address
assignee = "nobody@example.com"

[teams.twins]                  # two Jira users have this address
assignee = "twin@example.com"

[teams.bobs]                   # Jira hides Bob's address: [people] names his account
jira_project = "WEB"
assignee = "bob@example.com"

[teams.labelled]               # labels taken from the issue: Sentry's tag values have spaces
labels = ["env-{{tags.environment}}", "{{project}}", "release-{{tags.release}}"]

[[routes]]
when = {{ project = "labelled-*" }}
team = "labelled"

[[routes]]
when = {{ project = "payer-*" }}
team = "payers"

[[routes]]
when = {{ project = "ghost-*" }}
team = "ghosts"

[[routes]]
when = {{ project = "twin-*" }}
team = "twins"

[[routes]]
when = {{ project = "bob-*" }}
team = "bobs"

[status]
assignee_to_jira = true
assignee_to_sentry = true

[people]
"bob@example.com" = {{ jira = "acc-bob", sentry = "{BOB_SENTRY_ID}" }}
"""


@dataclass
class Stack:
    web: FakeServer
    worker: SyncerProcess
    counters: redis.Redis


@pytest.fixture(scope="module")
def own(
    environment: None,
    engine: Engine,
    process_env: dict[str, str],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    from syncer.settings import current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    fake_jira.add_user("acc-payer", "Pay Er", "payer@example.com")
    fake_jira.add_user("acc-twin-a", "Twin A", "twin@example.com")
    fake_jira.add_user("acc-twin-b", "Twin B", "TWIN@example.com")
    fake_jira.add_user("acc-bob", "Bob Example", "bob@example.com", email_visible=False)
    workdir = tmp_path_factory.mktemp("people")
    policy = workdir / "policy.toml"
    policy.write_text(POLICY)
    broker = RedisServer().start()
    env = {**process_env, "SYNCER_BROKER_URL": broker.url, "SYNCER_CONFIG": str(policy)}
    settings = Settings(**{**current_settings().model_dump(), "broker_url": broker.url})
    client = redis.Redis.from_url(broker.url)
    web = FakeServer(
        create_app(settings, engine, worker.publisher(settings), client.ping, metrics.WorkerCounters(client))
    ).start()
    hooks = (fake_sentry.webhooks.url, fake_jira.webhooks.url)
    fake_sentry.webhooks.url = f"{web.url}/webhooks/sentry"
    fake_jira.webhooks.url = f"{web.url}/webhooks/jira"
    proc = start_worker("people", env, workdir)
    try:
        yield Stack(web, proc, client)
    finally:
        proc.stop()
        fake_sentry.webhooks.url, fake_jira.webhooks.url = hooks
        web.stop()
        broker.stop()


@pytest.fixture
def stack(clean: None, own: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira) -> Iterator[Stack]:
    own.counters.delete(metrics.COUNTERS_KEY)
    yield own
    fake_jira.hide_emails = False
    fake_sentry.enhanced_privacy = False


def linked_ticket(fake_jira: FakeJira, engine: Engine, sentry_id: str) -> dict[str, Any]:
    link = wait_for(
        lambda: (found := link_of(engine, sentry_id)) is not None and found.state == LinkState.ACTIVE
        and found.remote_link_done and found.sentry_link_done and found,
        60, what=f"a linked ticket for {sentry_id}",
    )
    ticket = fake_jira.issue(link.jira_key)
    assert ticket is not None
    return ticket


def settled(engine: Engine) -> None:
    wait_for(lambda: all(d.state not in DeliveryState.UNFINISHED for d in deliveries(engine)), 60,
             what="every delivery to finish")


def scraped(stack: Stack, name: str) -> dict[str, float]:
    """`/metrics` of this stack's web app: the samples of `name`, by their `problem` label."""
    body = httpx.get(f"{stack.web.url}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].split("} ")
            found[dict(pair.split("=", 1) for pair in labels.split(","))["problem"].strip('"')] = float(value)
    return found


@pytest.mark.parametrize(
    ("project", "problem", "why"),
    [
        ("payer-api", "not_assignable", "payer@example.com (left unassigned: not assignable in PAY"),
        ("ghost-api", "unknown", "nobody@example.com (left unassigned: no Jira user with that e-mail"),
        ("twin-api", "ambiguous", "twin@example.com (left unassigned: ambiguous: 2 Jira users match exactly"),
    ],
)
def test_an_assignee_jira_would_not_accept_leaves_the_ticket_unassigned_and_says_why(
    stack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine,
    project: str, problem: str, why: str,
) -> None:
    fake_jira.make_unassignable("acc-payer", "PAY")
    issues = [fake_sentry.file_issue(project=project, title=f"{problem} {n}") for n in range(2)]

    tickets = [linked_ticket(fake_jira, engine, issue["id"]) for issue in issues]

    assert [t["assignee"] for t in tickets] == [None, None]
    # Looked up once for both tickets, in the project's assignable users: never refused by a create.
    assert fake_jira.calls.count("GET", r"/user/assignable/search$") == 1
    assert fake_jira.calls.count("POST", r"^/rest/api/2/issue/?$") == 2
    created = [a.detail for a in audit_of(engine) if a.action == "created"]
    assert len(created) == 2 and all(why in detail for detail in created), created
    assert scraped(stack, metrics.Metric.TICKETS_UNASSIGNED) == {problem: 2.0}
    assert scraped(stack, metrics.Metric.ASSIGNEE_UNRESOLVED) == {problem: 1.0}
    settled(engine)
    assert letters(engine) == []


def test_hidden_emails_and_people_assign_by_account_both_ways(
    stack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.hide_emails = True  # no e-mail on any user Jira shows
    fake_sentry.enhanced_privacy = True  # no e-mail in Sentry's assignee webhooks
    issue = fake_sentry.file_issue(project="bob-api", title="KeyError: 'bob'")

    # Create: the team's assignee is Bob; e-mail search cannot confirm him, [people] names him.
    ticket = linked_ticket(fake_jira, engine, issue["id"])
    assert ticket["assignee"] == "acc-bob"
    settled(engine)

    # Jira -> Sentry: a person assigns Pat (in no [people] entry; Jira hides the address): Sentry
    # stays; then Bob: the Sentry issue follows, by the Sentry id [people] gives.
    fake_jira.person_assign(ticket["key"], fake_jira.person_account_id)
    settled(engine)
    assert fake_sentry.issue(issue["id"])["assignedTo"] is None
    fake_jira.person_assign(ticket["key"], "acc-bob")
    wait_for(lambda: (fake_sentry.issue(issue["id"])["assignedTo"] or {}).get("id") == BOB_SENTRY_ID, 30,
             what="the Sentry issue to follow Bob, by his Sentry id")
    settled(engine)

    # Sentry -> Jira: a person assigns Carol (no e-mail in the webhook, no [people] entry): Jira keeps
    # Bob. Unassigned in Jira, then Bob in Sentry: the ticket follows, by his Jira account.
    fake_sentry.person_assign(issue["id"], "user:carol@example.com")
    settled(engine)
    assert fake_jira.issue(ticket["key"])["assignee"] == "acc-bob"  # type: ignore[index]
    fake_jira.person_assign(ticket["key"], None)
    settled(engine)
    fake_sentry.person_assign(issue["id"], f"user:{BOB_SENTRY_ID}")
    wait_for(lambda: fake_jira.issue(ticket["key"])["assignee"] == "acc-bob", 30,  # type: ignore[index]
             what="the ticket to follow Bob, by his Jira account")
    settled(engine)

    assigned = [(a.side, a.action) for a in audit_of(engine, issue["id"]) if "assign" in a.action]
    assert ("sentry", "assigned") in assigned and ("jira", "assigned") in assigned, assigned
    assert letters(engine) == []


def test_without_people_a_hidden_email_leaves_the_ticket_unassigned_naming_people(
    stack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.hide_emails = True
    fake_jira.add_user("acc-payer", "Pay Er", "payer@example.com")  # assignable, address hidden

    issue = fake_sentry.file_issue(project="payer-api", title="hidden payer")
    ticket = linked_ticket(fake_jira, engine, issue["id"])

    assert ticket["assignee"] is None
    created = [a.detail for a in audit_of(engine, issue["id"]) if a.action == "created"]
    assert "Jira hides the e-mail address" in created[0] and "[people]" in created[0], created
    assert scraped(stack, metrics.Metric.TICKETS_UNASSIGNED) == {"email_hidden": 1.0}


def test_a_people_account_that_is_not_assignable_leaves_the_ticket_unassigned(
    stack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.make_unassignable("acc-bob", "WEB")

    issue = fake_sentry.file_issue(project="bob-api", title="bob may not have it")
    ticket = linked_ticket(fake_jira, engine, issue["id"])

    assert ticket["assignee"] is None
    created = [a.detail for a in audit_of(engine, issue["id"]) if a.action == "created"]
    assert "bob@example.com (left unassigned: not assignable in WEB" in created[0], created
    assert fake_jira.calls.count("POST", r"^/rest/api/2/issue/?$") == 1


def test_labels_take_the_issues_tag_values_without_their_spaces(
    stack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="labelled-api", title="labelled",
                                   tags={"environment": ["staging eu", "prod"]})

    ticket = linked_ticket(fake_jira, engine, issue["id"])

    # Each value a label, its spaces a dash; no release tag: no release- label. Jira took them all.
    assert set(ticket["labels"]) == {"sentry", "env-staging-eu", "env-prod", "labelled-api",
                                     f"sentry-{issue['id']}"}, ticket["labels"]
    assert fake_sentry.calls.count("GET", r"/tags/") == 1
