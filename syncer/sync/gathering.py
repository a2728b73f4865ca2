"""Gathering new issues for a bulk create while Jira's budget is booked ahead (a release storm).

A ticket made alone costs three Jira calls (label search, create, remote link); a bulk create files
up to 50 in one, after one search for all their labels, so a storm costs a little over one call per
ticket: the remote links, which Jira cannot batch. A delivery gathered here holds nothing while it
waits: no claim (the filer takes it), its inbox row postponed without counting an attempt and due
again late enough that the sweeper hands it out only if no filer took it (the safety net), and its
id in a Redis sorted set, oldest first, that the filer (`syncer.sync.filing`) takes from.

When the budget is not booked ahead (no backlog), nothing is gathered: a ticket is made at once,
alone, as before.
"""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlsplit

import redis

from syncer import logs, ratelimit
from syncer.locks import filer_lock_key
from syncer.runtime import Runtime
from syncer.store import deliveries
from syncer.store.schema import utcnow

log = logs.get_logger(__name__)

# How far ahead Jira's budget must be booked for a new issue to be gathered rather than made alone:
# a few calls' worth, so a trickle of new issues (a ticket's three calls every so often) never waits
# for a filer, while in a burst all but the first few are gathered.
GATHER_AHEAD_SECONDS = 0.5


def jira_host(rt: Runtime) -> str:
    return urlsplit(rt.settings.jira_url or "").netloc


def gathered_key(host: str) -> str:
    return f"syncer:gathered:{host}"


def backlogged(rt: Runtime) -> bool:
    """Whether a new issue's ticket should wait for the filer: Jira's rate limit is on, a filer can
    be started (a worker), and the budget is booked ahead. Redis out of reach: no (made alone)."""
    settings = rt.settings
    if rt.redis is None or rt.file_gathered is None or settings.jira_max_rps <= 0 or not settings.jira_url:
        return False
    try:
        ahead = ratelimit.booked_ahead(rt.redis, service="jira", base_url=settings.jira_url)
    except redis.RedisError:
        return False
    return ahead >= GATHER_AHEAD_SECONDS


def gather(rt: Runtime, delivery_id: int, note: str) -> None:
    """Leave the delivery for the filer, and start one unless one is running (which looks for
    more after it lets go of its lock, so an id added while it finishes is not missed)."""
    assert rt.redis is not None and rt.file_gathered is not None
    safety = timedelta(seconds=rt.settings.sweep_after_seconds)
    deliveries.postpone(rt.engine, delivery_id, until=utcnow() + safety, error=note, counted=False)
    host = jira_host(rt)
    rt.redis.zadd(gathered_key(host), {str(delivery_id): time.time()}, nx=True)
    if not rt.redis.exists(filer_lock_key(host)):
        rt.file_gathered()


def take(rt: Runtime, count: int) -> list[int]:
    """Up to `count` gathered deliveries, oldest first, no longer gathered."""
    assert rt.redis is not None
    popped: list[tuple[bytes, float]] = rt.redis.zpopmin(gathered_key(jira_host(rt)), count)  # type: ignore[assignment]
    return [int(member) for member, _score in popped]


def waiting(rt: Runtime) -> int:
    assert rt.redis is not None
    return int(rt.redis.zcard(gathered_key(jira_host(rt))))
