"""The status lane's share of a host's rate (`syncer.ratelimit`): two GCRA buckets in the real Redis,
one for status changes and one for everything else, whose rates sum to the host's.

Threads stand in for worker threads: each has a limiter of its own, as each worker process does, and
all draw from the same buckets. A thread sleeps for the turn it was given, as a worker thread does;
what is asserted is what the limiter granted (turns and their waits, as Redis's clock set them),
never how long a run took."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from syncer import lanes
from syncer.errors import Throttled
from syncer.lanes import Lane
from syncer.ratelimit import RateLimiter, intervals_ms

RATE, SHARE = 50.0, 0.2
DEFAULT_S, STATUS_S = (ms / 1000.0 for ms in intervals_ms(RATE, SHARE))  # 25 ms and 100 ms
URL = "/rest/api/2/issue"


@pytest.fixture
def host(redis_client: redis.Redis) -> Iterator[str]:
    """An API host of this test's own, so that no other test's turns are in its buckets."""
    base_url = f"http://{uuid.uuid4().hex[:12]}.example"
    yield base_url
    for key in redis_client.scan_iter(f"syncer:rate:jira:{base_url.removeprefix('http://')}*"):
        redis_client.delete(key)


class Turns:
    """Every turn granted across the threads: when it comes (the grant's moment plus its wait) and
    how long it was waited for."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.lock = threading.Condition()
        self.granted: list[tuple[float, float, Lane]] = []
        self.throttled = 0
        self._wait = threading.local()

    def limiter(self, client: redis.Redis, *, max_wait: float) -> RateLimiter:
        return RateLimiter(client, service="jira", base_url=self.base_url, max_rps=RATE, max_wait=max_wait,
                           status_share=SHARE, sleep=self._sleep)

    def _sleep(self, wait: float) -> None:
        self._wait.value = wait
        time.sleep(wait)  # the turn itself, as a worker thread waits for it

    def take(self, limiter: RateLimiter, lane: Lane) -> float:
        """One call's turn in `lane`; its wait, or -1 when refused (the refusal is waited out)."""
        self._wait.value = 0.0
        # The turn's moment as Redis set it is a little after this (the script's own clock): taken
        # before, a turn is never counted later than it came, so a window never holds more than the
        # limiter granted in it (and a wider one by less than an interval).
        asked = time.time()
        try:
            limiter.before("POST", f"{self.base_url}{URL}")
        except Throttled as refused:
            with self.lock:
                self.throttled += 1
            time.sleep(refused.retry_after or 0.0)  # queued again for then, as a delivery is
            return -1.0
        wait = self._wait.value
        at = asked + wait
        with self.lock:
            self.granted.append((at, wait, lane))
            self.lock.notify_all()
        return wait

    def count(self, lane: Lane | None = None) -> int:
        with self.lock:
            return sum(1 for _, _, of in self.granted if lane in (None, of))

    def wait_for(self, n: int, lane: Lane | None = None) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: sum(1 for _, _, of in self.granted if lane in (None, of)) >= n,
                                      timeout=60), f"{n} turns"

    def most_in_any(self, window: float) -> int:
        times = sorted(at for at, _, _ in self.granted)
        most, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= window:
                first += 1
            most = max(most, last - first + 1)
        return most


@contextlib.contextmanager
def storm(turns: Turns, client: redis.Redis, *, threads: int, max_wait: float) -> Iterator[None]:
    """Default-lane threads taking turns back to back until the block ends."""
    stop = threading.Event()

    def creates() -> None:
        limiter = turns.limiter(client, max_wait=max_wait)
        while not stop.is_set():
            turns.take(limiter, Lane.DEFAULT)

    running = [threading.Thread(target=creates, daemon=True) for _ in range(threads)]
    for thread in running:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in running:
            thread.join(30)


def test_a_status_call_waits_at_most_one_status_interval_behind_a_saturated_default_lane(
    redis_client: redis.Redis, host: str
) -> None:
    turns = Turns(host)
    status_waits: list[float] = []
    status = turns.limiter(redis_client, max_wait=0.4)
    # More threads than the default bucket's max wait holds: the storm is booked as far ahead as it
    # may go, and some of its calls are refused.
    with storm(turns, redis_client, threads=24, max_wait=0.4), lanes.handling(Lane.STATUS):
        turns.wait_for(40, Lane.DEFAULT)
        for _ in range(8):
            # Each status change comes well after the last, as they do mid-storm: the status turn
            # it finds booked is the storm's, taken at once, never ahead.
            turns.wait_for(turns.count(Lane.DEFAULT) + 10, Lane.DEFAULT)
            status_waits.append(turns.take(status, Lane.STATUS))
    assert turns.throttled > 0  # the default lane was saturated
    assert all(0.0 <= wait <= STATUS_S + 0.002 for wait in status_waits), status_waits
    # Never over the host's rate, both lanes together: one turn per bucket may come at once.
    assert turns.most_in_any(1.0) <= RATE * 1.0 + 2, turns.most_in_any(1.0)


def test_the_default_lane_takes_the_whole_rate_while_the_status_lane_is_idle(
    redis_client: redis.Redis, host: str
) -> None:
    turns = Turns(host)
    with storm(turns, redis_client, threads=12, max_wait=0.4):
        turns.wait_for(int(RATE * 2.5))
    most = turns.most_in_any(1.0)
    # More than its own bucket could give (so it took status turns), never more than the host's rate.
    assert RATE * (1 - SHARE) + 1 < most <= RATE + 2, most


def test_the_default_lane_never_books_the_status_bucket_ahead(redis_client: redis.Redis, host: str) -> None:
    waits: list[float] = []
    shared = RateLimiter(redis_client, service="jira", base_url=host, max_rps=RATE, max_wait=10.0,
                         status_share=SHARE, sleep=waits.append)
    started = time.monotonic()
    for _ in range(40):  # a storm's creates, booked far ahead (nothing sleeps here)
        shared.before("POST", f"{host}{URL}")
    # The first two go at once (the default turn, then the free status turn: no sleep at all); the
    # rest book the default bucket only, one default interval apart (less the time these calls took).
    assert len(waits) == 38 and all(wait <= (n + 1) * DEFAULT_S + 0.002 for n, wait in enumerate(waits))
    assert waits[-1] >= 38 * DEFAULT_S - (time.monotonic() - started) - 0.002, waits[-1]
    with lanes.handling(Lane.STATUS):
        shared.before("POST", f"{host}{URL}/OPS-1/transitions")
    assert waits[-1] <= STATUS_S + 0.002  # behind the one status turn the storm took, not behind 38
    # Outside any delivery (a reconcile run, a command) calls draw as the default lane does.
    shared.before("GET", f"{host}{URL}/OPS-1")
    assert STATUS_S < waits[-1] <= 39 * DEFAULT_S + 0.002


def test_a_burst_of_status_changes_takes_default_turns_too_when_they_are_sooner(
    redis_client: redis.Redis, host: str
) -> None:
    waits: list[float] = []
    shared = RateLimiter(redis_client, service="jira", base_url=host, max_rps=RATE, max_wait=10.0,
                         status_share=SHARE, sleep=waits.append)
    with lanes.handling(Lane.STATUS):
        for _ in range(10):
            shared.before("POST", f"{host}{URL}/OPS-1/transitions")
    # Ten turns in about ten host intervals (status and default buckets both), not ten status ones.
    assert len(waits) >= 8 and max(waits) <= 10 / RATE, waits


def test_a_servers_429_holds_both_lanes(redis_client: redis.Redis, host: str) -> None:
    shared = RateLimiter(redis_client, service="jira", base_url=host, max_rps=RATE, max_wait=1.0,
                         status_share=SHARE, sleep=lambda _: None)
    shared.after("GET", f"{host}{URL}/OPS-1", 429, {"Retry-After": "5"})
    for lane in (Lane.DEFAULT, Lane.STATUS):
        with lanes.handling(lane), pytest.raises(Throttled) as held:
            shared.before("POST", f"{host}{URL}/OPS-1/transitions")
        assert held.value.retry_after is not None and 4.0 < held.value.retry_after <= 5.0


def test_no_share_is_one_bucket_for_every_lane(redis_client: redis.Redis, host: str) -> None:
    waits: list[float] = []
    shared = RateLimiter(redis_client, service="jira", base_url=host, max_rps=RATE, max_wait=10.0,
                         sleep=waits.append)
    for _ in range(5):
        shared.before("POST", f"{host}{URL}")
    with lanes.handling(Lane.STATUS):
        shared.before("POST", f"{host}{URL}/OPS-1/transitions")
    assert waits[-1] == pytest.approx(5 / RATE, abs=0.01)  # behind every create, as before lanes
    assert intervals_ms(10, 0.2) == (125, 500) and intervals_ms(3, 0.2) == (417, 1667)
    assert intervals_ms(10, 0) == (100, 0) and intervals_ms(0, 0.2) == (0, 0)
