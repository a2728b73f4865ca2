"""Release storms under Jira's rate limit (`syncer.sync.gathering`, `syncer.sync.filing`): new issues
that arrive while the budget is booked ahead are gathered and filed in bulk creates, each item
exactly once, its refusals its own.

Real processes on the fault stack of `tests/test_faults.py` (its own broker, web app and beat). To
put several chosen issues in one bulk create, a test holds the filer's lock while they are gathered
and lets go: the sweep starts the filer.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import Engine

from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.locks import filer_lock_key
from syncer.store.schema import DeliveryState
from syncer.sync.gathering import gathered_key
from tests import test_faults
from tests.harness import start_worker, wait_for
from tests.test_faults import (
    FaultStack,
    as_env,
    delivery_rows,
    letters,
    tickets_for,
    wait_all_finished,
    wait_linked,
)

faults = test_faults.faults
fstack = test_faults.fstack

BULK = r"^/rest/api/2/issue/bulk$"
CREATE = r"^/rest/api/2/issue/?$"
SEARCH = r"^/rest/api/2/search"
REMOTE_LINK = r"/remotelink$"


def host(fake_jira: FakeJira) -> str:
    return urlsplit(fake_jira.url).netloc


def note_of(engine: Engine, sentry_id: str) -> str:
    (row,) = [d for d in delivery_rows(engine)
              if d.source == "sentry" and d.action == "created" and f'"id":"{sentry_id}"' in d.payload]
    return row.outcome or ""


@contextlib.contextmanager
def one_bulk(fstack: FaultStack, fake_jira: FakeJira, count: int) -> Iterator[None]:
    """The issues filed inside are filed together in one bulk create: while the filer's lock is held
    (a filer at work, as in a storm) new issues are gathered, and the lock is let go once all `count`
    are; the sweep then starts a filer."""
    client = fstack.redis()
    lock, token = filer_lock_key(host(fake_jira)), secrets.token_hex(8)
    assert client.set(lock, token, px=60_000, nx=True)
    try:
        yield
        wait_for(lambda: int(client.zcard(gathered_key(host(fake_jira)))) >= count, 30,
                 what=f"{count} deliveries gathered")
    finally:
        if client.get(lock) == token.encode():
            client.delete(lock)


@pytest.fixture
def people(fake_jira: FakeJira) -> FakeJira:
    fake_jira.add_user("acc-driver", "Dee Driver", "driver@example.com")
    fake_jira.add_user("acc-alice", "Alice Web", "alice@example.com")
    return fake_jira


def warm(fake_sentry: FakeSentry, engine: Engine, **issue: Any) -> str:
    """One ticket made first: the worker has connected and cached its assignee by then."""
    first = fake_sentry.file_issue(**issue)
    return wait_linked(engine, first["id"], timeout=60).jira_key or ""


@pytest.mark.slow
def test_a_storm_is_filed_in_bulk_at_little_over_one_jira_call_per_ticket(
    fstack: FaultStack, people: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    fake_jira = people
    fstack.start_worker("bulk-storm", jira_max_rps=10)
    warm(fake_sentry, engine, project="billing-api", title="bulk: the first")
    fake_jira.calls.reset()
    storm = [fake_sentry.file_issue(project="billing-api", title=f"bulk: storm {n}") for n in range(160)]
    for issue in storm:
        wait_linked(engine, issue["id"], timeout=180)
    wait_all_finished(engine, timeout=60)
    assert letters(engine) == []
    for issue in storm:
        (ticket,) = tickets_for(fake_jira, issue["id"])
        assert len(fake_jira.remote_links(ticket["key"])) == 1
    assert fake_jira.calls.count("POST", BULK) >= 1
    per_ticket = fake_jira.calls.count() / len(storm)
    assert per_ticket <= 1.2, (per_ticket, fake_jira.calls.count("POST", CREATE),
                               fake_jira.calls.count("POST", SEARCH), fake_jira.calls.count("POST", BULK))
    assert sum("filed in a bulk create of" in note_of(engine, i["id"]) for i in storm) >= len(storm) // 2
    fstack.stop_worker()


@pytest.mark.slow
def test_refusals_in_a_bulk_are_each_items_own(
    fstack: FaultStack, people: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    fake_jira = people
    fstack.start_worker("bulk-refusals", jira_max_rps=10)
    warm(fake_sentry, engine, project="web-app", platform="javascript", title="bulk: alice cached")
    fake_jira.deactivate_user("acc-alice")  # since the cache learnt the account
    fake_jira.add_create_field("OPS", "fixVersions", required=True)  # the workflows route's project
    fake_jira.calls.reset()
    with one_bulk(fstack, fake_jira, 3):
        billing = fake_sentry.file_issue(project="billing-api", title="bulk: made")
        web = fake_sentry.file_issue(project="web-app", platform="javascript", title="bulk: assignee refused")
        ops = fake_sentry.file_issue(project="workflow-api", title="bulk: a required field unset")
    wait_linked(engine, billing["id"])
    wait_linked(engine, web["id"])
    (letter,) = wait_for(lambda: letters(engine), 30, what="the refused item's dead letter")
    assert fake_jira.calls.count("POST", BULK) == 1
    assert fake_jira.calls.count("POST", CREATE) == 1  # the refused assignee's ticket, made again unassigned
    assert letter.error.startswith("FieldsRefused:") and "fixVersions" in letter.error
    assert ops["id"] in letter.payload
    assert len(tickets_for(fake_jira, billing["id"])) == 1
    (unassigned,) = tickets_for(fake_jira, web["id"])
    assert unassigned["assignee"] is None
    assert tickets_for(fake_jira, ops["id"]) == []
    assert "filed in a bulk create of 3" in note_of(engine, billing["id"])
    assert "assignee alice@example.com refused by Jira" in note_of(engine, web["id"])
    fstack.stop_worker()


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["5xx after creating", "timeout after creating"])
def test_an_ambiguous_bulk_is_resolved_per_item_without_duplicates(
    fstack: FaultStack, people: FakeJira, fake_sentry: FakeSentry, engine: Engine, failure: str
) -> None:
    fake_jira = people
    fstack.start_worker("bulk-ambiguous", jira_max_rps=10)
    warm(fake_sentry, engine, project="billing-api", title="bulk: the first")
    if failure == "5xx after creating":
        fake_jira.faults.append(Fault("POST", BULK, status=502, after=True))
    else:  # longer than the worker's read timeout (SHORT: 3 s)
        fake_jira.faults.append(Fault("POST", BULK, status=201, after=True, delay=5.0))
    with one_bulk(fstack, fake_jira, 4):
        issues = [fake_sentry.file_issue(project="billing-api", title=f"bulk: ambiguous {n}")
                  for n in range(4)]
    for issue in issues:
        wait_linked(engine, issue["id"], timeout=90)
    wait_all_finished(engine, timeout=60)
    assert letters(engine) == []
    assert fake_jira.calls.count("POST", BULK) == 1  # the retries searched, found, and adopted
    for issue in issues:
        assert len(tickets_for(fake_jira, issue["id"])) == 1
        assert "linked existing ticket" in note_of(engine, issue["id"])
    fstack.stop_worker()


@pytest.mark.slow
def test_a_throttled_remote_link_is_finished_by_the_deliverys_next_try(
    fstack: FaultStack, people: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    fake_jira = people
    fstack.start_worker("bulk-backlinks", jira_max_rps=10)
    warm(fake_sentry, engine, project="billing-api", title="bulk: the first")
    fake_jira.faults.append(Fault("POST", REMOTE_LINK, status=429, headers={"Retry-After": "1"}))
    with one_bulk(fstack, fake_jira, 3):
        issues = [fake_sentry.file_issue(project="billing-api", title=f"bulk: links {n}") for n in range(3)]
    for issue in issues:
        link = wait_linked(engine, issue["id"], timeout=60)
        assert len(fake_jira.remote_links(link.jira_key or "")) == 1
    wait_all_finished(engine, timeout=60)
    assert letters(engine) == []
    assert fake_jira.calls.count("POST", BULK) == 1
    fstack.stop_worker()


@pytest.mark.slow
def test_two_workers_file_a_storm_once(
    fstack: FaultStack, people: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    fake_jira = people
    fstack.start_worker("bulk-one", jira_max_rps=10)
    other = start_worker("bulk-two", {**fstack.env, **as_env({"jira_max_rps": 10})}, fstack.workdir,
                         concurrency=4)
    fstack.started.append(other)
    try:
        warm(fake_sentry, engine, project="billing-api", title="bulk: the first")
        storm = [fake_sentry.file_issue(project="billing-api", title=f"bulk: two {n}") for n in range(60)]
        for issue in storm:
            wait_linked(engine, issue["id"], timeout=120)
        wait_all_finished(engine, timeout=60)
        assert letters(engine) == []
        for issue in storm:
            assert len(tickets_for(fake_jira, issue["id"])) == 1
        assert all(r.state != DeliveryState.DEAD for r in delivery_rows(engine))
    finally:
        other.stop()
        fstack.stop_worker()
