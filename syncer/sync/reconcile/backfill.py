"""The backfill: unresolved Sentry issues first seen within `reconcile.lookback_hours` that a route
sends to Jira and that have no link get their ticket through `tickets.create_or_link` (exactly
once holds: a late webhook for the same issue meets the same claim)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from syncer import logs
from syncer.core import drift
from syncer.core.issue import SentryIssue
from syncer.core.routing import Decision, decide
from syncer.errors import Busy, LockLost, SyncerError
from syncer.locks import Renew
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store import slack as slack_messages
from syncer.sync import slack, tickets
from syncer.sync.reconcile.report import BackfillResult, BackfillRow, Report

log = logging.getLogger(__name__)

T = TypeVar("T")


def backfill(rt: Runtime, report: Report, *, now: datetime, renew: Renew, installation_uuid: str) -> None:
    hours = rt.policy.reconcile.lookback_hours
    report.backfill_window_hours = hours
    since = drift.lookback_start(now, hours)
    if since is None:
        return
    done = _window(rt, report, since=since, renew=renew, installation_uuid=installation_uuid)
    _idle_claims(rt, report, now=now, done=done, renew=renew, installation_uuid=installation_uuid)


def _window(
    rt: Runtime, report: Report, *, since: datetime, renew: Renew, installation_uuid: str
) -> set[str]:
    """Unlinked issues first seen in the window; the ids it looked at."""
    done: set[str] = set()
    with _reading(report, "list Sentry's issues"):
        for page in _chunks(
            # The search's own range is the window (up to the moment it is sent), never Sentry's
            # 90-day default: the policy keeps the window within those 90 days.
            rt.sentry.iter_issues(drift.backfill_query(since), since=since),
            rt.policy.reconcile.batch_size,
        ):
            in_window = [issue for issue in page if drift.in_lookback(issue.first_seen, since)]
            report.backfill_seen += len(in_window)
            # Any link row counts, broken or unlinked too: those were a person's decision, or Jira's,
            # that the backfill must not undo.
            known = links.issues_with_links(rt.engine, [issue.id for issue in in_window])
            for issue in in_window:
                done.add(issue.id)
                if issue.id not in known:
                    with logs.bound(cause=report.cause, sentry_issue_id=issue.id):
                        _backfill_one(rt, report, issue, installation_uuid)
            renew()
    return done


def _idle_claims(
    rt: Runtime, report: Report, *, now: datetime, done: set[str], renew: Renew, installation_uuid: str
) -> None:
    """Issues whose ticket was claimed and never made, however old: the claim's delivery is a dead
    letter, or waits for its next retry. Its issue has no ticket, which the window alone would miss
    once the issue is older than it. The backfill's claim takes the idle one over."""
    before = now - timedelta(seconds=rt.settings.claim_ttl_seconds)
    after = 0
    with _reading(report, "read the issues of idle claims"):
        while page := links.idle_claims_page(
            rt.engine, claimed_before=before, after=after, size=rt.policy.reconcile.batch_size
        ):
            after = page[-1].id
            wanted = {c.sentry_issue_id: c.sentry_project for c in page if c.sentry_issue_id not in done}
            for issue in rt.sentry.issues_by_ids(list(wanted), projects=wanted):
                done.add(issue.id)
                if issue.status in ("", "unresolved"):
                    _backfill_one(rt, report, issue, installation_uuid)
            renew()


@contextmanager
def _reading(report: Report, what: str) -> Iterator[None]:
    """A failed read of Sentry ends this part of the backfill, reported; a lost run lock ends the run."""
    try:
        yield
    except LockLost:
        raise
    except SyncerError as exc:
        report.errors.append(f"backfill: could not {what}: {exc}")
        log.error("reconcile: %s", report.errors[-1])


def _backfill_one(rt: Runtime, report: Report, issue: SentryIssue, installation_uuid: str) -> None:
    try:
        # Keyed by the issue's last event, tags last the lookback window: an issue a route ignores by
        # its tags (4xx) is seen on every run, and its tags change only with a new event.
        route = decide(
            issue,
            rt.policy,
            lambda: tickets.tags_for(
                rt, issue.id, as_of=issue.last_seen, ttl=rt.policy.reconcile.lookback_hours * 3600
            ),
        )
    except SyncerError as exc:
        report.backfill.append(
            BackfillRow(
                sentry_issue_id=issue.id,
                short_id=issue.short_id,
                first_seen=_when(issue.first_seen),
                route="?",
                team="-",
                project="?",
                result=BackfillResult.FAILED,
                detail=f"routing needs its tags: {exc}",
            )
        )
        return
    if not route.files_ticket:  # ignored, or left to a person in Slack (notify)
        report.backfill_ignored += 1
        missing = route.action == "notify" and slack_messages.load(rt.engine, issue.id) is None
        if missing and not report.dry_run:
            # Its webhook was lost: the team's channel hears of it now, as it would have then.
            slack.on_routed(rt, issue, route)
        return
    assert route.target is not None  # files_ticket says so
    project = route.target.jira_project
    if report.dry_run:
        result, detail = BackfillResult.WOULD, f"create or link its ticket in {project}"
    else:
        result, detail = _create_or_link(rt, report, issue, route, installation_uuid)
    report.backfill.append(
        BackfillRow(
            sentry_issue_id=issue.id,
            short_id=issue.short_id,
            first_seen=_when(issue.first_seen),
            route=route.route_name,
            team=route.team or "-",
            project=project,
            result=result,
            detail=detail,
        )
    )


def _create_or_link(
    rt: Runtime, report: Report, issue: SentryIssue, route: Decision, installation_uuid: str
) -> tuple[BackfillResult, str]:
    try:
        outcome = tickets.create_or_link(
            rt, issue, route, installation_uuid=installation_uuid, cause=report.cause
        )
    except Busy as exc:
        # Its webhook's delivery holds the claim: ordinary traffic, not a failure.
        return BackfillResult.SKIPPED, f"{exc}; the next run looks again"
    except (SyncerError, SQLAlchemyError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        log.warning("reconcile: backfill of sentry issue %s: %s", issue.id, detail)
        return BackfillResult.FAILED, detail
    if outcome.ignored:
        return BackfillResult.NOTHING, outcome.note
    return (
        BackfillResult.LINKED if outcome.note.startswith("linked") else BackfillResult.CREATED
    ), outcome.note


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "?"
