"""Lanes (`syncer.lanes`): status changes travel in a queue of their own and keep a share of the
rate limit (`tests/test_ratelimit_share.py`), so a storm of new issues does not hold them up.

Real processes on the fault stack of `tests/test_faults.py` (its own broker, web app and beat), so the
broker's queues can be read as they are, before a worker takes anything from them.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy.engine import Engine

from syncer import lanes
from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.lanes import Lane
from syncer.store.schema import Delivery
from syncer.worker import app as worker
from tests import test_faults
from tests.conftest import load_fixture
from tests.harness import wait_for
from tests.test_faults import (
    FaultStack,
    delivery_rows,
    letters,
    tickets_for,
    wait_all_finished,
    wait_linked,
)

faults = test_faults.faults
fstack = test_faults.fstack

STATUS_QUEUE, DEFAULT_QUEUE = lanes.QUEUES[Lane.STATUS], lanes.QUEUES[Lane.DEFAULT]
JIRA_CREATE = r"^/rest/api/2/issue/?$"
JIRA_TRANSITIONS = r"^/rest/api/2/issue/[^/]+/transitions$"


# ------------------------------------------------------------------ which lane

@pytest.mark.parametrize(("action", "lane"), [
    ("created", Lane.DEFAULT), ("resolved", Lane.STATUS), ("unresolved", Lane.STATUS),
    ("ignored", Lane.STATUS), ("archived", Lane.STATUS), ("assigned", Lane.STATUS),
])
def test_sentry_issue_actions_that_change_status_take_the_status_lane(action: str, lane: Lane) -> None:
    assert lanes.classify("sentry", "issue", action, {}) is lane
    assert lanes.of_stored("sentry", "issue", action, "{}") is lane
    assert lanes.classify("sentry", "comment", "created", {}) is Lane.DEFAULT
    assert lanes.classify("sentry", "event_alert", "triggered", {}) is Lane.DEFAULT


def test_a_jira_update_takes_the_status_lane_only_when_its_changelog_moves_the_status() -> None:
    done = load_fixture("jira/issue_updated_done.json")
    assert lanes.classify("jira", "jira:issue_updated", "issue_generic", done) is Lane.STATUS
    assert lanes.of_stored("jira", "jira:issue_updated", "issue_generic", json.dumps(done)) is Lane.STATUS
    edit = {**done, "changelog": {"items": [{"field": "summary", "fieldId": "summary"}]}}
    assert lanes.classify("jira", "jira:issue_updated", "issue_updated", edit) is Lane.DEFAULT
    assert lanes.of_stored("jira", "jira:issue_updated", "issue_updated", json.dumps(edit)) is Lane.DEFAULT
    assert lanes.classify("jira", "comment_created", "", done) is Lane.DEFAULT
    assert lanes.of_stored("jira", "jira:issue_updated", "", "not json") is Lane.DEFAULT
    assert lanes.classify("slack", "event", "reaction_added", {}) is Lane.DEFAULT


# ------------------------------------------------------------------ which queue

def queued_messages(client: redis.Redis, queue: str) -> list[tuple[str, list[int]]]:
    """(task, delivery ids) of the messages waiting in `queue`, the web's and the sweeper's alike."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        task = message["headers"]["task"]
        args = json.loads(base64.b64decode(message["body"]))[0]
        ids = args[0] if task == "syncer.process_deliveries" else args[:1]
        found.append((task, [int(i) for i in ids] if task.startswith("syncer.process_deliver") else []))
    return found


def delivery_ids(client: redis.Redis, queue: str) -> list[int]:
    return [i for task, ids in queued_messages(client, queue) for i in ids]


def rows(engine: Engine, source: str, action: str) -> list[Delivery]:
    return [r for r in delivery_rows(engine) if r.source == source and r.action == action]


def changed_fields(row: Delivery) -> set[str]:
    return {item.get("field") for item in json.loads(row.payload).get("changelog", {}).get("items", [])}


def test_each_delivery_is_published_to_its_lanes_queue_and_swept_back_into_it(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fstack.start_worker("lanes-worker")
    issue = fake_sentry.file_issue(project="billing-api", title="lanes: which queue")
    key = wait_linked(engine, issue["id"]).jira_key
    wait_all_finished(engine)
    fstack.stop_worker()  # from here on the broker keeps what it is given
    client = fstack.redis()
    client.delete(STATUS_QUEUE, DEFAULT_QUEUE)
    try:
        fresh = fake_sentry.file_issue(project="billing-api", title="lanes: a create")
        fake_sentry.person_resolve(issue["id"])
        fake_jira.person_edit(key, {"summary": "lanes: an edit"})
        fake_jira.person_transition(key, "Done")
        created = wait_for(lambda: [r.id for r in rows(engine, "sentry", "created")
                                    if json.loads(r.payload)["data"]["issue"]["id"] == fresh["id"]],
                           10, what="the create")
        [resolved] = wait_for(lambda: [r.id for r in rows(engine, "sentry", "resolved")], 10,
                              what="the resolve")
        jira = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
            [r for r in delivery_rows(engine) if r.source == "jira" and r.resource == "jira:issue_updated"]),
            10, what="both Jira updates")
        moved = [r.id for r in jira if "status" in changed_fields(r)]
        edited = [r.id for r in jira if r.id not in moved]
        assert len(moved) == len(edited) == 1
        wait_for(lambda: set(delivery_ids(client, STATUS_QUEUE)) == {resolved, *moved}, 10,
                 what="the resolve and the Jira status change in the status queue")
        wait_for(lambda: set(created + edited) <= set(delivery_ids(client, DEFAULT_QUEUE)), 10,
                 what="the create and the edit in the default queue")
        assert not {resolved, *moved} & set(delivery_ids(client, DEFAULT_QUEUE))

        # Lost from the broker (a flush, a failover): the sweeper (the beat's task, run here on this
        # stack's broker) hands each back to its own lane, status changes first.
        client.delete(STATUS_QUEUE, DEFAULT_QUEUE)
        everything = [*created, *edited, resolved, *moved]
        sent = worker.enqueue_many(engine, everything, publish=worker.publisher(fstack.settings))
        assert sent == len(everything)
        assert sorted(delivery_ids(client, STATUS_QUEUE)) == sorted([resolved, *moved])
        assert sorted(delivery_ids(client, DEFAULT_QUEUE)) == sorted(created + edited)
    finally:
        fstack.start_worker("lanes-worker")  # and the row is finished, for the next test
        wait_all_finished(engine, timeout=60)
        fstack.stop_worker()


def test_a_retried_status_change_stays_in_the_status_lane(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fstack.start_worker("lanes-worker")
    issues = [fake_sentry.file_issue(project="billing-api", title=f"lanes: retried {n}") for n in range(2)]
    keys = [wait_linked(engine, issue["id"]).jira_key for issue in issues]
    wait_all_finished(engine)
    fstack.stop_worker()
    client = fstack.redis()
    for issue in issues:
        fake_sentry.person_resolve(issue["id"])
    ids = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        [r.id for r in rows(engine, "sentry", "resolved")]), 10, what="both resolves stored")
    wait_for(lambda: set(delivery_ids(client, STATUS_QUEUE)) == set(ids), 10, what="both published")
    # As the web tier publishes under load: both in one message (process_deliveries), whose retries
    # are messages of their own (`_later`).
    client.delete(STATUS_QUEUE)
    own = worker.configure(fstack.settings, Celery("lanes-test"))
    worker.publish_batch(ids, Lane.STATUS, target=own)
    assert queued_messages(client, STATUS_QUEUE) == [("syncer.process_deliveries", ids)]
    # Jira turns the first transition away, and says when to come back: a retry with a countdown.
    fake_jira.faults.append(Fault("POST", JIRA_TRANSITIONS, status=503, times=1,
                                  headers={"Retry-After": "4"}))
    fstack.start_worker("lanes-worker")
    retry = wait_for(lambda: retried(client), 30, what="the retry's message, waiting for its countdown")
    assert retry["routing_key"] == STATUS_QUEUE
    assert retry["ids"][0] in ids
    for key in keys:
        wait_for(lambda key=key: (fake_jira.issue(key) or {}).get("status") == "Done", 60, what=f"{key} Done")
    wait_all_finished(engine)
    assert letters(engine) == []
    fstack.stop_worker()


def retried(client: redis.Redis) -> dict[str, Any] | None:
    """A `process_delivery` message with a countdown the worker holds (kombu's Redis transport keeps
    a received, unacknowledged message in its `unacked` hash: [message, exchange, routing key])."""
    for raw in client.hvals("unacked"):
        message, _exchange, routing_key = json.loads(raw)
        headers = message["headers"]
        if headers["task"] == "syncer.process_delivery" and headers.get("eta"):
            args = json.loads(base64.b64decode(message["body"]))[0]
            return {"routing_key": routing_key, "ids": args}
    return None


# ------------------------------------------------------------------ a storm

@pytest.mark.slow
def test_a_resolve_sent_during_a_backlog_of_creates_is_done_before_the_backlog_drains(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    first = fake_sentry.file_issue(project="billing-api", title="lanes: resolved mid-storm")
    # The status lane's share (the default, 0.2) of 4 calls a second: one status turn every 1.25 s.
    fstack.start_worker("lanes-storm", jira_max_rps=4, rate_limit_max_wait_seconds=2)
    key = wait_linked(engine, first["id"], timeout=60).jira_key
    storm = [fake_sentry.file_issue(project="billing-api", title=f"lanes: storm {n}") for n in range(40)]
    # The storm is under way: some of its tickets are made, most are not.
    wait_for(lambda: fake_jira.calls.count("POST", JIRA_CREATE) >= 3, 60, what="the storm's first creates")
    fake_sentry.person_resolve(first["id"])
    wait_for(lambda: (fake_jira.issue(key) or {}).get("status") == "Done", 60, what="the ticket Done")
    # Tickets, not create calls: a storm's tickets may be filed alone or in bulk (syncer.sync.filing).
    made_by_then = sum(1 for issue in storm if tickets_for(fake_jira, issue["id"]))
    assert made_by_then <= len(storm) - 10  # ten tickets or more still to come when it moved
    for issue in storm:
        wait_linked(engine, issue["id"], timeout=240)
    wait_all_finished(engine, timeout=60)
    assert letters(engine) == []
    for issue in storm:
        assert len(tickets_for(fake_jira, issue["id"])) == 1
    fstack.stop_worker()
