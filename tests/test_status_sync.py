"""Two-way status sync through the real stack: a person acts in the fake Jira or the fake Sentry, the
fake sends its webhook to the real web app, a real worker process applies it to the other fake, and
the other fake's webhook about that change comes back and must end there.

Every test with the stack runs twice: against the fake's simple workflow (any status to any other) and its
strict one (To Do -> In Progress -> Done or Won't Do, Reopen back to To Do), where a person takes one step
at a time and syncer walks the way, each step's echo its own.

The worker process cannot be time-travelled: tests of the new-ticket window seed the link's
timestamps in the database instead (the pure tests in test_status.py run the clock with freezegun).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import select

from syncer.errors import TransientError
from syncer.fakes.base import FakeServer, WebhookInbox, hmac_sha256_hex
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.locks import link_lock
from syncer.runtime import Runtime
from syncer.store.engine import session_scope
from syncer.store.schema import Delivery, DeliveryState, Link, LinkState, utcnow
from tests.conftest import INSTALLATION_UUID, post_sentry
from tests.conftest import JIRA_WEBHOOK_SECRET as JIRA_SECRET
from tests.harness import (
    BOTH_DEPLOYMENTS,
    audit_of,
    deliveries,
    free_port,
    letters,
    link_of,
    links_of,
    wait_for,
)

SENTRY_PUT = r"^/api/0/organizations/[^/]+/issues/\d+/?$"
JIRA_TRANSITION = r"/transitions$"
JIRA_COMMENT = r"/comment$"


# --- helpers --------------------------------------------------------------------------------------


def settle(engine: Engine, fake_sentry: FakeSentry, fake_jira: FakeJira, timeout: float = 30) -> None:
    """Wait until nothing moves: every delivery is finished and neither fake has sent or queued a
    webhook since. A fake queues the webhook of a change before it answers the call that made it, so
    a delivery that caused one shows it by the time that delivery is finished; and the web tier
    stores a delivery before it answers, so a webhook sent is a delivery in the inbox. Each wait is
    for an event (queues drained, deliveries finished), never for a quiet period."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    def finished() -> bool:
        return all(d.state not in DeliveryState.UNFINISHED for d in deliveries(engine))

    def sent() -> int:
        return len(fake_sentry.webhooks.sent) + len(fake_jira.webhooks.sent)

    def drained() -> None:
        assert fake_sentry.webhooks.drain(left()) and fake_jira.webhooks.drain(left()), "webhooks stuck"

    while True:
        before = sent()
        drained()
        wait_for(finished, left(), what="every delivery to finish")
        drained()  # what those deliveries caused, delivered (and stored) too
        if sent() == before:  # nothing was sent this round: no delivery is left to cause anything
            return
        assert time.monotonic() < deadline, "syncer did not settle"


def linked_issue(
    fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, **fields: Any
) -> tuple[str, str]:
    """A Sentry issue with its ticket, linked both ways, and everything settled: (issue id, key)."""
    fields.setdefault("project", "billing-api")
    issue = fake_sentry.file_issue(**fields)
    link = wait_for(
        lambda: (found := link_of(engine, issue["id"])) is not None and found.state == LinkState.ACTIVE
        and found.remote_link_done and found.sentry_link_done and found,
        30, what=f"a linked ticket for {issue['id']}",
    )
    settle(engine, fake_sentry, fake_jira)
    return issue["id"], link.jira_key


def sentry_status(fake_sentry: FakeSentry, issue_id: str) -> str:
    return str(fake_sentry.issue(issue_id)["status"])


def jira_status(fake_jira: FakeJira, key: str) -> str:
    ticket = fake_jira.issue(key)
    assert ticket is not None, f"{key} is gone"
    return str(ticket["status"])


def wait_sentry(fake_sentry: FakeSentry, issue_id: str, wanted: str) -> None:
    wait_for(lambda: sentry_status(fake_sentry, issue_id) == wanted, 30,
             what=f"sentry issue {issue_id} to be {wanted}")


def wait_jira(fake_jira: FakeJira, key: str, wanted: str) -> None:
    wait_for(lambda: jira_status(fake_jira, key) == wanted, 30, what=f"{key} to be {wanted}")


def reset_counts(fake_sentry: FakeSentry, fake_jira: FakeJira) -> None:
    fake_sentry.calls.reset()
    fake_jira.calls.reset()


def seed_link(engine: Engine, sentry_id: str, **fields: Any) -> None:
    with session_scope(engine) as session:
        link = session.exec(select(Link).where(Link.live_sentry_issue_id == sentry_id)).one()
        for name, value in fields.items():
            setattr(link, name, value)


# --- workflows ------------------------------------------------------------------------------------


@pytest.fixture(params=["simple", "strict"])
def stack(request: pytest.FixtureRequest, stack: dict[str, Any], fake_jira: FakeJira) -> dict[str, Any]:
    """The shared stack, with PAY (where billing issues go) in the workflow under test; the fake's
    reset() puts the simple one back."""
    if request.param == "strict":
        fake_jira.set_workflow("PAY", "strict", rejected="Won't Do")
    return {**stack, "workflow": request.param}


def person_walk(fake_jira: FakeJira, key: str, target: str) -> None:
    """A person moves the ticket to `target` in the Jira UI: one transition at a time along the
    shortest way its workflow offers (one step in the simple workflow)."""
    ticket = fake_jira.issue(key)
    assert ticket is not None, f"{key} is gone"
    offered = fake_jira.workflow_transitions(ticket["project"])
    way: dict[str, list[str]] = {ticket["status"]: []}
    queue = [ticket["status"]]
    while queue and target not in way:
        here = queue.pop(0)
        for transition in offered:
            there = transition["to"]
            leaves_here = transition["from"] is None or here in transition["from"]
            if there not in way and there != here and leaves_here:
                way[there] = [*way[here], there]
                queue.append(there)
    assert target in way, f"{ticket['project']}'s workflow has no way from {ticket['status']!r} to {target!r}"
    for status in way[target]:
        fake_jira.person_transition(key, status)


def bot_moves(fake_jira: FakeJira, key: str, since: int = 0) -> list[str]:
    """The statuses our bot moved `key` to, in order, as the fake's webhooks (from the `since`-th) told."""
    moves = []
    for _headers, body, _status in fake_jira.webhooks.sent[since:]:
        event = json.loads(body)
        user = event.get("user") or {}
        by_bot = (user.get("accountId") or user.get("name")) == fake_jira.bot_account_id  # Cloud | DC
        if event.get("issue", {}).get("key") == key and by_bot:
            items = (event.get("changelog") or {}).get("items", [])
            moves += [item["toString"] for item in items if item["field"] == "status"]
    return moves


def closing_way(stack: dict[str, Any], done: str = "Done") -> list[str]:
    """The statuses syncer's close passes through from To Do, in the workflow under test."""
    return ["In Progress", done] if stack["workflow"] == "strict" else [done]


# --- Jira -> Sentry -------------------------------------------------------------------------------


@BOTH_DEPLOYMENTS
def test_done_in_jira_resolves_the_sentry_issue_once(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    reset_counts(fake_sentry, fake_jira)

    person_walk(fake_jira, key, "Done")
    wait_sentry(fake_sentry, issue_id, "resolved")
    settle(engine, fake_sentry, fake_jira)

    # A full round trip: one change on each side (the person's, then ours), and the Sentry webhook
    # about ours ends as an echo: no second PUT, no transition back.
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 1
    assert fake_jira.calls.count("POST", JIRA_TRANSITION) == 0
    assert jira_status(fake_jira, key) == "Done"
    trail = audit_of(engine, issue_id)
    changes = [(a.side, a.action) for a in trail if a.action not in ("created", "linked")]
    assert changes == [("sentry", "resolve")]
    resolve = next(a for a in trail if a.action == "resolve")
    assert resolve.cause.startswith("delivery:")
    assert any(d.source == "sentry" and d.action == "resolved" and d.state == DeliveryState.IGNORED
               and "our own change" in d.outcome for d in deliveries(engine))
    link = link_of(engine, issue_id)
    assert link is not None
    assert (link.sentry_status, link.jira_status, link.jira_status_category) == ("resolved", "Done", "done")
    assert link.jira_changed_at is not None


@BOTH_DEPLOYMENTS
def test_wont_do_in_jira_archives_the_sentry_issue(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)

    person_walk(fake_jira, key, "Won't Do")
    wait_sentry(fake_sentry, issue_id, "ignored")
    settle(engine, fake_sentry, fake_jira)

    assert fake_sentry.issue(issue_id)["substatus"] == "archived_forever"
    assert jira_status(fake_jira, key) == "Won't Do"
    assert [a.action for a in audit_of(engine, issue_id) if a.side == "sentry" and a.action != "linked"] == [
        "archive"
    ]


@BOTH_DEPLOYMENTS
def test_reopened_in_jira_unresolves_the_sentry_issue(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    person_walk(fake_jira, key, "Done")
    wait_sentry(fake_sentry, issue_id, "resolved")
    settle(engine, fake_sentry, fake_jira)
    reset_counts(fake_sentry, fake_jira)

    person_walk(fake_jira, key, "In Progress")
    wait_sentry(fake_sentry, issue_id, "unresolved")
    settle(engine, fake_sentry, fake_jira)

    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 1
    # Sentry calls our unresolve a regression; it comes back as our own change and moves nothing.
    assert fake_jira.calls.count("POST", JIRA_TRANSITION) == 0
    assert fake_jira.calls.count("POST", JIRA_COMMENT) == 0
    assert jira_status(fake_jira, key) == "In Progress"


def test_closing_a_ticket_whose_issue_sentry_deleted_breaks_the_link_and_buries_nothing(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    [link] = links_of(engine, issue_id)
    fake_sentry.person_delete_issue(issue_id)  # no webhook for a deletion
    reset_counts(fake_sentry, fake_jira)

    person_walk(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)

    [after] = links_of(engine, issue_id)
    assert (after.state, after.live_sentry_issue_id) == (LinkState.BROKEN, None)
    # The step that found the issue gone broke the link (in the strict workflow, In Progress: the
    # step to Done then finds the link broken and ends there).
    jira_side = [(d.state, d.outcome) for d in deliveries(engine) if d.source == "jira"]
    assert any(state == DeliveryState.DONE and "link marked broken" in note for state, note in jira_side)
    assert DeliveryState.DEAD not in [state for state, _ in jira_side], jira_side
    assert letters(engine) == []
    [entry] = [a for a in audit_of(engine, issue_id) if a.action == "issue_deleted"]
    assert entry.side == "sentry" and entry.link_id == link.id
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0


def test_a_sentry_change_for_an_issue_deleted_since_breaks_the_link_and_buries_nothing(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, web: FakeServer
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    resolved = {"action": "resolved", "installation": {"uuid": INSTALLATION_UUID},
                "data": {"issue": {**fake_sentry.issue(issue_id), "status": "resolved"}}}
    fake_sentry.person_delete_issue(issue_id)

    assert post_sentry(web.url, resolved).status_code == 202  # sent just before the deletion
    settle(engine, fake_sentry, fake_jira)

    [after] = links_of(engine, issue_id)
    assert after.state == LinkState.BROKEN
    assert deliveries(engine)[-1].state == DeliveryState.DONE
    assert letters(engine) == []
    assert jira_status(fake_jira, key) == "To Do"


def test_jira_does_not_unarchive_an_archived_issue(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    fake_sentry.person_archive(issue_id, "archived_until_escalating")
    settle(engine, fake_sentry, fake_jira)
    reset_counts(fake_sentry, fake_jira)

    person_walk(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)
    person_walk(fake_jira, key, "To Do")
    settle(engine, fake_sentry, fake_jira)

    assert sentry_status(fake_sentry, issue_id) == "ignored"
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0
    assert fake_jira.calls.count("POST", JIRA_TRANSITION) == 0  # on_archive = "nothing" (the default)


def test_out_of_order_jira_updates_end_in_the_newest_state(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, web: FakeServer
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    if stack["workflow"] == "strict":  # from here each of the two changes below is one step
        person_walk(fake_jira, key, "In Progress")
        settle(engine, fake_sentry, fake_jira)
    catcher = WebhookInbox().start()
    try:
        fake_jira.webhooks.url = catcher.url
        fake_jira.person_transition(key, "Done")  # older
        time.sleep(0.01)  # Jira's timestamps are milliseconds
        fake_jira.person_transition(key, "To Do")  # newest
        older, newest = catcher.wait(2)
    finally:
        fake_jira.webhooks.url = f"{web.url}/webhooks/jira"
        catcher.stop()
    assert older.json()["changelog"]["items"][-1]["toString"] == "Done"
    reset_counts(fake_sentry, fake_jira)

    for hook in (newest, older):  # delivered the wrong way round
        headers = {k: v for k, v in hook.headers.items() if k.startswith(("x-", "content-type"))}
        answer = httpx.post(f"{web.url}/webhooks/jira", content=hook.body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        settle(engine, fake_sentry, fake_jira)

    assert sentry_status(fake_sentry, issue_id) == "unresolved"  # as "To Do", the newest, wants
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0
    outcomes = [d.outcome for d in deliveries(engine) if d.source == "jira"][-2:]
    assert outcomes[1].startswith("stale:"), outcomes
    link = link_of(engine, issue_id)
    assert link is not None
    assert (link.jira_status, link.jira_status_category) == ("To Do", "new")


@BOTH_DEPLOYMENTS
def test_a_deleted_ticket_breaks_its_link_and_the_issue_may_get_a_new_one(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)

    fake_jira.person_delete(key)
    wait_for(lambda: link_of(engine, issue_id) is None, 30, what="the link to break")

    (old,) = links_of(engine, issue_id)
    assert old.state == LinkState.BROKEN
    assert old.live_sentry_issue_id is None
    assert old.jira_key == key  # kept for audit
    assert "ticket_deleted" in [a.action for a in audit_of(engine, issue_id)]

    fake_sentry.regress(issue_id)  # a later Sentry event opens a new ticket
    wait_for(lambda: (link := link_of(engine, issue_id)) is not None and link.state == LinkState.ACTIVE,
             30, what="a new ticket")
    new = link_of(engine, issue_id)
    assert new is not None
    assert new.jira_key != key


@pytest.mark.parametrize("closed_long_ago", [False, True])
def test_a_ticket_hidden_from_the_bot_is_unreachable_not_deleted(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, closed_long_ago: bool
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    person_walk(fake_jira, key, "Done")
    wait_sentry(fake_sentry, issue_id, "resolved")
    settle(engine, fake_sentry, fake_jira)
    if closed_long_ago:  # a visible ticket would get a successor for this regression
        seed_link(engine, issue_id, jira_changed_at=utcnow() - timedelta(days=40))
    fake_jira.hide_from_bot(key)  # an issue security level the bot is not in: 404, and no deletion

    fake_sentry.regress(issue_id)
    settle(engine, fake_sentry, fake_jira)

    assert [t["key"] for t in fake_jira.issues() if f"sentry-{issue_id}" in t["labels"]] == [key]
    link = link_of(engine, issue_id)
    assert link is not None and link.state == LinkState.ACTIVE and link.jira_key == key
    assert link.unreachable_since is not None
    last = [d for d in deliveries(engine) if d.source == "sentry"][-1]
    assert last.state == DeliveryState.IGNORED and last.outcome.startswith("ticket unreachable"), last.outcome
    assert letters(engine) == []
    assert [a.action for a in audit_of(engine, issue_id)].count("ticket_unreachable") == 1

    fake_jira.show_to_bot(key)  # access granted back: the next event that reads it clears the flag
    person_walk(fake_jira, key, "To Do")
    wait_for(lambda: (found := link_of(engine, issue_id)) is not None and found.unreachable_since is None,
             30, what="the unreachable flag to clear")
    settle(engine, fake_sentry, fake_jira)
    assert "ticket_reachable" in [a.action for a in audit_of(engine, issue_id)]
    assert [t["key"] for t in fake_jira.issues() if f"sentry-{issue_id}" in t["labels"]] == [key]
    assert links_of(engine, issue_id)[-1].state == LinkState.ACTIVE


@BOTH_DEPLOYMENTS
def test_a_ticket_moved_to_another_project_keeps_its_link(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)

    new_key = fake_jira.person_move(key, "OPS")
    wait_for(lambda: (link := link_of(engine, issue_id)) is not None and link.jira_key == new_key, 30,
             what="the link to follow the move")
    person_walk(fake_jira, new_key, "Done")
    wait_sentry(fake_sentry, issue_id, "resolved")

    link = link_of(engine, issue_id)
    assert link is not None
    assert link.state == LinkState.ACTIVE
    assert "moved" in [a.action for a in audit_of(engine, issue_id)]


def test_an_echo_we_do_not_recognise_is_still_a_no_op(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, web: FakeServer
) -> None:
    """Echo recognition is the first guard; the second is that no handler writes to a side that is
    in the wanted state already. Replay both sides' echoes as if a person had made the change."""
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    person_walk(fake_jira, key, "Done")
    wait_sentry(fake_sentry, issue_id, "resolved")
    settle(engine, fake_sentry, fake_jira)
    reset_counts(fake_sentry, fake_jira)

    sentry_echo = {"action": "resolved", "installation": {"uuid": INSTALLATION_UUID},
                   "actor": {"type": "user", "id": 1, "name": "Alice Example"},
                   "data": {"resolution_type": "now", "issue": fake_sentry.issue(issue_id)}}
    assert post_sentry(web.url, sentry_echo).status_code == 202
    closed = {"field": "status", "fieldtype": "jira", "from": "10000", "fromString": "To Do", "to": "10001",
              "toString": "Done"}
    jira_echo = {"timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_updated",
                 "issue_event_type_name": "issue_generic", "user": {"accountId": fake_jira.person_account_id},
                 "issue": fake_jira.issue_json(key), "changelog": {"id": "1", "items": [closed]}}
    body = json.dumps(jira_echo).encode()
    signed = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "replayed-echo",
              "X-Hub-Signature": f"sha256={hmac_sha256_hex(JIRA_SECRET, body)}"}
    assert httpx.post(f"{web.url}/webhooks/jira", content=body, headers=signed, timeout=10).status_code == 202
    settle(engine, fake_sentry, fake_jira)

    assert fake_jira.calls.writes() == 0
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0
    replayed = deliveries(engine)[-2:]
    assert all(d.state == DeliveryState.IGNORED for d in replayed), [(d.state, d.outcome) for d in replayed]
    assert any("closed already" in d.outcome for d in replayed)
    assert any("resolved already" in d.outcome for d in replayed)


# --- Sentry -> Jira -------------------------------------------------------------------------------


@BOTH_DEPLOYMENTS
def test_resolved_in_sentry_closes_the_ticket_once(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    reset_counts(fake_sentry, fake_jira)

    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)

    assert bot_moves(fake_jira, key) == closing_way(stack)  # each step once, in the strict workflow too
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0  # Jira's webhook about it was our own echo
    assert fake_jira.issue(key)["resolution"] == "Done"  # type: ignore[index]
    assert any(d.source == "jira" and "our own change" in d.outcome for d in deliveries(engine))
    closes = [a for a in audit_of(engine, issue_id) if a.action == "close"]
    assert len(closes) == 1
    assert closes[0].side == "jira"


def test_a_persons_reopen_just_after_our_close_counts_though_jiras_clock_is_behind(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    fake_jira.clock_skew = -20.0  # Jira's clock runs 20 s behind the workers'

    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)
    watermark = link_of(engine, issue_id).jira_changed_at  # type: ignore[union-attr]
    person_walk(fake_jira, key, "To Do")  # a person disagrees, moments later
    wait_sentry(fake_sentry, issue_id, "unresolved")
    settle(engine, fake_sentry, fake_jira)

    # The watermark is Jira's own time of our close, not the worker's clock.
    assert watermark is not None
    jira_time = watermark if watermark.tzinfo else watermark.replace(tzinfo=UTC)
    assert abs(utcnow() - timedelta(seconds=20) - jira_time) < timedelta(seconds=15)
    [reopened] = [a for a in audit_of(engine, issue_id) if a.side == "sentry" and a.action == "unresolve"]
    assert reopened.cause.startswith("delivery:")
    assert not any("stale" in d.outcome for d in deliveries(engine) if d.source == "jira")


def test_a_repeat_resolve_byte_identical_to_the_first_is_not_swallowed(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)
    [first] = [d for d in deliveries(engine) if d.source == "sentry" and d.action == "resolved"]
    person_walk(fake_jira, key, "To Do")  # a person disagrees: syncer unresolves the issue
    wait_sentry(fake_sentry, issue_id, "unresolved")
    settle(engine, fake_sentry, fake_jira)
    # Sentry's retries of the first resolve are long over (20 minutes compressed into the row).
    with session_scope(engine) as session:
        row = session.get(Delivery, first.id)
        assert row is not None
        row.received_at = row.received_at - timedelta(minutes=21)

    fake_sentry.person_resolve(issue_id)  # the same person resolves again
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)

    resolves = [d for d in deliveries(engine) if d.source == "sentry" and d.action == "resolved"]
    assert len(resolves) == 2 and resolves[0].payload == resolves[1].payload  # byte for byte
    assert resolves[1].delivery_key == first.delivery_key and resolves[0].delivery_key != first.delivery_key
    assert [a.action for a in audit_of(engine, issue_id) if a.side == "jira"].count("close") == 2


@BOTH_DEPLOYMENTS
def test_a_regression_reopens_the_ticket_with_a_comment(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    fake_sentry.person_resolve(issue_id)
    wait_jira(fake_jira, key, "Done")
    settle(engine, fake_sentry, fake_jira)
    reset_counts(fake_sentry, fake_jira)
    since = len(fake_jira.webhooks.sent)

    fake_sentry.regress(issue_id)
    wait_jira(fake_jira, key, "To Do")
    settle(engine, fake_sentry, fake_jira)

    (comment,) = fake_jira.comments(key)
    assert "regressed" in comment["body"]
    assert "last seen" in comment["body"]
    assert " event" in comment["body"]
    assert comment["author"] == fake_jira.bot_account_id
    assert bot_moves(fake_jira, key, since) == ["To Do"]  # by Reopen, the strict workflow's one way back
    assert fake_sentry.calls.count("PUT", SENTRY_PUT) == 0
    link = link_of(engine, issue_id)
    assert link is not None
    assert link.reopen_commented_at is not None
    assert link.reopens_since_comment == 0


def test_a_regression_storm_leaves_one_comment_within_the_cooldown(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    for _ in range(3):
        fake_sentry.person_resolve(issue_id)
        wait_jira(fake_jira, key, "Done")
        settle(engine, fake_sentry, fake_jira)
        fake_sentry.regress(issue_id)
        wait_jira(fake_jira, key, "To Do")
        settle(engine, fake_sentry, fake_jira)

    assert len(fake_jira.comments(key)) == 1
    link = link_of(engine, issue_id)
    assert link is not None
    assert link.reopens_since_comment == 2


def test_a_regression_after_the_window_opens_a_new_linked_ticket(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    person_walk(fake_jira, key, "Done")
    wait_sentry(fake_sentry, issue_id, "resolved")
    settle(engine, fake_sentry, fake_jira)
    seed_link(engine, issue_id, jira_changed_at=utcnow() - timedelta(days=40))  # closed 40 days ago

    fake_sentry.regress(issue_id)
    wait_for(lambda: (link := link_of(engine, issue_id)) is not None and link.state == LinkState.ACTIVE
             and link.jira_key != key and link.previous_link_id is not None, 30, what="a new linked ticket")
    settle(engine, fake_sentry, fake_jira)

    old, new = links_of(engine, issue_id)
    assert old.state == LinkState.SUPERSEDED
    assert old.live_sentry_issue_id is None
    assert new.previous_link_id == old.id
    assert new.jira_key is not None
    assert jira_status(fake_jira, key) == "Done"  # the old ticket stays closed
    assert jira_status(fake_jira, new.jira_key) == "To Do"
    assert any(new.jira_key in c["body"] for c in fake_jira.comments(key))
    assert any(key in c["body"] for c in fake_jira.comments(new.jira_key))
    external = fake_sentry.external_issues(issue_id)
    assert [e["displayName"].split("#")[-1] for e in external] == [new.jira_key]


def test_a_regression_of_a_wont_fix_ticket_comments_and_stays_closed(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    person_walk(fake_jira, key, "Won't Do")
    wait_sentry(fake_sentry, issue_id, "ignored")
    settle(engine, fake_sentry, fake_jira)
    reset_counts(fake_sentry, fake_jira)

    fake_sentry.escalate(issue_id)
    wait_for(lambda: len(fake_jira.comments(key)) == 1, 30, what="the comment")
    settle(engine, fake_sentry, fake_jira)

    assert jira_status(fake_jira, key) == "Won't Do"
    assert fake_jira.calls.count("POST", JIRA_TRANSITION) == 0
    assert "won't-fix" in fake_jira.comments(key)[0]["body"]
    assert len(links_of(engine, issue_id)) == 1


def test_archived_in_sentry_leaves_the_ticket_alone_by_default(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    reset_counts(fake_sentry, fake_jira)

    fake_sentry.person_archive(issue_id)
    settle(engine, fake_sentry, fake_jira)

    assert jira_status(fake_jira, key) == "To Do"
    assert fake_jira.calls.writes() == 0
    archives = [d for d in deliveries(engine) if d.source == "sentry" and d.action in ("ignored", "archived")]
    outcomes = [d.outcome for d in archives]
    assert outcomes
    assert all('on_archive = "nothing"' in o for o in outcomes)


# --- serialisation --------------------------------------------------------------------------------


def test_events_for_a_link_wait_for_its_lock(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine,
    redis_client: redis.Redis,
) -> None:
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)
    link = link_of(engine, issue_id)
    assert link is not None
    lock = redis_client.lock(f"syncer:link:{link.id}", timeout=60)
    assert lock.acquire(blocking=False)
    try:
        person_walk(fake_jira, key, "Done")
        wait_for(lambda: any(d.last_error and "busy" in d.last_error for d in deliveries(engine)), 30,
                 what="the delivery to find the link busy")
        assert sentry_status(fake_sentry, issue_id) == "unresolved"
    finally:
        lock.release()
    wait_sentry(fake_sentry, issue_id, "resolved")


def runtime_with(redis_client: redis.Redis | None, engine: Engine) -> Runtime:
    """Just what `link_lock` uses of a Runtime."""
    return cast(Runtime, SimpleNamespace(redis=redis_client, engine=engine))


def test_a_link_lock_is_held_by_one_at_a_time(redis_client: redis.Redis, engine: Engine) -> None:
    rt = runtime_with(redis_client, engine)
    with link_lock(rt, 424242):
        with pytest.raises(TransientError, match="busy"), link_lock(rt, 424242, wait=0.1):
            pass
        with link_lock(rt, 424243, wait=0.1):  # another link is another lock
            pass
    with link_lock(rt, 424242, wait=0.1):  # released on the way out
        pass


def test_a_link_lock_is_released_when_the_handler_fails(redis_client: redis.Redis, engine: Engine) -> None:
    rt = runtime_with(redis_client, engine)
    with pytest.raises(RuntimeError), link_lock(rt, 424244):
        raise RuntimeError("the API call failed")
    assert redis_client.get("syncer:link:424244") is None


def test_a_link_lock_is_a_retry_not_a_crash_when_redis_is_down(engine: Engine) -> None:
    down = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)

    with pytest.raises(TransientError, match="Redis"), link_lock(runtime_with(down, engine), 1):
        pass


def test_without_redis_on_sqlite_the_link_lock_lets_work_proceed(engine: Engine) -> None:
    ran = []
    with link_lock(runtime_with(None, engine), 1):
        ran.append(True)
    assert ran == [True]
