"""Client-side rate limits, shared by every worker process through Redis.

Bouncing off an API's 429s wastes calls and, on Jira Cloud, earns longer penalties; so each API host
gets a budget (`SYNCER_JIRA_MAX_RPS`, `SYNCER_SENTRY_MAX_RPS`) that every thread of every worker draws
from, and writes to one Jira ticket are spaced out (`SYNCER_JIRA_ISSUE_WRITE_INTERVAL_SECONDS`),
because Jira Cloud also limits writes per issue.

The algorithm is GCRA (a token bucket kept as one timestamp, the "theoretical arrival time") in a Lua
script, so that taking a turn is one atomic round trip and the clock is Redis's own, the same for
every host. Each call reserves the next free turn and sleeps until it comes; a turn further away than
`SYNCER_RATE_LIMIT_MAX_WAIT_SECONDS` is not taken: the call raises `Throttled` with that wait, and
the delivery is queued again for then instead of holding a worker thread (no attempt counted: a
throttled backlog drains, however long it is). A 429 moves the host's (or, for
Jira's per-issue limit, the ticket's) next turn to when the server said to come back, so the other
workers wait too instead of earning 429s of their own; a ticket Jira holds back is not waited for
at all (Throttled at once), so one busy ticket never delays the deliveries queued behind it.

Status work keeps a share of the host's rate (`syncer.lanes`, `SYNCER_RATE_LIMIT_STATUS_SHARE`).
A host has two buckets whose rates sum to the host's: the status lane's (share s) and the default
lane's (1 - s). A storm of creates books its own bucket up to the max wait ahead, but never books
the status bucket ahead: it takes a status turn only when that turn is free right now. So a status
change's call (a transition, Sentry's status update) waits at most about one status interval
(1 / (s * rate)) behind the creates, however long their backlog; and since the creates take every
status turn nobody wants, a storm with no status change waiting still has the whole rate. A status
call takes a default turn instead when that one is sooner (no storm, or a burst of status changes).
Each bucket spaces its own turns, so together they never exceed the host's rate. Work outside any
delivery (a reconcile run, a command) draws as the default lane does: a reconcile run is bulk work
too, and in the status share it would crowd the status changes it should never delay.

If Redis cannot be reached, the limiter steps aside for a while (fails open): a missing rate limit
costs at worst a 429, which the retry path handles; a stalled worker costs more.

The clients know only the `Throttle` protocol (`before` and `after` one HTTP request); with no
limit configured they get none and make no extra call at all.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

import redis

from syncer import lanes
from syncer.errors import WRITES, Throttled, retry_after_seconds

log = logging.getLogger(__name__)

# Jira's own word for its per-issue limit, in the RateLimit-Reason header of a 429.
PER_ISSUE_REASON = "jira-per-issue-on-write"
MAX_PENALTY_SECONDS = 600.0  # a Retry-After beyond this is a server's mistake, not a plan
REDIS_RETRY_SECONDS = 30.0  # after a Redis failure, how long the limiter stays out of the way

_ISSUE_REF = re.compile(r"/rest/api/(?:\d+|latest)/issue/([^/?#]+)")

# KEYS[1]: the bucket; KEYS[2], optional: its hold, set by the server's 429. ARGV[1]: the emission
# interval in ms. ARGV[2]: the longest acceptable wait in ms. Returns {1, wait_ms} with the turn
# reserved, {0, wait_ms} when that wait is too long (nothing taken), {0, wait_ms, 1} while held.
_TAKE = """
if KEYS[2] then
  local held = redis.call('PTTL', KEYS[2])
  if held > 0 then return {0, held, 1} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - now
if wait > tonumber(ARGV[2]) then return {0, wait} end
local next_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor(next_tat - now) + 1000)
return {1, wait}
"""

# A lane's turn at a host of two buckets. KEYS[1]: the default lane's bucket; KEYS[2]: the status
# lane's. ARGV[1], ARGV[2]: their emission intervals in ms. ARGV[3]: the longest acceptable wait in ms.
# ARGV[4]: '1' for the status lane. Returns {1, wait_ms} with the turn reserved, {0, wait_ms} when that
# wait is too long (nothing taken).
_TAKE_SHARED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local default_tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local status_tat = math.max(tonumber(redis.call('GET', KEYS[2])) or now, now)
local key, tat, interval = KEYS[1], default_tat, tonumber(ARGV[1])
if ARGV[4] == '1' then
  if status_tat <= default_tat then key, tat, interval = KEYS[2], status_tat, tonumber(ARGV[2]) end
elseif default_tat > now and status_tat <= now then
  -- a status turn nobody has booked: the default lane may have it, but only now, never ahead
  key, tat, interval = KEYS[2], status_tat, tonumber(ARGV[2])
end
local wait = tat - now
if wait > tonumber(ARGV[3]) then return {0, wait} end
local next_tat = tat + interval
redis.call('SET', key, string.format('%.0f', next_tat), 'PX', math.floor(next_tat - now) + 1000)
return {1, wait}
"""

# KEYS: the buckets to hold, then, when ARGV[2] is '1', the hold marker of the last one. ARGV[1]: ms
# from now before which no turn is given (the server's Retry-After).
_HOLD = """
local buckets = #KEYS
if ARGV[2] == '1' then
  redis.call('SET', KEYS[buckets], '1', 'PX', ARGV[1])
  buckets = buckets - 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = now + tonumber(ARGV[1])
for i = 1, buckets do
  local tat = tonumber(redis.call('GET', KEYS[i])) or 0
  if hold > tat then
    redis.call('SET', KEYS[i], string.format('%.0f', hold), 'PX', math.floor(hold - now) + 1000)
  end
end
return 0
"""


class Throttle(Protocol):
    """What an API client calls around each HTTP request it sends."""

    def before(self, method: str, url: str) -> None:
        """Wait for this request's turn; Throttled when the wait would be too long."""

    def after(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from the answer (a 429 holds everyone back until the server's retry time)."""


def issue_ref(url: str) -> str | None:
    """The Jira issue (key or id) a REST URL is about, or None (a create, a search, ...)."""
    match = _ISSUE_REF.search(urlsplit(url).path)
    return match.group(1) if match else None


def bucket_name(service: str, base_url: str) -> str:
    """The Redis key of one API host's budget."""
    return f"syncer:rate:{service}:{urlsplit(base_url).netloc}"


def intervals_ms(max_rps: float, status_share: float) -> tuple[int, int]:
    """The emission intervals of a host's (default, status) buckets, in whole ms; status 0 when the
    host has one bucket for everything. Rounded up, so that the two never sum past the host's rate."""
    if max_rps <= 0:
        return 0, 0
    if status_share <= 0:
        return math.ceil(1000.0 / max_rps), 0
    return math.ceil(1000.0 / (max_rps * (1.0 - status_share))), math.ceil(1000.0 / (max_rps * status_share))


class RateLimiter:
    """One API host's shared budget (with the status lane's share of it), and (Jira) per-ticket write
    spacing."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        service: str,
        base_url: str,
        max_rps: float,
        issue_write_interval: float = 0.0,
        max_wait: float = 10.0,
        status_share: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0.0 <= status_share < 1.0:
            raise ValueError(f"status_share must be in [0, 1), not {status_share}")
        self.service = service
        self.bucket = bucket_name(service, base_url)
        self.status_bucket = f"{self.bucket}:status"
        self._interval_ms, self._status_interval_ms = intervals_ms(max_rps, status_share)
        self._issue_interval_ms = round(issue_write_interval * 1000.0)
        self._max_wait_ms = round(max_wait * 1000.0)
        self._take = client.register_script(_TAKE)
        self._take_shared = client.register_script(_TAKE_SHARED)
        self._hold = client.register_script(_HOLD)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._redis_down_until = 0.0

    def before(self, method: str, url: str) -> None:
        # The ticket's turn first, then the host's: a host turn taken and then left waiting behind the
        # ticket's would let later requests' turns crowd in ahead of it, over the rate.
        if method.upper() in WRITES:
            ref = issue_ref(url)
            if ref is not None:
                # A ticket Jira holds back (its per-issue 429) is never waited for in the thread:
                # the delivery goes back to the queue for then, and the deliveries after it in the
                # same worker message (and every other ticket) go on now.
                bucket = f"{self.bucket}:issue:{ref}"
                self._wait_turn(bucket, self._issue_interval_ms, f"writes to {ref}", held=f"{bucket}:held")
        if self._status_interval_ms:
            self._wait_shared_turn()
        elif self._interval_ms:
            self._wait_turn(self.bucket, self._interval_ms, "requests")

    def after(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        if status != 429:
            return
        wait = retry_after_seconds(headers)
        if not wait:
            return
        reason = {k.lower(): v for k, v in headers.items()}.get("ratelimit-reason", "")
        ref = issue_ref(url)
        # Jira's per-issue write limit holds that ticket only, not the host: other tickets go on.
        per_issue = PER_ISSUE_REASON in reason and ref is not None
        if per_issue:
            bucket = f"{self.bucket}:issue:{ref}"
            keys, marked = [bucket, f"{bucket}:held"], "1"
        else:  # the server's limit is the host's whole rate: both lanes wait
            keys, marked = [self.bucket, self.status_bucket], "0"
        hold_ms = round(min(wait, MAX_PENALTY_SECONDS) * 1000.0)
        if self._available():
            try:
                self._hold(keys=keys, args=[hold_ms, marked])
            except redis.RedisError as exc:
                self._step_aside(exc)

    def _wait_turn(self, bucket: str, interval_ms: int, what: str, *, held: str | None = None) -> None:
        if not self._available():
            return
        try:
            answer = self._take(keys=[bucket] if held is None else [bucket, held],
                                args=[interval_ms, self._max_wait_ms])
        except redis.RedisError as exc:
            self._step_aside(exc)
            return
        granted, wait_ms = answer[0], answer[1]
        wait = int(wait_ms) / 1000.0
        if len(answer) > 2:
            raise Throttled(f"{self.service}: {what} held back by the server's 429 for {wait:.1f}s more",
                            retry_after=wait)
        self._granted_or_throttled(int(granted), wait, what)

    def _wait_shared_turn(self) -> None:
        """The host's turn for this lane: the status lane's own bucket or the default's, whichever
        comes sooner; the default lane's, or a status turn free this very moment."""
        if not self._available():
            return
        status = lanes.current() is lanes.Lane.STATUS
        try:
            granted, wait_ms = self._take_shared(
                keys=[self.bucket, self.status_bucket],
                args=[self._interval_ms, self._status_interval_ms, self._max_wait_ms, "1" if status else "0"],
            )
        except redis.RedisError as exc:
            self._step_aside(exc)
            return
        self._granted_or_throttled(int(granted), int(wait_ms) / 1000.0, "requests")

    def _granted_or_throttled(self, granted: int, wait: float, what: str) -> None:
        if not granted:
            raise Throttled(
                f"{self.service}: client-side rate limit for {what}: next turn in {wait:.1f}s",
                retry_after=wait,
            )
        if wait > 0:
            self._sleep(wait)

    def _available(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _step_aside(self, exc: redis.RedisError) -> None:
        with self._lock:
            if time.monotonic() < self._redis_down_until:
                return
            self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        log.warning(
            "%s rate limit unavailable for %.0fs (Redis: %s); calls go unthrottled",
            self.service,
            REDIS_RETRY_SECONDS,
            type(exc).__name__,
        )


def limiter(
    client: redis.Redis | None,
    *,
    service: str,
    base_url: str,
    max_rps: float,
    issue_write_interval: float = 0.0,
    max_wait: float = 10.0,
    status_share: float = 0.0,
) -> RateLimiter | None:
    """The limiter for one API, or None when there is nothing to limit (no Redis, no limits set)."""
    if client is None or (max_rps <= 0 and issue_write_interval <= 0):
        return None
    return RateLimiter(
        client,
        service=service,
        base_url=base_url,
        max_rps=max_rps,
        issue_write_interval=issue_write_interval,
        max_wait=max_wait,
        status_share=status_share,
    )


def booked_ahead(client: redis.Redis, *, service: str, base_url: str) -> float:
    """How far ahead, in seconds, the API's shared budget (its default lane's bucket, where a storm
    books) is booked: 0 when a call would go at once; near `SYNCER_RATE_LIMIT_MAX_WAIT_SECONDS`, calls
    are being turned away (`Throttled`). Raises `redis.RedisError` when Redis cannot say."""
    bucket = bucket_name(service, base_url)
    tat, (seconds, micros) = client.get(bucket), client.time()
    if tat is None:
        return 0.0
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return max(0.0, (float(tat) - now_ms) / 1000.0)
