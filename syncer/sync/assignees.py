"""A person (an e-mail from the policy or from Sentry) → the Jira account Jira will accept as assignee
in one project, cached in the database per project.

The person's `[people]` entry is tried first (its account is checked, not searched for); without
one, the project's assignable-users search, exactly (never by prefix). Misses are cached too, for a
shorter time, so a typo in the config does not cost a lookup per ticket. A miss never stops a
ticket: it is filed unassigned, and why is in the audit trail and in the metrics.
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
REFUSED = "refused"  # the problem of an account Jira refused on create or assign


@dataclass(frozen=True)
class Assignee:
    account_id: str | None
    reason: str  # why there is no account, or "" when there is one
    problem: str = ""  # syncer.jira.client.PROBLEMS when there is no account


ANYWHERE = "*"  # the cache's project for a person looked up site-wide (user fields, not assignees)


def resolve(rt: Runtime, email: str | None, project: str | None) -> Assignee:
    """The account to assign `email` in Jira project `project`, or why there is none. `project`
    None: the person's account anywhere on the site, for a user field that needs no assignability;
    a [people] entry is then taken as it is."""
    if not email:
        return Assignee(None, "no assignee configured")
    key = email.strip().lower()
    person = rt.policy.directory.by_email(key)
    if project is None and person is not None:
        return Assignee(person.jira, "")
    project = project or ANYWHERE
    expected = person.jira if person is not None else None
    cached = _cached(rt, project, key, expected)
    if cached is not None:
        return cached
    # One look-up per person and project at a time in this process: a burst of new issues for one
    # team would otherwise send a search from every thread that missed the cache together.
    with _lock_for(project, key):
        cached = _cached(rt, project, key, expected)
        if cached is not None:
            return cached
        now = utcnow()
        if project == ANYWHERE:
            match = rt.jira.find_account(email)
        elif person is not None:
            match = rt.jira.check_assignable(project, person.jira)
        else:
            match = rt.jira.find_assignable(project, email)
        found = match.account_id is not None
        accounts.remember(rt.engine, project, key, account_id=match.account_id, at=now,
                          problem="" if found else match.problem, reason="" if found else match.reason)
    if not found:
        rt.counters.incr(Metric.ASSIGNEE_UNRESOLVED, problem=match.problem)
    return Assignee(match.account_id, "" if found else match.reason, "" if found else match.problem)


def refused(exc: PermanentError) -> str | None:
    """Jira's words when a create or assign was refused for its assignee alone (the user was
    deactivated, or lost the project's Assignable User permission, after the cache learnt the
    account): a 400 whose only field error is `assignee`. None for any other failure."""
    if not isinstance(exc, FieldsRefused) or set(exc.fields) != {"assignee"}:
        return None
    return exc.fields["assignee"]


def forget(rt: Runtime, email: str, project: str) -> None:
    """Jira refused the cached account: the next ticket of the team looks the person up afresh
    instead of being refused for the rest of the cache entry's week."""
    accounts.forget(rt.engine, project, email.strip().lower())


def left_unassigned(rt: Runtime, problem: str) -> None:
    """Count a ticket filed (or kept) without the assignee the policy or Sentry asked for."""
    rt.counters.incr(Metric.TICKETS_UNASSIGNED, problem=problem or "unknown")


def _cached(rt: Runtime, project: str, key: str, expected: str | None) -> Assignee | None:
    """The cached answer, unless it is too old or names another account than [people] does now."""
    row = accounts.cached(rt.engine, project, key)
    if row is None or (expected is not None and row.account_id not in (None, expected)):
        return None
    ttl = HIT_TTL if row.account_id else MISS_TTL
    if utcnow() - row.resolved_at >= ttl:
        return None
    return Assignee(row.account_id, row.reason, row.problem)


def _lock_for(project: str, key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((project, key), threading.Lock())


_locks: dict[tuple[str, str], threading.Lock] = {}  # one per person and project in the policy: a handful
_locks_guard = threading.Lock()
