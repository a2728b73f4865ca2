"""How long to wait before trying again: exponential backoff with jitter, capped, and never
sooner than the server asked (Retry-After, rate-limit reset)."""

from __future__ import annotations

import random


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
