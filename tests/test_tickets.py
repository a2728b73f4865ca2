"""Sentry → Jira through the real stack: fake Sentry sends the webhook, the real web app stores it,
a real worker process creates or links the ticket in the fake Jira."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.core.render import escape_wiki
from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.store.schema import AccountCache, AuditEntry, DeadLetter, Delivery, DeliveryState, LinkState
from tests.conftest import FIXTURES, INSTALLATION_UUID, ORG, post_sentry
from tests.harness import BOTH_DEPLOYMENTS, Background, SyncerProcess, link_of, start_worker, wait_for

JIRA_CREATE = r"^/rest/api/2/issue/?$"


@pytest.fixture(scope="session", autouse=True)
def jira_people(fake_jira: FakeJira) -> None:
    fake_jira.add_user("acc-driver", "Dee Driver", "driver@example.com")
    fake_jira.add_user("acc-alice-smith", "Alice Smith", "alice.smith@example.com")
    fake_jira.add_user("acc-alice", "Alice", "alice@example.com")


def tickets_for(fake_jira: FakeJira, sentry_id: str) -> list[dict[str, Any]]:
    return [t for t in fake_jira.issues() if f"sentry-{sentry_id}" in t["labels"]]


def wait_ticket(fake_jira: FakeJira, engine: Engine, sentry_id: str, timeout: float = 30) -> dict[str, Any]:
    wait_for(
        lambda: (
            (link := link_of(engine, sentry_id)) is not None
            and link.state == LinkState.ACTIVE
            and link.remote_link_done
            and link.sentry_link_done
        ),
        timeout,
        what=f"a linked ticket for {sentry_id}",
    )
    found = tickets_for(fake_jira, sentry_id)
    assert len(found) == 1, found
    return found[0]


def wait_delivery_done(engine: Engine, timeout: float = 30, source: str = "sentry") -> list[Delivery]:
    """Every delivery from `source` processed; returns them."""

    def finished() -> list[Delivery] | None:
        with Session(engine) as session:
            rows = list(session.exec(select(Delivery).where(Delivery.source == source)).all())
        return rows if rows and all(r.state not in DeliveryState.UNFINISHED for r in rows) else None

    return wait_for(finished, timeout, what="every delivery to be processed")  # type: ignore[no-any-return]


@pytest.fixture(params=["simple", "strict"])
def workflow(request: pytest.FixtureRequest, fake_jira: FakeJira) -> str:
    """PAY (where billing issues go) in the workflow under test: a ticket is created the same way in a
    company-managed workflow as in the simple one. The fake's reset() puts the simple one back."""
    if request.param == "strict":
        fake_jira.set_workflow("PAY", "strict", rejected="Won't Do")
    return str(request.param)


@BOTH_DEPLOYMENTS
def test_created_webhook_becomes_one_routed_ticket_linked_both_ways(
    stack: dict[str, Any], workflow: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="billing-api", title="ZeroDivisionError: division by zero")
    ticket = wait_ticket(fake_jira, engine, issue["id"])
    assert ticket["project"] == "PAY"
    assert ticket["status"] == "To Do"  # the workflow's initial status, in either workflow
    assert ticket["components"] == ["Billing"]
    assert ticket["assignee"] == "acc-driver"
    assert set(ticket["labels"]) >= {"sentry", f"sentry-{issue['id']}"}
    assert ticket["summary"] == "ZeroDivisionError: division by zero"
    assert escape_wiki(issue["shortId"]) in ticket["description"]
    links = fake_jira.remote_links(ticket["key"])
    assert [link["globalId"] for link in links] == [f"sentry-issue:{ORG}:{issue['id']}"]
    external = fake_sentry.external_issues(issue["id"])
    assert (len(external) == 1 and external[0]["displayName"].endswith(ticket["key"])) or external[0].get(
        "identifier"
    ) == ticket["key"]
    link = link_of(engine, issue["id"])
    assert link is not None and link.jira_issue_id == ticket["id"] and link.jira_key == ticket["key"]
    assert (link.team, link.route) == ("payments", "billing")
    with Session(engine) as session:
        actions = [a.action for a in session.exec(select(AuditEntry)).all()]
    assert "created" in actions


@BOTH_DEPLOYMENTS
def test_steady_state_costs_three_jira_calls_and_one_sentry_call(
    stack: dict[str, Any], workflow: str, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    warm = fake_sentry.file_issue(project="billing-api", title="first: resolves the assignee")
    wait_ticket(fake_jira, engine, warm["id"])
    fake_jira.webhooks.enabled = False  # the ticket's own webhooks are not part of this count
    wait_delivery_done(engine)
    fake_jira.calls.reset()
    fake_sentry.calls.reset()
    issue = fake_sentry.file_issue(project="billing-api", title="second: steady state")
    wait_ticket(fake_jira, engine, issue["id"])
    jira_calls = [(c.method, c.path) for c in fake_jira.calls.calls()]
    sentry_calls = [(c.method, c.path) for c in fake_sentry.calls.calls()]
    assert len(jira_calls) <= 3, jira_calls
    assert len(sentry_calls) <= 1, sentry_calls


def test_noise_is_ignored_with_the_reason(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_sentry.file_issue(project="worker-jobs", title="Retrying job", level="info")
    rows = wait_delivery_done(engine)
    assert [r.state for r in rows] == [DeliveryState.IGNORED]
    assert "noise" in rows[0].outcome
    assert fake_jira.issues() == []
    assert fake_sentry.calls.count(path=r"/tags/") == 0


def test_tags_fetched_only_when_a_route_needs_them(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_sentry.file_issue(project="billing-api", title="no tags needed: billing matches first")
    fake_sentry.file_issue(project="api-gateway", title="NotFound", tags={"http.status_code": ["404"]})
    rows = wait_delivery_done(engine)
    assert sorted(r.state for r in rows) == [DeliveryState.DONE, DeliveryState.IGNORED]
    assert fake_sentry.calls.count("GET", r"/tags/") == 1
    assert any("client-errors" in r.outcome for r in rows)


def test_assignee_prefix_match_is_never_taken(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    # team web's assignee is alice@example.com; Cloud's search also returns alice.smith@example.com.
    issue = fake_sentry.file_issue(project="web-app", platform="javascript", title="TypeError in checkout")
    ticket = wait_ticket(fake_jira, engine, issue["id"])
    assert ticket["assignee"] == "acc-alice"
    # nobody@example.com has no account: the ticket is filed unassigned, and the reason recorded.
    ghost = fake_sentry.file_issue(project="ghost-service", title="KeyError")
    ticket = wait_ticket(fake_jira, engine, ghost["id"])
    assert ticket["assignee"] is None
    with Session(engine) as session:
        details = [a.detail for a in session.exec(select(AuditEntry).where(AuditEntry.action == "created"))]
    assert any("left unassigned" in d and "nobody@example.com" in d for d in details)


@pytest.mark.parametrize("refusal", ["deactivated", "not assignable"])
def test_an_assignee_jira_refuses_leaves_one_unassigned_ticket_and_no_dead_letter(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, refusal: str
) -> None:
    warm = fake_sentry.file_issue(project="billing-api", title="first: the account is cached")
    assert wait_ticket(fake_jira, engine, warm["id"])["assignee"] == "acc-driver"
    with Session(engine) as session:
        assert session.get(AccountCache, ("PAY", "driver@example.com")) is not None
    if refusal == "deactivated":  # since the cache learnt the account: it keeps it for a week
        fake_jira.deactivate_user("acc-driver")
    else:
        fake_jira.make_unassignable("acc-driver", "PAY")
    fake_jira.calls.reset()

    issue = fake_sentry.file_issue(project="billing-api", title="second: the assignee is refused")
    ticket = wait_ticket(fake_jira, engine, issue["id"])

    assert ticket["assignee"] is None
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert fake_jira.calls.count("POST", JIRA_CREATE) == 2  # refused, then made unassigned at once
    rows = wait_delivery_done(engine)
    assert all(r.state == DeliveryState.DONE for r in rows if r.resource == "issue"), rows
    with Session(engine) as session:
        assert session.exec(select(DeadLetter)).all() == []
        assert session.get(AccountCache, ("PAY", "driver@example.com")) is None  # looked up afresh next time
        details = [a.detail for a in session.exec(select(AuditEntry).where(AuditEntry.action == "created"))]
    assert any(
        "assignee driver@example.com refused by Jira: User 'acc-driver' cannot be assigned issues.; "
        "left unassigned" in d
        for d in details
    ), details


def test_markup_in_a_title_cannot_reach_jira(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    hostile = "Boom [~accountid:5b10a2844c20165700ede21g] {code}x{code} [click|http://evil.example] *bold*"
    issue = fake_sentry.file_issue(project="billing-api", title=hostile, culprit="h1. {noformat}")
    ticket = wait_ticket(fake_jira, engine, issue["id"])
    description = ticket["description"]
    for raw in ("[~accountid:", "{code}", "[click|", "{noformat}", "*bold*"):
        assert raw not in description, raw
    assert ticket["summary"] == hostile  # the summary is plain text in Jira: kept as written


@BOTH_DEPLOYMENTS
def test_an_existing_ticket_with_the_label_is_linked_not_duplicated(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_sentry.webhooks.enabled = False
    issue = fake_sentry.file_issue(project="billing-api", title="filed by hand first")
    fake_sentry.webhooks.enabled = True
    key = fake_jira.person_create("OPS", "Made by a person", labels=[f"sentry-{issue['id']}"])
    created_before = fake_jira.calls.count("POST", JIRA_CREATE)
    answer = post_sentry(
        stack["web"].url,
        {
            "action": "created",
            "installation": {"uuid": INSTALLATION_UUID},
            "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
            "data": {"issue": fake_sentry.issue(issue["id"])},
        },
    )
    assert answer.status_code == 202
    wait_ticket(fake_jira, engine, issue["id"])
    link = link_of(engine, issue["id"])
    assert link is not None and link.jira_key == (key if isinstance(key, str) else key["key"])
    assert fake_jira.calls.count("POST", JIRA_CREATE) == created_before


@BOTH_DEPLOYMENTS
def test_the_same_delivery_five_times_makes_one_ticket(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_sentry.webhooks.enabled = False
    issue = fake_sentry.file_issue(project="billing-api", title="delivered five times")
    payload = {
        "action": "created",
        "installation": {"uuid": INSTALLATION_UUID},
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
        "data": {"issue": fake_sentry.issue(issue["id"])},
    }
    senders = [Background(lambda: post_sentry(stack["web"].url, payload)) for _ in range(5)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert [s.result.status_code for s in senders] == [202] * 5
    wait_ticket(fake_jira, engine, issue["id"])
    wait_delivery_done(engine)
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert fake_jira.calls.count("POST", JIRA_CREATE) == 1


@pytest.fixture(scope="module")
def second_worker(
    worker_process: SyncerProcess, process_env: dict[str, str], workdir: Path
) -> Iterator[SyncerProcess]:
    proc = start_worker("worker2", process_env, workdir)
    yield proc
    proc.stop()


def test_twenty_concurrent_deliveries_across_two_workers_make_one_ticket(
    stack: dict[str, Any],
    second_worker: SyncerProcess,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    engine: Engine,
) -> None:
    fake_sentry.webhooks.enabled = False
    issue = fake_sentry.file_issue(project="billing-api", title="raced by twenty deliveries")
    fake_jira.latency = 0.05  # widen the race window
    base = fake_sentry.issue(issue["id"])
    payloads = []
    for n in range(20):
        action = ("created", "unresolved", "assigned")[n % 3]
        body = {**base, "count": str(100 + n)}  # distinct content: distinct deliveries
        payloads.append(
            {
                "action": action,
                "installation": {"uuid": INSTALLATION_UUID},
                "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
                "data": {"issue": body},
            }
        )
    senders = [Background(lambda p=p: post_sentry(stack["web"].url, p)) for p in payloads]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert {s.result.status_code for s in senders} == {202}
    with Session(engine) as session:
        assert len(session.exec(select(Delivery).where(Delivery.source == "sentry")).all()) == 20
    wait_ticket(fake_jira, engine, issue["id"], timeout=60)
    rows = wait_delivery_done(engine, timeout=90)
    fake_jira.latency = 0.0
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert fake_jira.calls.count("POST", JIRA_CREATE) == 1
    assert all(r.state in (DeliveryState.DONE, DeliveryState.IGNORED) for r in rows)
    # Both worker processes took part: each logged a delivery it handled (finished, or found held by
    # the other worker and sent back to the queue).
    handled = re.compile(r"delivery \d+( done| ignored|): ")
    assert handled.search(stack["worker"].output()) and handled.search(second_worker.output())


def test_one_account_look_up_per_email_however_many_tickets_need_it_at_once(
    stack: dict[str, Any],
    second_worker: SyncerProcess,
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    engine: Engine,
) -> None:
    """Eight new issues for one team at once, an empty account cache, two worker processes of eight
    threads: the threads of a process that miss the cache together make one assignable-users search
    for the team's e-mail, so at most one per process, not one per ticket."""
    fake_jira.latency = 0.05  # the look-up takes a while: the others arrive meanwhile
    try:
        issues = [fake_sentry.file_issue(project="billing-api", title=f"burst {n}") for n in range(8)]
        tickets = [wait_ticket(fake_jira, engine, issue["id"], timeout=60) for issue in issues]
    finally:
        fake_jira.latency = 0.0
    assert {t["assignee"] for t in tickets} == {"acc-driver"}
    assert 1 <= fake_jira.calls.count("GET", r"/user/assignable/search$") <= 2


@BOTH_DEPLOYMENTS
def test_ambiguous_create_still_makes_one_ticket(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    # The fake creates the ticket, then answers 500: we cannot know it worked. Search lags too.
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=500, after=True, times=1))
    fake_jira.search_lag = 1.0
    try:
        issue = fake_sentry.file_issue(project="billing-api", title="created, then 500")
        wait_ticket(fake_jira, engine, issue["id"], timeout=60)
    finally:
        fake_jira.search_lag = 0.0
    assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert fake_jira.calls.count("POST", JIRA_CREATE) == 1


def test_429_with_retry_after_on_create_creates_once_after_the_delay(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=429, headers={"Retry-After": "3"}, times=1))
    issue = fake_sentry.file_issue(project="billing-api", title="rate limited")
    wait_ticket(fake_jira, engine, issue["id"], timeout=60)
    creates = fake_jira.calls.calls("POST", JIRA_CREATE)
    assert len(creates) == 2  # the refused one and the one that worked
    assert creates[1].at - creates[0].at >= 3.0
    assert len(tickets_for(fake_jira, issue["id"])) == 1


def test_one_message_for_several_deliveries_handles_each_and_retries_one_alone(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    """Under load the web tier publishes several deliveries in one `process_deliveries` message.
    Each is handled in turn; one that must wait (Jira refuses its create with a 429) goes back to
    the queue as a message of its own, and the others do not wait for it."""
    from syncer.fakes.base import compact_json
    from syncer.store import deliveries
    from syncer.worker import app as worker

    fake_sentry.webhooks.enabled = False
    issues = [fake_sentry.file_issue(project="billing-api", title=f"batched {n}") for n in range(3)]
    fake_sentry.webhooks.enabled = True
    created = fake_sentry.emitted()[-3:]
    stored = deliveries.store_many(engine, [
        deliveries.Incoming(source="sentry", key=f"batched-{n}", resource=resource, action=payload["action"],
                       payload=compact_json(payload))
        for n, (resource, payload) in enumerate(created)
    ])
    # The first create call the worker makes (the first delivery's) is refused for 6 seconds: ample
    # time for the other two tickets, even on a busy machine.
    fake_jira.faults.append(Fault("POST", JIRA_CREATE, status=429, headers={"Retry-After": "6"}, times=1))
    worker.publish_batch([s.delivery_id for s in stored])
    for issue in issues:
        wait_ticket(fake_jira, engine, issue["id"], timeout=60)
    creates = fake_jira.calls.calls("POST", JIRA_CREATE)
    assert len(creates) == 4  # three tickets and the refused attempt
    assert creates[3].at - creates[0].at >= 6.0  # the refused one came back after Retry-After
    # The refused one went back alone; the two others were each handled once, in the first message,
    # not held back behind it (which of them Jira saw first depends on the machine's load, not on us).
    rows = wait_delivery_done(engine)
    assert {r.state for r in rows} == {DeliveryState.DONE}
    assert [r.attempts for r in sorted(rows, key=lambda r: r.id or 0)] == [2, 1, 1]


def run_cli(process_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", *args],
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_links_link_and_unlink_by_hand(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    engine: Engine,
    process_env: dict[str, str],
) -> None:
    fake_sentry.webhooks.enabled = False
    issue = fake_sentry.file_issue(project="billing-api", title="linked by a person")
    key = fake_jira.person_create("OPS", "An existing ticket")
    key = key if isinstance(key, str) else key["key"]
    done = run_cli(process_env, "links", "link", issue["id"], key)
    assert done.returncode == 0, done.stderr
    link = link_of(engine, issue["id"])
    assert link is not None and link.jira_key == key and link.state == LinkState.ACTIVE
    assert len(fake_jira.remote_links(key)) == 1
    again = run_cli(process_env, "links", "link", issue["id"], key)
    assert again.returncode == 1 and "already linked" in again.stderr
    shown = run_cli(process_env, "links", "show", issue["id"])
    assert key in shown.stdout and "linked_by_hand" in shown.stdout
    assert run_cli(process_env, "links", "unlink", issue["id"]).returncode == 0
    assert link_of(engine, issue["id"]) is None
    missing = run_cli(process_env, "links", "link", issue["id"], "OPS-99999")
    assert missing.returncode == 1 and "no ticket" in missing.stderr


def test_route_explain_names_the_failing_condition(process_env: dict[str, str]) -> None:
    done = run_cli(process_env, "route", "explain", str(FIXTURES / "sentry" / "issue_created_warning.json"))
    assert done.returncode == 0, done.stderr
    assert "noise" in done.stdout and "level" in done.stdout


def test_event_alert_reads_the_issue_and_files_it(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_sentry.webhooks.enabled = False
    issue = fake_sentry.file_issue(project="billing-api", title="alert rule fired")
    fake_sentry.webhooks.enabled = True
    fake_sentry.trigger_alert(issue["id"])
    wait_ticket(fake_jira, engine, issue["id"])
