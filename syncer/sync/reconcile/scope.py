"""Which links a run reads: what changed on either side since the last run, then the next slice of
the rolling full pass; or, for a full run, every link.

The changes (a few calls however many links there are):
- Jira: tickets in the policy's projects updated since the window's start (`JiraClient.updated_within`);
- Sentry: issues with events since then (a new event, a regression), read as the backfill reads
  Sentry (one search, or one per project where the organisation refuses multi-project reads);
- here: links whose row changed since then (a webhook applied, a repair made).

A change the change reads cannot see (a ticket deleted, or moved out of the policy's projects; an
issue resolved in Sentry whose webhook was lost) is found by the full pass: each run also reads the
next slice of links in id order, sized so that every link is read once in `reconcile.full_pass_hours`
at one run every `reconcile.interval_minutes`. Where the pass stands is stored (`store.reconcile`).

The window starts at the last run whose change reads all succeeded, less `SAFETY_MARGIN`; a run
whose change reads failed leaves that start where it was, so the next run reads the gap again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from syncer.core.issue import JiraTicket, SentryIssue
from syncer.errors import LockLost, SyncerError
from syncer.policy import Policy
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store import reconcile as cursors
from syncer.store.links import LinkRecord
from syncer.sync.reconcile.pages import Sides, link_pages, retrying
from syncer.sync.reconcile.report import Report

log = logging.getLogger(__name__)

# How far before the last run's start the window begins. Jira compares `updated` to the minute
# (a relative date counts whole minutes on Jira's own clock, which may differ from ours), and
# Cloud's search index trails a change by seconds to a minute: a change made just before the last
# run started may not have been searchable then. A few minutes cover all three with room; a change
# older than that which was still missed is the full pass's to find.
SAFETY_MARGIN = timedelta(minutes=5)

# Links looked up per statement by their tickets' or issues' ids.
LOOKUP_CHUNK = 500

Page = tuple[list[LinkRecord], Sides]
T = TypeVar("T")


def jira_projects(policy: Policy) -> list[str]:
    """The projects syncer files tickets into: the defaults' and every team's."""
    projects = {team.jira_project for team in policy.teams.values() if team.jira_project}
    if policy.defaults.jira_project:
        projects.add(policy.defaults.jira_project)
    return sorted(projects)


def slice_size(total: int, policy: Policy) -> int:
    """Links per run for the full pass to read every link once in `full_pass_hours`."""
    if total <= 0:
        return 0
    runs = max(1, (policy.reconcile.full_pass_hours * 60) // policy.reconcile.interval_minutes)
    return math.ceil(total / runs)


@dataclass
class Scope:
    """One run's reads, page by page (`pages`), and the cursor it leaves (`save`)."""

    rt: Runtime
    report: Report
    now: datetime
    full: bool

    def __post_init__(self) -> None:
        self._cursor = cursors.load(self.rt.engine)
        self._next = self._cursor
        self._checked: set[int] = set()

    def pages(self) -> Iterator[Page]:
        size = self.rt.policy.reconcile.batch_size
        if self.full:
            self.report.scope.mode = "full"
            for batch in link_pages(self.rt.engine, size):
                yield batch, Sides({}, {})
            self._next = replace(self._next, changes_read_at=self.now)
            return
        yield from self._changed(size)
        yield from self._slice(size)

    def save(self) -> None:
        """Record where the pass stands and where the next window starts (not on a dry run)."""
        if not self.report.dry_run and self._next != self._cursor:
            cursors.save(self.rt.engine, self._next)

    # ------------------------------------------------------------------ changes since the last run

    def _changed(self, size: int) -> Iterator[Page]:
        scope = self.report.scope
        last = self._cursor.changes_read_at
        # No run has read changes yet: the interval before this one is all a window can claim.
        interval = timedelta(minutes=self.rt.policy.reconcile.interval_minutes)
        start = last if last is not None else self.now - interval
        since = min(start, self.now) - SAFETY_MARGIN
        scope.changes_since = since
        tickets, issues, ok = self._read_changes(since)
        scope.changed_in_jira = len(tickets)
        scope.changed_in_sentry = len(issues)
        wanted: dict[int, LinkRecord] = {}
        for chunk in _chunks(sorted(tickets), LOOKUP_CHUNK):
            wanted.update((link.id, link) for link in links.active_for_tickets(self.rt.engine, chunk))
        for chunk in _chunks(sorted(issues), LOOKUP_CHUNK):
            wanted.update((link.id, link) for link in links.active_for_issues(self.rt.engine, chunk))
        for ids in _chunks(links.changed_since(self.rt.engine, since), LOOKUP_CHUNK):
            for link in links.active_by_ids(self.rt.engine, ids):
                if link.id not in wanted:
                    scope.changed_here += 1
                    wanted[link.id] = link
        scope.changed_links = len(wanted)
        unchecked = self.report.unchecked
        # Pages by what is already known of them, so that each page reads only the side it lacks:
        # a page of Jira's changes costs one Sentry read, a page of Sentry's one Jira read.
        groups: dict[tuple[bool, bool], list[LinkRecord]] = {}
        for link_id in sorted(wanted):
            link = wanted[link_id]
            key = ((link.jira_issue_id or "") in tickets, link.sentry_issue_id in issues)
            groups.setdefault(key, []).append(link)
        for group in groups.values():
            for batch in _chunks(group, size):
                known = Sides(
                    issues={k: issues[k] for link in batch if (k := link.sentry_issue_id) in issues},
                    tickets={k: tickets[k] for link in batch if (k := link.jira_issue_id or "") in tickets},
                )
                self._checked.update(link.id for link in batch)
                yield batch, known
        # A change read or a page of changes that failed leaves the window's start where it was.
        if ok and self.report.unchecked == unchecked:
            self._next = replace(self._next, changes_read_at=self.now)

    def _read_changes(self, since: datetime) -> tuple[dict[str, JiraTicket], dict[str, SentryIssue], bool]:
        """Both sides' changes in the window, and whether both reads succeeded."""
        rt = self.rt
        minutes = math.ceil((self.now - since).total_seconds() / 60)
        when = f"{since:%Y-%m-%d %H:%M}"
        found_tickets = self._read(
            f"Jira's tickets updated since {when}",
            lambda: rt.jira.updated_within(jira_projects(rt.policy), minutes),
        )
        found_issues = self._read(
            f"Sentry's issues seen since {when}", lambda: list(rt.sentry.iter_issues("", since=since))
        )
        tickets = {ticket.id: ticket for ticket in found_tickets or []}
        issues = {issue.id: issue for issue in found_issues or []}
        return tickets, issues, found_tickets is not None and found_issues is not None

    def _read(self, what: str, read: Callable[[], list[T]]) -> list[T] | None:
        """A change read, tried again on transient failures; None (reported) when it failed."""
        try:
            return retrying(what, read)
        except LockLost:
            raise
        except SyncerError as exc:
            self.report.errors.append(f"changes: could not read {what}: {exc}")
            log.error("reconcile: %s", self.report.errors[-1])
            return None

    # ------------------------------------------------------------------ the rolling full pass

    def _slice(self, size: int) -> Iterator[Page]:
        scope = self.report.scope
        engine = self.rt.engine
        want = slice_size(self.report.links_total, self.rt.policy)
        scope.slice_size = want
        after = self._cursor.after_link_id
        cycle_started = self._cursor.cycle_started_at if after else self.now
        scope.cycle_started_at = cycle_started
        taken = 0
        last = after
        while taken < want and (page := links.active_page(engine, after=last, size=min(size, want - taken))):
            taken += len(page)
            last = page[-1].id
            if scope.slice_first is None:
                scope.slice_first = page[0].id
            scope.slice_last = last
            scope.slice_links += len(page)
            batch = [link for link in page if link.id not in self._checked]
            if batch:
                yield batch, Sides({}, {})
        # The end of the table: the next run starts the next cycle from its beginning.
        wrapped = not links.active_page(engine, after=last, size=1)
        scope.slice_wrapped = wrapped
        self._next = replace(
            self._next,
            after_link_id=0 if wrapped else last,
            cycle_started_at=cycle_started,
        )


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])
