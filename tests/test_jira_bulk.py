"""JiraClient's bulk create and many-label search against the fake Jira over real HTTP: per-ticket
answers matched to their requests, per-ticket refusals in single-create terms, whole-call failures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncer.errors import AmbiguousError, PermanentError, TransientError
from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira, start_fake_jira
from syncer.jira.client import FieldsRefused, JiraClient

EMAIL, TOKEN = "bot@example.com", "s3cr3t-api-token"


def ticket(n: int, **more: object) -> dict[str, object]:
    return {"project": "OPS", "issuetype": "Task", "summary": f"error {n}", "labels": [f"sentry-{n}"], **more}


@pytest.fixture(scope="module")
def module_fake() -> Iterator[FakeJira]:
    fake = start_fake_jira(email=EMAIL, token=TOKEN)
    yield fake
    fake.stop()


@pytest.fixture
def fake(module_fake: FakeJira) -> FakeJira:
    module_fake.reset()
    return module_fake


@pytest.fixture(scope="module")
def client(module_fake: FakeJira) -> JiraClient:
    return JiraClient(module_fake.url, email=EMAIL, token=TOKEN, timeout=(2.0, 2.0))


def test_many_tickets_in_one_call(fake: FakeJira, client: JiraClient) -> None:
    results = client.create_issues([ticket(n) for n in range(5)])
    assert fake.calls.count("POST", r"/issue/bulk$") == 1
    assert fake.calls.count("POST", r"/issue$") == 0
    for n, result in enumerate(results):
        assert isinstance(result, tuple)
        assert fake.issue(result[1])["labels"] == [f"sentry-{n}"]  # type: ignore[index]


def test_refusals_come_back_per_ticket_with_the_others_created(fake: FakeJira, client: JiraClient) -> None:
    fake.add_user("acc-gone", "Gone", "gone@example.com")
    fake.deactivate_user("acc-gone")
    requests = [ticket(0), ticket(1, assignee={"accountId": "acc-gone"}), ticket(2),
                ticket(3, components=[{"name": "Nope"}]), ticket(4)]
    results = client.create_issues(requests)
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["tuple", "FieldsRefused", "tuple", "FieldsRefused", "tuple"]
    refused_assignee, refused_component = results[1], results[3]
    assert isinstance(refused_assignee, FieldsRefused) and "assignee" in refused_assignee.fields
    assert isinstance(refused_component, FieldsRefused) and "components" in refused_component.fields
    # Each created ticket is the one its request asked for, though the refused ones left gaps.
    for n in (0, 2, 4):
        created = results[n]
        assert isinstance(created, tuple)
        assert fake.issue(created[1])["summary"] == f"error {n}"  # type: ignore[index]


def test_none_created_is_still_answered_per_ticket(fake: FakeJira, client: JiraClient) -> None:
    results = client.create_issues([ticket(0, project="NOPE"), ticket(1, project="NOPE")])
    assert all(isinstance(r, PermanentError) and r.status == 400 for r in results)
    assert not isinstance(results[0], AmbiguousError)


def test_a_bulk_refused_as_a_whole_raises(fake: FakeJira, client: JiraClient) -> None:
    fake.faults.append(Fault("POST", r"/issue/bulk$", status=429, headers={"Retry-After": "3"}))
    with pytest.raises(TransientError) as throttled:
        client.create_issues([ticket(0)])
    assert not isinstance(throttled.value, AmbiguousError)
    fake.faults.append(Fault("POST", r"/issue/bulk$", status=403))
    with pytest.raises(PermanentError):
        client.create_issues([ticket(0)])


def test_a_failed_bulk_that_created_is_ambiguous_and_findable(fake: FakeJira, client: JiraClient) -> None:
    fake.faults.append(Fault("POST", r"/issue/bulk$", status=502, after=True))
    with pytest.raises(AmbiguousError):
        client.create_issues([ticket(n) for n in range(3)])
    found = client.find_by_labels([f"sentry-{n}" for n in range(4)])
    assert {label: len(tickets) for label, tickets in found.items()} == {
        "sentry-0": 1, "sentry-1": 1, "sentry-2": 1, "sentry-3": 0}


def test_a_timed_out_bulk_is_ambiguous(fake: FakeJira) -> None:
    jira = JiraClient(fake.url, email=EMAIL, token=TOKEN, timeout=(1.0, 0.3))
    jira.bot_account_id()  # connect first: the fault is for the call under test
    fake.faults.append(Fault("POST", r"/issue/bulk$", delay=1.0, after=True, status=201))
    with pytest.raises(AmbiguousError):
        jira.create_issues([ticket(0)])


def test_many_labels_cost_one_search(fake: FakeJira, client: JiraClient) -> None:
    client.create_issues([ticket(n) for n in range(3)])
    searches = fake.calls.count("POST", r"/search")
    found = client.find_by_labels([f"sentry-{n}" for n in range(40)])
    assert fake.calls.count("POST", r"/search") == searches + 1
    assert [len(found[f"sentry-{n}"]) for n in range(5)] == [1, 1, 1, 0, 0]
