"""Incidents the way they really go: Jira down for longer than any count of retries lasts, and a
backlog held back by our own rate limit. Nothing may be lost to either: retries are bounded by time
(`SYNCER_RETRY_WINDOW_SECONDS`), and a wait for our own limiter's turn is a queue, not a failure.

Real processes on the fault stack of `tests/test_faults.py` (its own broker, web app and beat),
with time compressed by settings: backoffs capped at a second, a retry window of seconds.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from syncer.errors import Throttled, TransientError
from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.retry import GiveUp, RetryPolicy, delivery_policy
from syncer.settings import Settings
from syncer.store.schema import Delivery, DeliveryState
from tests import test_faults
from tests.harness import SyncerProcess, start_worker, wait_for
from tests.test_faults import (
    FaultStack,
    as_env,
    delivery_rows,
    letters,
    limiter,
    tickets_for,
    wait_all_finished,
    wait_linked,
)

JIRA_ANY = r"^/rest/api/"

# The fault stack's fixtures: this module gets a stack of its own (module scope).
faults = test_faults.faults
fstack = test_faults.fstack


def sentry_rows(engine: Engine) -> list[Delivery]:
    """The issues' own deliveries (Jira's webhooks about the tickets made are stored too)."""
    return [r for r in delivery_rows(engine) if r.source == "sentry"]


def start_uncapped_worker(stack: FaultStack, name: str, **overrides: Any) -> SyncerProcess:
    """A worker on `stack` with no `SYNCER_TASK_MAX_RETRIES` (the fault stack sets one): only the
    retry window ends its retries, as by default."""
    stack.stop_worker()
    env = {**stack.env, **as_env(overrides)}
    env.pop("SYNCER_TASK_MAX_RETRIES", None)
    stack.worker = start_worker(name, env, stack.workdir, concurrency=4)
    stack.started.append(stack.worker)
    return stack.worker


# ------------------------------------------------------------------ the window's arithmetic


def test_the_window_not_the_count_decides_by_default() -> None:
    policy = delivery_policy(Settings(retry_window_seconds=3600, retry_backoff_cap_seconds=60))
    assert policy.attempts is None and policy.window == 3600
    assert policy.give_up(10_000, elapsed=3599) is None
    assert policy.give_up(1, elapsed=3600) is GiveUp.WINDOW


def test_task_max_retries_stays_an_optional_further_cap() -> None:
    policy = delivery_policy(Settings(task_max_retries=8))
    assert policy.attempts == 9 and policy.window == 86400
    assert policy.give_up(8, elapsed=60) is None
    assert policy.give_up(9, elapsed=60) is GiveUp.COUNT
    assert policy.give_up(9, elapsed=86400) is GiveUp.WINDOW  # the window's name wins past it


def test_the_window_is_a_day_by_default_and_must_be_positive() -> None:
    assert Settings().retry_window_seconds == 86400 and Settings().task_max_retries is None
    with pytest.raises(ValueError, match="retry_window_seconds"):
        Settings(retry_window_seconds=0)


def test_the_last_wait_ends_at_the_window_unless_the_server_asked_for_longer() -> None:
    policy = RetryPolicy(attempts=None, cap=600, window=100)
    assert policy.wait_within(20, elapsed=10) <= 90  # capped backoff would be 300-600
    assert policy.wait_within(20, elapsed=99.5) == pytest.approx(0.5)
    assert policy.wait_within(20, elapsed=99.5, retry_after=30) == 30  # asking earlier earns a 429
    assert policy.wait_within(20, elapsed=150) == 0.0
    early = policy.wait_within(1, elapsed=0)
    assert 1.0 <= early <= 2.0  # far from the window's end: the ordinary backoff


def test_a_throttled_delivery_waits_for_its_turn_spread_out() -> None:
    policy = RetryPolicy(attempts=None, window=1000)
    rng = random.Random(7)
    waits = [policy.queued(4.0, elapsed=0, rng=rng) for _ in range(200)]
    assert min(waits) >= 4.0 and max(waits) <= 6.0
    assert max(waits) - min(waits) > 1.0  # not all back for the same turn
    assert policy.queued(4.0, elapsed=999, rng=rng) == 4.0  # never before the turn itself


def test_our_limiters_refusal_is_throttled_a_transient_error(fstack: FaultStack) -> None:
    slow = limiter(fstack, max_rps=0.2, max_wait=1.0)
    slow.before("GET", "http://127.0.0.1/rest/api/2/search/jql")
    with pytest.raises(Throttled) as raised:
        slow.before("GET", "http://127.0.0.1/rest/api/2/search/jql")
    assert isinstance(raised.value, TransientError) and raised.value.retry_after


# ------------------------------------------------------------------ Jira down for longer than 8 retries


@pytest.mark.slow
def test_jira_down_longer_than_eight_retries_loses_nothing(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    start_uncapped_worker(fstack, "outage-worker", retry_backoff_cap_seconds=1, jira_max_rps=0)
    down = Fault("*", JIRA_ANY, status=503, times=None)
    fake_jira.faults.append(down)
    issues = [fake_sentry.file_issue(project="billing-api", title=f"outage {n}") for n in range(30)]

    def all_past_eight_retries() -> bool:
        rows = sentry_rows(engine)
        return len(rows) == 30 and all(r.attempts > 9 for r in rows)

    # The old count (8 retries after the first try) would have buried every one of them by now.
    wait_for(all_past_eight_retries, 120, interval=0.5, what="every delivery past nine failed tries")
    assert letters(engine) == []
    assert all(r.state in DeliveryState.UNFINISHED for r in sentry_rows(engine))
    fake_jira.faults.remove(down)  # Jira is back

    for issue in issues:
        wait_linked(engine, issue["id"], timeout=90)
    wait_all_finished(engine, timeout=60)
    assert [r.state for r in sentry_rows(engine)] == [DeliveryState.DONE] * 30
    for issue in issues:
        assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert letters(engine) == []
    fstack.stop_worker()


@pytest.mark.slow
def test_past_the_retry_window_a_delivery_is_a_dead_letter_naming_the_window(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    start_uncapped_worker(
        fstack, "window-worker", retry_backoff_cap_seconds=1, retry_window_seconds=3, jira_max_rps=0
    )
    down = Fault("*", JIRA_ANY, status=503, times=None)
    fake_jira.faults.append(down)
    try:
        issue = fake_sentry.file_issue(project="billing-api", title="Jira down past the window")
        (letter,) = wait_for(lambda: letters(engine), 60, interval=0.2, what="a dead letter")
    finally:
        fake_jira.faults.remove(down)
    (row,) = sentry_rows(engine)
    assert row.state == DeliveryState.DEAD and row.attempts >= 2
    assert letter.error.startswith(f"gave up after {row.attempts} attempts over ")
    assert "SYNCER_RETRY_WINDOW_SECONDS=3" in letter.error and "503" in letter.error
    assert (letter.created_at - row.received_at).total_seconds() >= 3.0  # alive for the whole window
    assert issue["id"] in letter.payload and tickets_for(fake_jira, issue["id"]) == []
    fstack.stop_worker()


# ------------------------------------------------------------------ a backlog held back by our own limit


@pytest.mark.slow
def test_a_backlog_throttled_by_our_own_rate_limit_drains_without_burning_attempts(
    fstack: FaultStack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    # Four threads against a budget of two turns ahead (10 calls/s, waits of at most 0.2 s): most
    # calls find their turn too far off, again and again; with retries counted, a cap of 4 (the
    # fault stack's) would bury most of the backlog.
    worker = fstack.start_worker("throttled-worker", jira_max_rps=10, rate_limit_max_wait_seconds=0.2)
    issues = [fake_sentry.file_issue(project="billing-api", title=f"backlog {n}") for n in range(60)]
    for issue in issues:
        wait_linked(engine, issue["id"], timeout=180)
    wait_all_finished(engine, timeout=60)
    rows = sentry_rows(engine)
    assert len(rows) == 60 and letters(engine) == []
    for issue in issues:
        assert len(tickets_for(fake_jira, issue["id"])) == 1
    assert "client-side rate limit" in worker.output()  # the limiter did refuse, and often
    # Nothing failed but the limiter's refusals, and none of those counted.
    assert [r.attempts for r in rows] == [1] * 60
    assert {r.state for r in rows} <= {DeliveryState.DONE, DeliveryState.IGNORED}
    fstack.stop_worker()
