"""How long to wait before trying again, and when to stop: one policy for every retry in syncer.

Exponential backoff with jitter, capped, and never sooner than the server asked (Retry-After,
rate-limit reset). Each retrying place holds a `RetryPolicy`: deliveries (`delivery_policy`: the
inbox's postponements, the worker's re-deliveries when the database is out of reach) and
reconcile's page reads (`syncer.sync.reconcile.pages.READS`).

Deliveries stop by time, not by count: Jira Cloud incidents last from minutes to hours, and any
count of capped retries adds up to minutes. A delivery keeps retrying until `window` seconds after
it was stored; a count (`attempts`) is only an optional further cap.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from syncer.errors import TransientError
from syncer.settings import Settings

T = TypeVar("T")


def backoff_seconds(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = 2.0,
    cap: float = 600.0,
    rng: random.Random | None = None,
) -> float:
    """Wait before retry number `attempt` (1 = the first retry)."""
    rng = rng or random.Random()
    ceiling: float = min(cap, base * 2.0 ** max(0, attempt - 1))
    # "Equal jitter": at least half the ceiling, so retries spread out but never bunch at zero.
    wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after is not None:
        # The server's own hint wins, even past our cap: asking earlier only earns another 429.
        wait = max(wait, retry_after + rng.uniform(0, 1))
    return wait


class GiveUp(StrEnum):
    """Why a policy allows no further try (the dead letter's reason, as counted in metrics)."""

    WINDOW = "retry_window"  # past the window since the work arrived
    COUNT = "retries_exhausted"  # the optional cap on counted tries


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all (None: no limit), and none after `window` seconds from the work's
    arrival (None: no limit), waiting `backoff_seconds(n, base, cap)` after the n-th failure, or
    longer when the server asked."""

    attempts: int | None
    base: float = 2.0
    cap: float = 600.0
    window: float | None = None

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1 = the first try)."""
        return backoff_seconds(attempt, retry_after=retry_after, base=self.base, cap=self.cap)

    def exhausted(self, attempt: int) -> bool:
        """Whether failed try number `attempt` was the last this policy allows."""
        return self.attempts is not None and attempt >= self.attempts

    def give_up(self, attempt: int, elapsed: float) -> GiveUp | None:
        """Why failed try number `attempt`, `elapsed` seconds after the work arrived, is the last;
        None while tries remain."""
        if self.window is not None and elapsed >= self.window:
            return GiveUp.WINDOW
        if self.exhausted(attempt):
            return GiveUp.COUNT
        return None

    def wait_within(self, attempt: int, elapsed: float, retry_after: float | None = None) -> float:
        """`wait`, shortened so that the next try still falls inside the window (a last try at its
        very end, rather than a failure buried early); never sooner than the server asked."""
        wait = self.wait(attempt, retry_after)
        if self.window is None:
            return wait
        return max(min(wait, self.window - elapsed), retry_after or 0.0, 0.0)

    def queued(self, turn_in: float, elapsed: float, rng: random.Random | None = None) -> float:
        """When to try again after our own rate limit said its next turn is `turn_in` s away: then,
        plus up to half as long again, so that a throttled backlog does not come back all at once
        for the same turn. Not a failure: the attempt number does not move."""
        rng = rng or random.Random()
        wait = turn_in + rng.uniform(0, max(turn_in, 1.0) / 2)
        if self.window is not None:
            wait = max(min(wait, self.window - elapsed), turn_in, 0.0)
        return wait

    def call(
        self,
        do: Callable[[], T],
        *,
        on_retry: Callable[[TransientError, float], None] = lambda _exc, _wait: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """`do()`, tried again in this thread after each TransientError while tries remain; the
        last try's failure is the caller's. `on_retry` hears each failure and the wait after it."""
        attempt = 1
        while True:
            try:
                return do()
            except TransientError as exc:
                if self.exhausted(attempt):
                    raise
                pause = self.wait(attempt, exc.retry_after)
                on_retry(exc, pause)
                sleep(pause)
                attempt += 1


def delivery_policy(settings: Settings) -> RetryPolicy:
    """Processing an inbox delivery: retried until `retry_window_seconds` after it was stored (and,
    when set, for at most `task_max_retries` counted retries), then it is a dead letter; waits
    capped at `retry_backoff_cap_seconds`."""
    retries = settings.task_max_retries
    return RetryPolicy(
        attempts=None if retries is None else retries + 1,
        cap=settings.retry_backoff_cap_seconds,
        window=settings.retry_window_seconds,
    )
