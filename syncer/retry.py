"""How long to wait before trying again, and when to stop: one policy for every retry in syncer.

Exponential backoff with jitter, capped, and never sooner than the server asked (Retry-After,
rate-limit reset). Each retrying place holds a `RetryPolicy`: deliveries (`delivery_policy`: the
inbox's postponements, the worker's re-deliveries when the database is out of reach) and
reconcile's page reads (`syncer.sync.reconcile.pages.READS`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all (None: no limit), waiting `backoff_seconds(n, base, cap)` after the
    n-th failure, or longer when the server asked."""

    attempts: int | None
    base: float = 2.0
    cap: float = 600.0

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1 = the first try)."""
        return backoff_seconds(attempt, retry_after=retry_after, base=self.base, cap=self.cap)

    def exhausted(self, attempt: int) -> bool:
        """Whether failed try number `attempt` was the last this policy allows."""
        return self.attempts is not None and attempt >= self.attempts

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
    """Processing an inbox delivery: `task_max_retries` retries after the first try, then it is a
    dead letter; waits capped at `retry_backoff_cap_seconds`."""
    return RetryPolicy(attempts=settings.task_max_retries + 1, cap=settings.retry_backoff_cap_seconds)
