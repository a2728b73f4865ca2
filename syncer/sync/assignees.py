"""Team e-mail → Jira account, exactly (never by prefix), cached in the database.

Jira Cloud's user search is a prefix match (`alice@x` also finds `alice.smith@x`); the client
accepts only a single exact e-mail match. Misses are cached too, for a shorter time, so a typo in
the config does not cost a lookup per ticket; both are visible in the audit trail and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from syncer.db.models import AccountCache, utcnow
from syncer.db.session import session_scope
from syncer.runtime import Runtime

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
    now = utcnow()
    with session_scope(rt.engine) as session:
        cached = session.get(AccountCache, key)
        if cached is not None:
            ttl = HIT_TTL if cached.account_id else MISS_TTL
            if now - cached.resolved_at < ttl:
                return Assignee(cached.account_id, cached.reason)
    match = rt.jira.find_account(email)
    with session_scope(rt.engine) as session:
        row = session.get(AccountCache, key) or AccountCache(email=key)
        row.account_id = match.account_id
        row.reason = "" if match.account_id else match.reason[:500]
        row.resolved_at = now
        session.add(row)
    if match.account_id is None:
        rt.counters.incr("syncer_assignee_unresolved_total")
    return Assignee(match.account_id, "" if match.account_id else match.reason)
