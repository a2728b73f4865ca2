"""Jira Cloud's per-issue write limit, for the fake.

Atlassian's rate-limiting guide (developer.atlassian.com/cloud/jira/platform/rate-limiting): besides the
points quota and the per-endpoint burst limit, writes to ONE issue are limited in two windows at once,
"Short window: 20 write operations per 2 seconds, Long window: 100 write operations per 30 seconds".
Past either, Jira answers `429` with `RateLimit-Reason: jira-per-issue-on-write` and `Retry-After`
(seconds); other issues, and other calls, go on normally.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

CLOUD_ISSUE_WRITE_LIMITS = ((20, 2.0), (100, 30.0))  # (writes, per seconds)


class IssueWriteLimit:
    def __init__(self, windows: Sequence[tuple[int, float]]) -> None:
        self.windows = tuple((int(n), float(seconds)) for n, seconds in windows)
        self._longest = max((seconds for _, seconds in self.windows), default=0.0)
        self._writes: dict[str, deque[float]] = {}

    def admit(self, issue_id: str, now: float) -> tuple[int, int] | None:
        """Count one write to the issue at `now` (time.monotonic()) and return None, or, when a window is
        full, count nothing and return (whole seconds until it has room, that window's limit)."""
        writes = self._writes.setdefault(issue_id, deque())
        while writes and writes[0] <= now - self._longest:
            writes.popleft()
        for limit, seconds in self.windows:
            recent = [at for at in writes if at > now - seconds]
            if len(recent) >= limit:
                wait = recent[-limit] + seconds - now
                return max(1, math.ceil(wait)), limit
        writes.append(now)
        return None

    def clear(self) -> None:
        self._writes.clear()
