"""Jira's limits (summary, description, labels, per-issue writes): truncated with a marker, never a
failed ticket, and one busy ticket holds back no other. Through the session's real worker against the
fake Jira, which enforces each limit as Jira does (in UTF-16 units; 429s per issue)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine

from syncer.errors import Throttled, TransientError
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.jira.client import JiraClient
from syncer.ratelimit import RateLimiter
from syncer.store.schema import DeliveryState, LinkState
from tests.conftest import JIRA_TOKEN
from tests.harness import deliveries, letters, link_of, wait_for


def linked_ticket(fake_jira: FakeJira, engine: Engine, sentry_id: str, timeout: float = 60) -> dict[str, Any]:
    link = wait_for(
        lambda: (found := link_of(engine, sentry_id)) is not None and found.state == LinkState.ACTIVE
        and found.remote_link_done and found.sentry_link_done and found,
        timeout, what=f"a linked ticket for {sentry_id}",
    )
    ticket = fake_jira.issue(link.jira_key)
    assert ticket is not None
    return ticket


def settled(engine: Engine) -> None:
    wait_for(lambda: all(d.state not in DeliveryState.UNFINISHED for d in deliveries(engine)), 60,
             what="every delivery to finish")


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_a_title_and_culprit_past_jiras_limits_make_a_ticket_marked_as_cut(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    title = "RecursionError in \U0001f525 " * 40  # 800 code points, 840 UTF-16 units
    issue = fake_sentry.file_issue(project="billing-api", title=title, culprit="handler." * 500)

    ticket = linked_ticket(fake_jira, engine, issue["id"])

    assert utf16(ticket["summary"]) <= 255 and ticket["summary"].endswith("\u2026")
    assert ticket["summary"].startswith("RecursionError in \U0001f525")
    assert "handler.handler." in ticket["description"] and "\u2026|" in ticket["description"]
    settled(engine)
    assert letters(engine) == []


@pytest.fixture
def limited(fake_jira: FakeJira) -> Any:
    yield fake_jira
    fake_jira.issue_write_limits = None


def test_a_per_issue_429_on_one_ticket_does_not_hold_back_another(
    stack: dict[str, Any], fake_sentry: FakeSentry, limited: FakeJira, engine: Engine
) -> None:
    fake_jira = limited
    busy = fake_sentry.file_issue(project="billing-api", title="a busy ticket")
    busy_key = linked_ticket(fake_jira, engine, busy["id"])["key"]
    settled(engine)
    fake_jira.issue_write_limits = ((1, 20.0),)  # one API write per ticket in 20 s

    fake_sentry.person_resolve(busy["id"])  # the close is the ticket's one write of the window
    wait_for(lambda: fake_jira.issue(busy_key)["status"] == "Done", 30,  # type: ignore[index]
             what="the busy ticket to close")
    fake_sentry.person_unresolve(busy["id"])  # its reopen: 429, per issue, for the rest of the window
    wait_for(lambda: fake_jira.calls.count("POST", rf"/issue/{busy_key}/transitions$") >= 2, 30,
             what="the reopen to be refused")
    other = fake_sentry.file_issue(project="billing-api", title="another ticket, filed meanwhile")

    linked_ticket(fake_jira, engine, other["id"], timeout=15)  # well inside the busy one's hold
    assert fake_jira.issue(busy_key)["status"] == "Done"  # type: ignore[index]  # still held back

    wait_for(lambda: fake_jira.issue(busy_key)["status"] == "To Do", 60,  # type: ignore[index]
             what="the busy ticket to reopen once Jira lets it")
    settled(engine)
    assert letters(engine) == []


def test_a_ticket_jira_holds_back_is_throttled_at_once_and_others_go_on(
    limited: FakeJira, redis_client: redis.Redis
) -> None:
    fake_jira = limited
    fake_jira.reset()
    for key in redis_client.scan_iter("syncer:rate:*"):
        redis_client.delete(key)
    throttle = RateLimiter(redis_client, service="jira", base_url=fake_jira.url, max_rps=50.0,
                           issue_write_interval=0.1, max_wait=10.0)
    client = JiraClient(fake_jira.url, email="bot@example.com", token=JIRA_TOKEN, timeout=(2, 5),
                        throttle=throttle)
    busy, other = (fake_jira.person_create("OPS", f"ticket {n}") for n in range(2))
    fake_jira.issue_write_limits = ((1, 5.0),)
    client.add_comment(busy, "the window's one write")
    with pytest.raises(TransientError) as refused:
        client.add_comment(busy, "refused by Jira")
    assert refused.value.retry_after is not None and refused.value.retry_after > 0

    started = time.monotonic()
    with pytest.raises(Throttled) as held:
        client.add_comment(busy, "held back here, not sent")
    client.add_comment(other, "another ticket's write goes on")

    assert time.monotonic() - started < 2.0  # neither waited out the 5-second hold in this thread
    assert held.value.retry_after is not None and 0 < held.value.retry_after <= 5.0
    assert fake_jira.calls.count("POST", rf"/issue/{busy}/comment$") == 2  # the held one never left
    assert [c["body"] for c in fake_jira.comments(other)] == ["another ticket's write goes on"]
