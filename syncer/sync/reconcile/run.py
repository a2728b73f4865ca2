"""Reconciliation: the guarantee behind every webhook promise.

Webhooks get lost (Sentry tries a delivery three times, deployments and outages drop them, a change
made by another tool may emit nothing). A run:

1. takes the deployment-wide run lock (`syncer.locks.run_lock`, renewed as it goes), or stops with
   `Busy` naming the holder: two beats started by mistake, or a person running `syncer reconcile`
   during the scheduled run, cannot both repair;
2. streams the active links from the database in keyset pages (memory stays flat in the number of
   links), reads both sides of each page with one request each (Jira `id in (...)`, Sentry by
   `group=` ids), asks `syncer.core.drift` what drifted, and repairs through the functions the
   webhook handlers use (`inbound.apply_inbound`, `outbound.apply_outbound`, `mark_broken`,
   `save_link`), under the link's lock, after checking that no webhook moved the link meanwhile;
3. backfills: unresolved Sentry issues first seen within `reconcile.lookback_hours` that match a
   route and have no link get their ticket through `tickets.create_or_link` (exactly once holds: a
   late webhook for the same issue meets the same claim);
4. sweeps: re-enqueues inbox deliveries that were stored but never processed, and retries dead
   letters older than `reconcile.dead_letter_retry_after_hours`, once per run, at most
   `reconcile.dead_letter_retry_cap` of them.

`dry_run` reads everything and writes nothing: neither side, nor the database, nor the broker.

API calls: 2 per page of links (one to each side), plus one for each ticket the page's search did
not return (a direct read, before a ticket is called deleted: Cloud's search lags behind new
tickets), plus what each repair costs through the shared apply functions.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from syncer.core import drift
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.core.routing import decide
from syncer.errors import Busy, LockLost, SyncerError, TransientError
from syncer.locks import link_lock, run_lock
from syncer.retry import backoff_seconds
from syncer.runtime import Runtime
from syncer.store import deadletters, deliveries
from syncer.store.schema import DeadLetter, Delivery, Link, LinkState, utcnow
from syncer.sync import inbound, outbound, tickets
from syncer.sync.outcome import Outcome

log = logging.getLogger(__name__)

READ_ATTEMPTS = 4  # a page's read that keeps failing is reported, and the run goes on
READ_BACKOFF_CAP_SECONDS = 30.0
# A delivery that died this many times is left to a person (`syncer dead-letters`).
AUTO_RETRIES_PER_DELIVERY = 2

Enqueue = Callable[[int], None]
T = TypeVar("T")


# --- what a run found and did ---------------------------------------------------------------------


@dataclass
class Row:
    """One drifted link: a line of the drift table."""

    link_id: int
    sentry_issue_id: str
    jira_key: str
    jira_state: str
    sentry_state: str
    stored_state: str
    kind: str
    action: str
    reason: str
    result: str = ""  # would | repaired | recorded | left | skipped | failed
    detail: str = ""


@dataclass
class BackfillRow:
    """An unlinked issue in the lookback window that a route sends to Jira."""

    sentry_issue_id: str
    short_id: str
    first_seen: str
    route: str
    team: str
    project: str
    result: str = ""  # would | created | linked | failed | nothing
    detail: str = ""


@dataclass
class Sweep:
    overdue: int = 0  # inbox rows stored, never processed in time
    requeued: int = 0
    dead_letters: int = 0  # old enough to be retried now
    retried: int = 0
    note: str = ""


@dataclass
class Report:
    run: str
    dry_run: bool
    started_at: datetime
    links_total: int = 0  # active links when the run started
    links_checked: int = 0
    unchecked: int = 0  # links of pages that could not be read
    drift: Counter[str] = field(default_factory=Counter)
    drifted: int = 0
    rows: list[Row] = field(default_factory=list)  # at most `keep_rows` of them
    keep_rows: int | None = None
    rows_omitted: int = 0
    would: int = 0  # dry run: links it would repair
    repaired: int = 0
    recorded: int = 0
    skipped: int = 0
    failed: int = 0
    backfill_window_hours: int = 0
    backfill_seen: int = 0  # issues in the window
    backfill_ignored: int = 0  # unlinked, but their route ignores them
    backfill: list[BackfillRow] = field(default_factory=list)
    sweep: Sweep = field(default_factory=Sweep)
    errors: list[str] = field(default_factory=list)
    api_calls: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0

    def add(self, row: Row) -> None:
        self.drifted += 1
        if self.keep_rows is None or len(self.rows) < self.keep_rows:
            self.rows.append(row)
        else:
            self.rows_omitted += 1

    @property
    def backfill_failed(self) -> int:
        return sum(1 for row in self.backfill if row.result == "failed")

    @property
    def backfilled(self) -> int:
        return sum(1 for row in self.backfill if row.result in ("created", "linked"))

    @property
    def ok(self) -> bool:
        """In sync, or repaired: nothing failed and every link was read."""
        return not (self.failed or self.backfill_failed or self.unchecked or self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "links": {
                "active": self.links_total,
                "checked": self.links_checked,
                "unchecked": self.unchecked,
                "drifted": self.drifted,
                "repaired": self.repaired,
                "recorded": self.recorded,
                "skipped": self.skipped,
                "failed": self.failed,
            },
            "drift_by_kind": dict(sorted(self.drift.items())),
            "drift": [vars(row) for row in self.rows],
            "drift_rows_omitted": self.rows_omitted,
            "backfill": {
                "window_hours": self.backfill_window_hours,
                "issues_in_window": self.backfill_seen,
                "ignored_by_route": self.backfill_ignored,
                "backfilled": self.backfilled,
                "failed": self.backfill_failed,
                "issues": [vars(row) for row in self.backfill],
            },
            "sweep": vars(self.sweep),
            "api_calls": self.api_calls,
            "errors": self.errors,
        }


Progress = Callable[[Report], None]


# --- the run --------------------------------------------------------------------------------------


def run(
    rt: Runtime,
    *,
    dry_run: bool = False,
    enqueue: Enqueue | None = None,
    progress: Progress | None = None,
    keep_rows: int | None = None,
) -> Report:
    """One reconciliation. Raises `Busy` when another run holds the lock. `enqueue` hands a delivery
    to the broker (the sweep); without it, nothing is re-enqueued. `progress` is called after every
    page of links. `keep_rows` caps the drift rows kept in the report (the counts stay whole), for
    callers that need no table: after an outage every link may have drifted."""
    started = time.monotonic()
    now = utcnow()
    report = Report(
        run=f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
        dry_run=dry_run,
        started_at=now,
        keep_rows=keep_rows,
    )
    own = rt.with_own_clients()  # their request counts are this run's API calls
    try:
        with run_lock(rt) as renew:
            installation = _installation_uuid(own)
            try:
                _check_links(
                    own, report, now=now, renew=renew, progress=progress, installation_uuid=installation
                )
                _backfill(own, report, now=now, renew=renew, installation_uuid=installation)
                _sweep(own, report, now=now, enqueue=enqueue)
            except LockLost as exc:
                report.errors.append(str(exc))
                log.error("reconcile: %s", exc)
    except Busy:
        if not dry_run:
            rt.counters.incr("syncer_reconcile_runs_total", result="busy")
        raise
    finally:
        report.api_calls = {"sentry": own.sentry.requests_made, "jira": own.jira.requests_made}
        own.sentry.close()
        report.duration_seconds = time.monotonic() - started
    if not dry_run:
        _record_metrics(rt, report)
    log.info("reconcile %s: %s", report.run, summary(report))
    return report


def _cause(report: Report) -> str:
    return f"reconcile:{report.run}"


# --- linked pairs ---------------------------------------------------------------------------------


def _check_links(
    rt: Runtime,
    report: Report,
    *,
    now: datetime,
    renew: Callable[[], None],
    progress: Progress | None,
    installation_uuid: str,
) -> None:
    report.links_total = count_active_links(rt)
    size = rt.policy.reconcile.batch_size
    # Jira's page is read in this thread while Sentry's is read in the caller's: both sides at once.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-jira") as pool:
        for batch in active_links(rt, size):
            try:
                issues, found = _read_pages(rt, batch, pool)
            except SyncerError as exc:
                report.unchecked += len(batch)
                report.errors.append(f"links {batch[0].id}-{batch[-1].id}: could not read both sides: {exc}")
                log.error("reconcile: %s", report.errors[-1])
                continue
            for link in batch:
                report.links_checked += 1
                _check(
                    rt,
                    report,
                    link,
                    issues.get(link.sentry_issue_id),
                    found.get(link.jira_issue_id or ""),
                    now=now,
                    installation_uuid=installation_uuid,
                )
            renew()
            if progress is not None:
                progress(report)


def count_active_links(rt: Runtime) -> int:
    with Session(rt.engine) as session:
        return int(
            session.exec(select(func.count()).select_from(Link).where(Link.state == LinkState.ACTIVE)).one()
        )


def active_links(rt: Runtime, size: int) -> Iterator[list[Link]]:
    """Active links in id order, `size` at a time (keyset pages: no page holds more than `size`)."""
    after = 0
    while True:
        with Session(rt.engine, expire_on_commit=False) as session:
            batch = list(
                session.exec(
                    select(Link)
                    .where(Link.state == LinkState.ACTIVE, col(Link.id) > after)
                    .order_by(col(Link.id))
                    .limit(size)
                )
            )
        if not batch:
            return
        yield batch
        assert batch[-1].id is not None
        after = batch[-1].id


def _read_pages(
    rt: Runtime, batch: Sequence[Link], pool: ThreadPoolExecutor
) -> tuple[dict[str, SentryIssue], dict[str, JiraTicket]]:
    """Both sides' current state for a page of links: one request to each, at the same time."""
    ticket_ids = [link.jira_issue_id for link in batch if link.jira_issue_id and link.jira_issue_id.isdigit()]
    gone: set[str] = set()  # ids Jira's search named as nonexistent: deleted, no direct read needed
    pending = pool.submit(_retrying, "Jira search", lambda: rt.jira.tickets_by_ids(ticket_ids, missing=gone))
    try:
        issues = _retrying(
            "Sentry issues", lambda: rt.sentry.issues_by_ids([link.sentry_issue_id for link in batch])
        )
    finally:
        wait([pending])  # never leave a read running into the next page
    found = {ticket.id: ticket for ticket in pending.result()}
    for ticket_id in ticket_ids:
        if ticket_id not in found and ticket_id not in gone:
            # Not named by Jira as nonexistent, yet not returned: too new for Cloud's search index, or
            # deleted: only a direct read can tell.
            ticket = _retrying("Jira issue", partial(rt.jira.get_ticket, ticket_id))
            if ticket is not None:
                found[ticket.id] = ticket
    return {issue.id: issue for issue in issues}, found


def _retrying(what: str, read: Callable[[], T]) -> T:
    """A read, tried again on transient failures (honouring the server's wait), a few times."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return read()
        except TransientError as exc:
            if attempt == READ_ATTEMPTS:
                raise
            wait = backoff_seconds(
                attempt, retry_after=exc.retry_after, base=1.0, cap=READ_BACKOFF_CAP_SECONDS
            )
            log.warning("reconcile: %s: %s; trying again in %.1fs", what, exc, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _check(
    rt: Runtime,
    report: Report,
    link: Link,
    issue: SentryIssue | None,
    ticket: JiraTicket | None,
    *,
    now: datetime,
    installation_uuid: str,
) -> None:
    assert link.id is not None
    if not (link.jira_issue_id or "").isdigit():
        row = _row(link, issue, ticket, None)
        row.result, row.detail = "failed", f"the link's Jira id {link.jira_issue_id!r} is not a Jira issue id"
        report.add(row)
        report.failed += 1
        return
    plan = drift.plan(link, issue, ticket, rt.policy, now)
    if plan is None:
        return
    for kind in plan.kinds:
        report.drift[kind] += 1
    row = _row(link, issue, ticket, plan)
    report.add(row)
    if plan.action == "leave":
        row.result = "left"
        return
    if report.dry_run:
        row.result = "would"
        report.would += 1
        return
    row.result, row.detail = repair(
        rt, link, plan, issue, ticket, cause=_cause(report), installation_uuid=installation_uuid
    )
    if row.result == "repaired":
        report.repaired += 1
    elif row.result == "recorded":
        report.recorded += 1
    elif row.result == "skipped":
        report.skipped += 1
    elif row.result == "failed":
        report.failed += 1
        log.warning("reconcile: sentry issue %s / %s: %s", link.sentry_issue_id, link.jira_key, row.detail)


def repair(
    rt: Runtime,
    seen: Link,
    plan: drift.Plan,
    issue: SentryIssue | None,
    ticket: JiraTicket | None,
    *,
    cause: str,
    installation_uuid: str = "",
) -> tuple[str, str]:
    """Apply a plan to one link, under its lock; (result, detail). The plan was made from the link
    as `seen` when its page was read: if a webhook has changed the link since, the plan is stale and
    the link is skipped (the next run looks again)."""
    assert seen.id is not None
    with ExitStack() as held:
        try:
            held.enter_context(link_lock(rt, seen.id))
        except TransientError as exc:  # held by a webhook's handler this long, or Redis is away
            return "failed", f"could not take the link's lock: {exc}"
        fresh = inbound.load_link(rt, seen.id)
        if fresh is None or fresh.state != LinkState.ACTIVE:
            return "skipped", f"the link is {fresh.state if fresh else 'gone'} now"
        if _stored(fresh) != _stored(seen):
            return "skipped", "a webhook changed the link meanwhile; the next run looks again"
        try:
            outcome = _apply(rt, fresh, plan, issue, ticket, cause=cause, installation_uuid=installation_uuid)
        except (SyncerError, SQLAlchemyError) as exc:
            return "failed", f"{type(exc).__name__}: {exc}"
    if (
        plan.action == "outbound"
        and plan.outbound is not None
        and plan.outbound.action == "new_ticket"
        and issue is not None
        and not outcome.ignored
    ):
        # Outside the lock, as the webhook path does: this works on the issue's new link.
        try:
            outbound.tie_successor(rt, issue.id, cause)
        except (SyncerError, SQLAlchemyError) as exc:
            return "failed", f"{outcome.note}; linking the tickets failed: {type(exc).__name__}: {exc}"
    if plan.action == "leave":
        return "left", outcome.note
    repaired = plan.action == "break" or bool(plan.moved_to) or not outcome.ignored
    return ("repaired" if repaired else "recorded"), outcome.note


def _apply(
    rt: Runtime,
    link: Link,
    plan: drift.Plan,
    issue: SentryIssue | None,
    ticket: JiraTicket | None,
    *,
    cause: str,
    installation_uuid: str,
) -> Outcome:
    assert link.id is not None
    if plan.action == "break":
        inbound.mark_broken(rt, link, cause=cause, why=plan.reason)
        return Outcome(f"{link.jira_key} no longer exists: link marked broken")
    if plan.action == "leave":
        return Outcome.ignore(plan.reason)
    assert issue is not None and ticket is not None
    link_id = link.id
    if plan.moved_to:
        link = inbound.save_link(
            rt,
            link_id,
            cause=cause,
            jira_key=plan.moved_to,
            changes=[("jira", "moved", f"{link.jira_key} is now {plan.moved_to}")],
        )
    if plan.action == "inbound":
        assert plan.inbound is not None
        return inbound.apply_inbound(rt, link, ticket, issue, plan.inbound, cause=cause)
    if plan.action == "outbound":
        assert plan.outbound is not None
        return outbound.apply_outbound(
            rt,
            link,
            issue,
            ticket,
            plan.outbound,
            action=plan.sentry_action,
            cause=cause,
            installation_uuid=installation_uuid,
        )
    inbound.save_link(
        rt,
        link_id,
        cause=cause,
        **inbound.jira_fields(ticket, link, ticket.updated),
        **inbound.sentry_fields(issue, link),
    )
    return Outcome.ignore(plan.reason)


def _stored(link: Link) -> tuple[Any, ...]:
    """What a plan was made from: any webhook applied to the link since changes one of these."""
    return (
        link.state,
        link.jira_key,
        link.sentry_status,
        link.sentry_substatus,
        link.jira_status,
        link.jira_status_category,
        link.updated_at,
    )


def _row(link: Link, issue: SentryIssue | None, ticket: JiraTicket | None, plan: drift.Plan | None) -> Row:
    assert link.id is not None
    return Row(
        link_id=link.id,
        sentry_issue_id=link.sentry_issue_id,
        jira_key=link.jira_key or "",
        jira_state=_jira_state(ticket.status, ticket.status_category) if ticket else "(deleted)",
        sentry_state=_sentry_state(issue.status, issue.substatus) if issue else "(missing)",
        stored_state=f"{_jira_state(link.jira_status, link.jira_status_category)} | "
        f"{_sentry_state(link.sentry_status, link.sentry_substatus)}",
        kind="+".join(plan.kinds) if plan else "invalid_link",
        action=plan.describe() if plan else "none",
        reason=plan.reason if plan else "",
    )


def _jira_state(status: str, category: str) -> str:
    return f"{status or '?'} ({category or '?'})"


def _sentry_state(status: str, substatus: str) -> str:
    return f"{status or '?'}/{substatus}" if substatus else (status or "?")


# --- backfill -------------------------------------------------------------------------------------


def _backfill(
    rt: Runtime, report: Report, *, now: datetime, renew: Callable[[], None], installation_uuid: str
) -> None:
    hours = rt.policy.reconcile.lookback_hours
    report.backfill_window_hours = hours
    since = drift.lookback_start(now, hours)
    if since is None:
        return
    try:
        for page in _pages(
            rt.sentry.iter_issues(drift.backfill_query(since)), rt.policy.reconcile.batch_size
        ):
            in_window = [issue for issue in page if drift.in_lookback(issue.first_seen, since)]
            report.backfill_seen += len(in_window)
            known = _issues_with_links(rt, [issue.id for issue in in_window])
            for issue in in_window:
                if issue.id not in known:
                    _backfill_one(rt, report, issue, installation_uuid)
            renew()
    except LockLost:
        raise
    except SyncerError as exc:
        report.errors.append(f"backfill: could not list Sentry's issues: {exc}")
        log.error("reconcile: %s", report.errors[-1])


def _backfill_one(rt: Runtime, report: Report, issue: SentryIssue, installation_uuid: str) -> None:
    try:
        route = decide(issue, rt.policy, lambda: tickets.tags_for(rt, issue.id))
    except SyncerError as exc:
        report.backfill.append(
            BackfillRow(
                issue.id,
                issue.short_id,
                _when(issue.first_seen),
                "?",
                "-",
                "?",
                "failed",
                f"routing needs its tags: {exc}",
            )
        )
        return
    if route.action == "ignore" or route.target is None:
        report.backfill_ignored += 1
        return
    row = BackfillRow(
        issue.id,
        issue.short_id,
        _when(issue.first_seen),
        route.route_name,
        route.team or "-",
        route.target.jira_project,
    )
    report.backfill.append(row)
    if report.dry_run:
        row.result, row.detail = "would", f"create or link its ticket in {route.target.jira_project}"
        return
    try:
        outcome = tickets.create_or_link(
            rt, issue, route, installation_uuid=installation_uuid, cause=_cause(report)
        )
    except (SyncerError, SQLAlchemyError) as exc:
        row.result, row.detail = "failed", f"{type(exc).__name__}: {exc}"
        log.warning("reconcile: backfill of sentry issue %s: %s", issue.id, row.detail)
        return
    row.detail = outcome.note
    row.result = (
        "nothing" if outcome.ignored else "linked" if outcome.note.startswith("linked") else "created"
    )


def _pages(items: Iterator[T], size: int) -> Iterator[list[T]]:
    page: list[T] = []
    for item in items:
        page.append(item)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def _issues_with_links(rt: Runtime, issue_ids: Sequence[str]) -> set[str]:
    """Issues that have a link row in any state: linked, being linked, or deliberately not any more
    (a deleted ticket or `links unlink` is a person's decision that backfill must not undo)."""
    if not issue_ids:
        return set()
    with Session(rt.engine) as session:
        return set(session.exec(select(Link.sentry_issue_id).where(col(Link.sentry_issue_id).in_(issue_ids))))


def _installation_uuid(rt: Runtime) -> str:
    """The installation for external-issue links: configured, or the one Sentry's webhooks name."""
    if rt.settings.sentry_installation_uuid:
        return rt.settings.sentry_installation_uuid
    with Session(rt.engine) as session:
        payloads = session.exec(
            select(Delivery.payload)
            .where(Delivery.source == "sentry")
            .order_by(col(Delivery.id).desc())
            .limit(20)
        ).all()
    for payload in payloads:
        try:
            installation = json.loads(payload).get("installation")
        except (ValueError, AttributeError):
            continue
        uuid = installation.get("uuid") if isinstance(installation, dict) else None
        if isinstance(uuid, str) and uuid:
            return uuid
    return ""


# --- the sweep ------------------------------------------------------------------------------------


def _sweep(rt: Runtime, report: Report, *, now: datetime, enqueue: Enqueue | None) -> None:
    sweep = report.sweep
    overdue = deliveries.overdue(rt.engine, grace=timedelta(seconds=rt.settings.sweep_after_seconds), now=now)
    sweep.overdue = len(overdue)
    policy = rt.policy.reconcile
    letters = (
        old_dead_letters(
            rt,
            cutoff=now - timedelta(hours=policy.dead_letter_retry_after_hours),
            cap=policy.dead_letter_retry_cap,
        )
        if policy.dead_letter_retry_after_hours
        else []
    )
    sweep.dead_letters = len(letters)
    if report.dry_run or not (overdue or letters):
        return
    if enqueue is None:
        sweep.note = "no broker to hand deliveries to; the beat's sweeper does it"
        return
    sent: list[int] = []
    for delivery_id in overdue:
        try:
            enqueue(delivery_id)
        except Exception as exc:  # the broker is down: the rows stay due, the sweeper retries them
            sweep.note = f"the broker refused a delivery ({type(exc).__name__}); the rest stay due"
            break
        sent.append(delivery_id)
    if sent:
        deliveries.touch(rt.engine, sent)
    sweep.requeued = len(sent)
    for letter_id in letters:
        try:
            deadletters.retry(rt.engine, letter_id, enqueue)
        except LookupError:  # retried or dropped by a person meanwhile
            continue
        sweep.retried += 1


def old_dead_letters(rt: Runtime, *, cutoff: datetime, cap: int) -> list[int]:
    """Open dead letters created before `cutoff`, oldest first, whose delivery has not died more
    than `AUTO_RETRIES_PER_DELIVERY` times (the letters of one delivery are its deaths)."""
    if cap <= 0:
        return []
    deaths = (
        select(DeadLetter.delivery_id, func.count().label("deaths"))
        .group_by(col(DeadLetter.delivery_id))
        .subquery()
    )
    with Session(rt.engine) as session:
        rows = session.exec(
            select(DeadLetter.id)
            .join(deaths, deaths.c.delivery_id == DeadLetter.delivery_id)
            .where(
                DeadLetter.state == "open",
                col(DeadLetter.created_at) < cutoff,
                deaths.c.deaths <= AUTO_RETRIES_PER_DELIVERY,
            )
            .order_by(col(DeadLetter.created_at))
            .limit(cap)
        ).all()
    return [row for row in rows if row is not None]


# --- metrics and words ----------------------------------------------------------------------------


def _record_metrics(rt: Runtime, report: Report) -> None:
    counters = rt.counters
    counters.incr("syncer_reconcile_runs_total", result="ok" if report.ok else "failed")
    counters.incr("syncer_reconcile_links_checked_total", report.links_checked)
    for kind, n in report.drift.items():
        counters.incr("syncer_reconcile_drift_total", n, kind=kind)
    counters.incr("syncer_reconcile_repairs_total", report.repaired, result="applied")
    counters.incr("syncer_reconcile_repairs_total", report.failed, result="failed")
    counters.incr("syncer_reconcile_backfilled_total", report.backfilled)
    counters.incr("syncer_reconcile_requeued_total", report.sweep.requeued + report.sweep.retried)
    for side, n in report.api_calls.items():
        counters.incr("syncer_reconcile_api_calls_total", n, side=side)
    counters.set_gauge("syncer_reconcile_last_duration_seconds", round(report.duration_seconds, 3))
    counters.set_gauge("syncer_reconcile_last_run_timestamp_seconds", time.time())
    counters.set_gauge("syncer_reconcile_last_links_checked", report.links_checked)
    counters.set_gauge("syncer_reconcile_last_drift", report.drifted)
    if report.ok:
        counters.set_gauge("syncer_reconcile_last_success_timestamp_seconds", time.time())


def progress_line(report: Report) -> str:
    """One line, rewritten in place on a terminal as the run goes."""
    return (
        f"reconcile: {report.links_checked:,}/{report.links_total:,} links checked, "
        f"{report.drifted:,} drifted, {report.repaired:,} repaired, {report.failed:,} failed"
    )


def summary(report: Report) -> str:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.drift.items()))
    verb = "would repair" if report.dry_run else "repaired"
    parts = [
        f"{report.links_checked:,} of {report.links_total:,} links checked in {report.duration_seconds:.1f}s",
        f"{report.drifted:,} drifted" + (f" ({kinds})" if kinds else ""),
    ]
    if report.dry_run:
        parts.append(f"{verb} {report.would:,}")
    else:
        parts.append(
            f"{verb} {report.repaired:,}, recorded {report.recorded:,}, skipped {report.skipped:,}, "
            f"failed {report.failed:,}"
        )
    if report.unchecked:
        parts.append(f"{report.unchecked:,} unchecked")
    return "; ".join(parts)


def format_report(report: Report) -> str:
    """The drift table, the backfill, the sweep, and a summary, for a person at a terminal."""
    lines: list[str] = []
    if report.rows:
        header = ("LINK", "JIRA NOW", "SENTRY NOW", "STORED (JIRA | SENTRY)", "ACTION", "RESULT")
        table = [header] + [
            (
                f"{row.sentry_issue_id} <-> {row.jira_key or '?'}",
                row.jira_state,
                row.sentry_state,
                row.stored_state,
                row.action,
                row.result + (f": {row.detail}" if row.detail and row.result != "would" else ""),
            )
            for row in report.rows
        ]
        lines += _columns(table)
        if report.rows_omitted:
            lines.append(f"... and {report.rows_omitted:,} more drifted links, not listed")
        lines.append("")
    window = f"first seen in the last {report.backfill_window_hours} h"
    if report.backfill_window_hours:
        lines.append(
            f"backfill: unresolved issues {window}: {report.backfill_seen:,}; without a link and sent to "
            f"Jira by a route: {len(report.backfill):,}; without a link and ignored by a route: "
            f"{report.backfill_ignored:,}"
        )
        for b in report.backfill:
            result = "would create or link" if b.result == "would" else b.result
            lines.append(
                f"  {b.sentry_issue_id} {b.short_id} (first seen {b.first_seen}): route {b.route}, "
                f"team {b.team}, {b.project}: {result}"
                + (f": {b.detail}" if b.detail and b.result != "would" else "")
            )
    else:
        lines.append("backfill: off (reconcile.lookback_hours = 0)")
    s = report.sweep
    if report.dry_run:
        lines.append(
            f"sweep: {s.overdue:,} overdue deliveries and {s.dead_letters:,} dead letters would be "
            "handed out again"
        )
    else:
        lines.append(
            f"sweep: {s.requeued:,} of {s.overdue:,} overdue deliveries re-enqueued, {s.retried:,} of "
            f"{s.dead_letters:,} old dead letters retried" + (f" ({s.note})" if s.note else "")
        )
    for error in report.errors:
        lines.append(f"error: {error}")
    calls = ", ".join(f"{side} {n:,}" for side, n in report.api_calls.items())
    lines.append(f"API calls: {calls}")
    lines.append(summary(report) + (" (dry run: nothing was changed)" if report.dry_run else ""))
    return "\n".join(lines)


def _columns(table: Sequence[Sequence[str]], limits: Sequence[int] = (34, 26, 26, 40, 60, 0)) -> list[str]:
    cut = [[_fit(cell, limits[i]) for i, cell in enumerate(row)] for row in table]
    widths = [max(len(row[i]) for row in cut) for i in range(len(cut[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cut]


def _fit(cell: str, limit: int) -> str:
    return cell if not limit or len(cell) <= limit else cell[: limit - 1] + "…"


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "?"
