"""Pages of links, and both sides' current state for a page: one request to each side, at once.

A read that fails transiently is tried again a few times (`READS`, a `syncer.retry.RetryPolicy`:
never sooner than the server asked); one that keeps failing is the caller's to report, and the run
goes on with the next page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from sqlalchemy.engine import Engine

from syncer.core.issue import JiraTicket, SentryIssue
from syncer.errors import TransientError
from syncer.retry import RetryPolicy
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import LinkRecord

log = logging.getLogger(__name__)

# A page's reads, within one run that other pages wait on: a few quick tries, then the next page.
READS = RetryPolicy(attempts=4, base=1.0, cap=30.0)

T = TypeVar("T")


@dataclass
class Sides:
    """A page's issues by Sentry id and tickets by Jira id; a missing one is gone from its side."""

    issues: dict[str, SentryIssue]
    tickets: dict[str, JiraTicket]


def link_pages(engine: Engine, size: int) -> Iterator[list[LinkRecord]]:
    """Active links in id order, `size` at a time (keyset pages: no page holds more than `size`)."""
    after = 0
    while batch := links.active_page(engine, after=after, size=size):
        yield batch
        after = batch[-1].id


def read_sides(
    rt: Runtime, batch: Sequence[LinkRecord], pool: ThreadPoolExecutor, known: Sides | None = None
) -> Sides:
    """Both sides of a page of links: Jira's search runs in `pool` while Sentry's runs here. What
    `known` already holds (read by the run's change reads) is not read again: a side the whole page
    is known on costs no call."""
    known = known or Sides({}, {})
    ticket_ids = [
        link.jira_issue_id for link in batch
        if link.jira_issue_id and link.jira_issue_id.isdigit() and link.jira_issue_id not in known.tickets
    ]
    gone: set[str] = set()  # ids Jira's search named as nonexistent: deleted, no direct read needed
    pending = (
        pool.submit(retrying, "Jira search", lambda: rt.jira.tickets_by_ids(ticket_ids, missing=gone))
        if ticket_ids else None
    )
    wanted = [link for link in batch if link.sentry_issue_id not in known.issues]
    try:
        # Each link knows its issue's project: an organisation without multi-project reads is asked
        # one project at a time (one request per project in the page).
        projects = {link.sentry_issue_id: link.sentry_project for link in wanted}
        issues = (
            retrying("Sentry issues", lambda: rt.sentry.issues_by_ids(list(projects), projects=projects))
            if projects else []
        )
    finally:
        if pending is not None:
            wait([pending])  # never leave a read running into the next page
    by_id = {issue.id: issue for issue in issues}
    for link in wanted:
        if link.sentry_issue_id not in by_id:
            # Left out of the list: deleted (a direct read answers 404), or merged into another
            # issue (a direct read answers that one, which the old id keeps following).
            issue = retrying("Sentry issue", partial(rt.sentry.find_issue, link.sentry_issue_id))
            if issue is not None:
                by_id[link.sentry_issue_id] = issue
    found = {ticket.id: ticket for ticket in pending.result()} if pending is not None else {}
    for ticket_id in ticket_ids:
        if ticket_id not in found and ticket_id not in gone:
            # Not named by Jira as nonexistent, yet not returned: too new for Cloud's search index, or
            # deleted: only a direct read can tell.
            ticket = retrying("Jira issue", partial(rt.jira.get_ticket, ticket_id))
            if ticket is not None:
                found[ticket.id] = ticket
    return Sides(issues={**known.issues, **by_id}, tickets={**known.tickets, **found})


def retrying(what: str, read: Callable[[], T]) -> T:
    """A read, tried again on transient failures as `READS` says."""

    def retrying(exc: TransientError, pause: float) -> None:
        log.warning("reconcile: %s: %s; trying again in %.1fs", what, exc, pause)

    return READS.call(read, on_retry=retrying)
