"""Team e-mail → Jira account, exactly (never by prefix), cached in the database.

Jira Cloud's user search is a prefix match (`alice@x` also finds `alice.smith@x`); the client
accepts only a single exact e-mail match. Misses are cached too, for a shorter time, so a typo in
the config does not cost a lookup per ticket; both are visible in the audit trail and metrics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select

from syncer.metrics import Metric
from syncer.runtime import Runtime
from syncer.store.engine import reading, session_scope
from syncer.store.schema import AccountCache, utcnow

HIT_TTL = timedelta(days=7)
MISS_TTL = timedelta(hours=1)


@dataclass(frozen=True)
class Assignee:
    account_id: str | None
    reason: str  # why there is no account, or "" when there is one


def resolve(rt: Runtime, email: str | None) -> Assignee:
    if not email:
        return Assignee(None, "no assignee configured")
    key = email.strip().lower()
    cached = _cached(rt, key)
    if cached is not None:
        return cached
    # One look-up per e-mail at a time in this process: a burst of new issues for one team would
    # otherwise send a `user/search` from every thread that missed the cache together.
    with _lock_for(key):
        cached = _cached(rt, key)
        if cached is not None:
            return cached
        now = utcnow()
        match = rt.jira.find_account(email)
        with session_scope(rt.engine) as session:
            row = session.get(AccountCache, key) or AccountCache(email=key)
            row.account_id = match.account_id
            row.reason = "" if match.account_id else match.reason[:500]
            row.resolved_at = now
            session.add(row)
    if match.account_id is None:
        rt.counters.incr(Metric.ASSIGNEE_UNRESOLVED)
    return Assignee(match.account_id, "" if match.account_id else match.reason)


def _cached(rt: Runtime, key: str) -> Assignee | None:
    with reading(rt.engine) as connection:
        row = connection.execute(_CACHED, {"b_email": key}).first()
    if row is None:
        return None
    ttl = HIT_TTL if row.account_id else MISS_TTL
    if utcnow() - row.resolved_at >= ttl:
        return None
    return Assignee(row.account_id, row.reason)


def _lock_for(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


_locks: dict[str, threading.Lock] = {}  # one per e-mail in the policy: a handful
_locks_guard = threading.Lock()
_account_cache: Any = AccountCache.__table__  # type: ignore[attr-defined]
_CACHED = select(_account_cache.c.account_id, _account_cache.c.reason, _account_cache.c.resolved_at).where(
    _account_cache.c.email == bindparam("b_email")
)
