"""Team e-mail → Jira account, exactly (never by prefix), cached in the database.

Jira Cloud's user search is a prefix match (`alice@x` also finds `alice.smith@x`); the client
accepts only a single exact e-mail match. Misses are cached too, for a shorter time, so a typo in
the config does not cost a lookup per ticket; both are visible in the audit trail and metrics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

from syncer.errors import PermanentError
from syncer.jira.client import FieldsRefused
from syncer.metrics import Metric
from syncer.runtime import Runtime
from syncer.store import accounts
from syncer.store.schema import utcnow

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
        accounts.remember(rt.engine, key, account_id=match.account_id,
                          reason="" if match.account_id else match.reason, at=now)
    if match.account_id is None:
        rt.counters.incr(Metric.ASSIGNEE_UNRESOLVED)
    return Assignee(match.account_id, "" if match.account_id else match.reason)


def refused(exc: PermanentError) -> str | None:
    """Jira's words when a create or assign was refused for its assignee alone (the user was
    deactivated, or lost the project's Assignable User permission, after the cache learnt the
    account): a 400 whose only field error is `assignee`. None for any other failure."""
    if not isinstance(exc, FieldsRefused) or set(exc.fields) != {"assignee"}:
        return None
    return exc.fields["assignee"]


def forget(rt: Runtime, email: str) -> None:
    """Jira refused the cached account: the next ticket of the team looks the e-mail up afresh
    instead of being refused for the rest of the cache entry's week."""
    accounts.forget(rt.engine, email.strip().lower())


def _cached(rt: Runtime, key: str) -> Assignee | None:
    row = accounts.cached(rt.engine, key)
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
