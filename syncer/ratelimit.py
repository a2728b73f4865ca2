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

Status work goes first (`syncer.lanes`). One bucket keeps the host's rate for everything, but the
default lane's deliveries (creates, edits, comments) may book only
`SYNCER_RATE_LIMIT_DEFAULT_LANE_AHEAD_SECONDS` ahead of now, while the status lane (and work outside
any delivery, such as a reconcile run) books up to `SYNCER_RATE_LIMIT_MAX_WAIT_SECONDS` as before. So
however long a storm's backlog, the bucket is never booked further than that short horizon by
creates, and a status change's call (a transition, Sentry's status update) finds its turn within
about that long: it is booked right behind the creates already sleeping for theirs, ahead of every
create not yet booked. Nothing is ever sent faster than the host's rate, and when no status work
comes the default lane still has the whole rate: it gives nothing up but the depth it may book.

Off by default (the horizon is the max wait, and every lane books alike): each refused call takes
a new place at the end of the line, so in a long storm a create whose later call (its remote link
after its create) is refused goes to the back again, and a backlog of a thousand outgrew the line's
drain in a bench run. Until places are held per delivery, the status lane's precedence is the
queue order alone (`syncer.lanes`), and this horizon is for experiments.

A default-lane call that finds the horizon full is not simply sent back to try again (a thousand
creates retrying every second would cost more than the calls): it is given a place in the lane's
line (a second timestamp, one interval per place, never behind the bucket) and told to come back
when its place is within the horizon (`InLine`, its wait exact, not spread by jitter). Status calls
booked meanwhile push the bucket past some places; those calls find the horizon full again and take
a new place at the end: the creates give way, the rate stays whole.

If Redis cannot be reached, the limiter steps aside for a while (fails open): a missing rate limit
costs at worst a 429, which the retry path handles; a stalled worker costs more.

The clients know only the `Throttle` protocol (`before` and `after` one HTTP request); with no
limit configured they get none and make no extra call at all.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

import redis

from syncer import lanes
from syncer.errors import WRITES, InLine, Throttled, retry_after_seconds

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

# The default lane's turn: KEYS[1]: the bucket; KEYS[2]: the lane's line. ARGV[1]: the emission
# interval in ms. ARGV[2]: how far ahead of now the lane may book, in ms. Returns {1, wait_ms} with the
# turn reserved, or {0, come_back_ms} with a place in line taken (the bucket untouched).
_TAKE_IN_LINE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, ahead = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat - now <= ahead then
  local next_tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor(next_tat - now) + 1000)
  return {1, tat - now}
end
local place = tonumber(redis.call('GET', KEYS[2])) or tat
if place < tat then place = tat end
local next_place = place + interval
redis.call('SET', KEYS[2], string.format('%.0f', next_place), 'PX', math.floor(next_place - now) + 1000)
return {0, math.max(place - now - ahead, 0)}
"""

# KEYS[1]: the bucket; KEYS[2], optional: its hold. ARGV[1]: ms from now before which no turn is given
# (the server's Retry-After).
_HOLD = """
if KEYS[2] then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
if hold > tat then
  redis.call('SET', KEYS[1], string.format('%.0f', hold), 'PX', math.floor(hold - now) + 1000)
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


class RateLimiter:
    """One API host's shared budget, and (Jira) per-ticket write spacing."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        service: str,
        base_url: str,
        max_rps: float,
        issue_write_interval: float = 0.0,
        max_wait: float = 10.0,
        default_lane_ahead: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.bucket = bucket_name(service, base_url)
        self._interval_ms = round(1000.0 / max_rps) if max_rps > 0 else 0
        self._issue_interval_ms = round(issue_write_interval * 1000.0)
        self._max_wait_ms = round(max_wait * 1000.0)
        self._default_ahead_ms = round(min(default_lane_ahead, max_wait) * 1000.0)
        self._take = client.register_script(_TAKE)
        self._take_in_line = client.register_script(_TAKE_IN_LINE)
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
        if self._interval_ms:
            if lanes.current() is lanes.Lane.DEFAULT and self._default_ahead_ms < self._max_wait_ms:
                self._wait_in_line()
            else:  # the status lane, and work outside any delivery (a reconcile run, a command)
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
        bucket = f"{self.bucket}:issue:{ref}" if per_issue else self.bucket
        keys = [bucket, f"{bucket}:held"] if per_issue else [bucket]
        hold_ms = round(min(wait, MAX_PENALTY_SECONDS) * 1000.0)
        if self._available():
            try:
                self._hold(keys=keys, args=[hold_ms])
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
        if not int(granted):
            raise Throttled(
                f"{self.service}: client-side rate limit for {what}: next turn in {wait:.1f}s",
                retry_after=wait,
            )
        if wait > 0:
            self._sleep(wait)

    def _wait_in_line(self) -> None:
        """The default lane's turn at the host: within the lane's horizon, or a place in its line."""
        if not self._available():
            return
        try:
            granted, wait_ms = self._take_in_line(keys=[self.bucket, f"{self.bucket}:line"],
                                                  args=[self._interval_ms, self._default_ahead_ms])
        except redis.RedisError as exc:
            self._step_aside(exc)
            return
        wait = int(wait_ms) / 1000.0
        if not int(granted):
            raise InLine(f"{self.service}: client-side rate limit: the default lane's place in line "
                         f"comes in {wait:.1f}s (status changes go first)", retry_after=wait)
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
    default_lane_ahead: float = 10.0,
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
        default_lane_ahead=default_lane_ahead,
    )


def booked_ahead(client: redis.Redis, *, service: str, base_url: str) -> float:
    """How far ahead, in seconds, the API's shared budget is booked: 0 when a call would go at once;
    near `SYNCER_RATE_LIMIT_MAX_WAIT_SECONDS`, calls are being turned away (`Throttled`). Raises
    `redis.RedisError` when Redis cannot say."""
    bucket = bucket_name(service, base_url)
    tat, (seconds, micros) = client.get(bucket), client.time()
    if tat is None:
        return 0.0
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return max(0.0, (float(tat) - now_ms) / 1000.0)
