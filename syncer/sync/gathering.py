"""Gathering new issues for a bulk create while Jira's budget is booked ahead (a release storm).

A ticket made alone costs three Jira calls (label search, create, remote link); a bulk create files
up to 50 in one, after one search for all their labels, so a storm costs a little over one call per
ticket: the remote links, which Jira cannot batch. A delivery gathered here holds nothing while it
waits: no claim (the filer takes it), its inbox row postponed without counting an attempt and due
again late enough that the sweeper hands it out only if no filer took it (the safety net), and its
id in a Redis sorted set, oldest first, that the filer (`syncer.sync.filing`) takes from.

Without a backlog (a few new issues at a time), nothing is gathered: a ticket is made at once,
alone, as before.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlsplit

import redis

from syncer import logs
from syncer.locks import filer_lock_key
from syncer.runtime import Runtime
from syncer.store import deliveries
from syncer.store.schema import utcnow

log = logs.get_logger(__name__)

# How many new issues' tickets must be in the making at once, each alone, for the next to be
# gathered instead: the two or three of one incident are made at once, as always, while in a burst
# (every worker thread busy making one) the rest are gathered; and once some are gathered (or a
# filer is at work), every new one is, until none is left, so the storm is filed in bulk.
GATHER_WHEN_CREATING = 3
CREATING_STALE_SECONDS = 120  # a worker killed mid-create leaves its mark; it counts no longer than this


def jira_host(rt: Runtime) -> str:
    return urlsplit(rt.settings.jira_url or "").netloc


def gathered_key(host: str) -> str:
    return f"syncer:gathered:{host}"


def creating_key(host: str) -> str:
    return f"syncer:creating:{host}"


def backlogged(rt: Runtime) -> bool:
    """Whether a new issue's ticket should wait for the filer: Jira's rate limit is on (the budget
    is what a bulk create saves), a filer can be started (a worker), and a storm is under way.
    Redis out of reach: no (made alone)."""
    settings = rt.settings
    if rt.redis is None or rt.file_gathered is None or settings.jira_max_rps <= 0 or not settings.jira_url:
        return False
    host = jira_host(rt)
    try:
        pipe = rt.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(creating_key(host), 0, time.time() - CREATING_STALE_SECONDS)
        pipe.zcard(creating_key(host))
        pipe.zcard(gathered_key(host))
        pipe.exists(filer_lock_key(host))
        _, creating, gathered, filing = pipe.execute()
    except redis.RedisError:
        return False
    return int(creating) >= GATHER_WHEN_CREATING or int(gathered) > 0 or bool(filing)


@contextmanager
def creating(rt: Runtime) -> Iterator[None]:
    """Around a new issue's ticket made alone: how many are in the making is what `backlogged`
    counts."""
    if rt.redis is None or rt.file_gathered is None or rt.settings.jira_max_rps <= 0:
        yield
        return
    key, token = creating_key(jira_host(rt)), uuid.uuid4().hex
    try:
        rt.redis.zadd(key, {token: time.time()})
    except redis.RedisError:
        yield
        return
    try:
        yield
    finally:
        try:
            rt.redis.zrem(key, token)
        except redis.RedisError:
            pass  # stale after CREATING_STALE_SECONDS


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
