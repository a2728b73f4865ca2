"""The linked pairs: every active link, page by page, both sides read, its drift planned by
`syncer.core.drift` and repaired (`repair.py`), each drifted link a row of the report."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from syncer import logs
from syncer.core import drift, growth
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.core.render import sentry_issue_url
from syncer.errors import SyncerError
from syncer.locks import Renew
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import LinkRecord
from syncer.sync import tickets
from syncer.sync.reconcile.pages import read_sides
from syncer.sync.reconcile.repair import repair
from syncer.sync.reconcile.report import Progress, RepairResult, Report, Row
from syncer.sync.reconcile.scope import Scope

log = logging.getLogger(__name__)


def check_links(
    rt: Runtime,
    report: Report,
    *,
    now: datetime,
    renew: Renew,
    progress: Progress | None,
    installation_uuid: str,
    full: bool = False,
) -> None:
    """The links `scope.Scope` chooses (what changed, and the full pass's next slice; every link
    when `full`), page by page; where the pass stands is saved after the last page."""
    report.links_total = links.count_active(rt.engine)
    scope = Scope(rt, report, now, full)
    # Jira's page is read in this thread while Sentry's is read in the caller's: both sides at once.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-jira") as pool:
        for batch, known in scope.pages():
            try:
                sides = read_sides(rt, batch, pool, known)
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
                    sides.issues.get(link.sentry_issue_id),
                    sides.tickets.get(link.jira_issue_id or ""),
                    now=now,
                    installation_uuid=installation_uuid,
                )
            renew()
            if progress is not None:
                progress(report)
    scope.save()


Sides = tuple[SentryIssue | None, JiraTicket | None]


def _check(
    rt: Runtime,
    report: Report,
    link: LinkRecord,
    issue: SentryIssue | None,
    ticket: JiraTicket | None,
    *,
    now: datetime,
    installation_uuid: str,
) -> None:
    if not (link.jira_issue_id or "").isdigit():
        detail = f"the link's Jira id {link.jira_issue_id!r} is not a Jira issue id"
        report.add(_row(link, issue, ticket, None, RepairResult.FAILED, detail))
        return
    if ticket is not None and link.unreachable_since is not None and not report.dry_run:
        # It answers again (access granted back): the flag goes, and the link is what a plan is
        # made from, so that its repair does not take the change for a webhook's.
        link = links.mark_reachable(rt.engine, link, cause=report.cause)
    if issue is not None and _unlinked_in_sentry(rt, link, issue):
        _undo_link(rt, report, link, issue, ticket)
        return
    plan = drift.plan(link, issue, ticket, rt.policy, now)
    if plan is not None:
        _repair_drift(rt, report, link, (issue, ticket), plan, installation_uuid)
    # After the repair: it checks the link is as its page saw it, and this may mark it.
    if issue is not None and ticket is not None and not (link.remote_link_done and link.sentry_link_done):
        _finish_backlinks(rt, report, link, issue, ticket, installation_uuid)
    if issue is not None and ticket is not None and not report.dry_run \
            and growth.enabled(rt.policy.enrichment):
        _enrich(rt, report, link, issue, now)


def _enrich(rt: Runtime, report: Report, link: LinkRecord, issue: SentryIssue, now: datetime) -> None:
    """One comment on the ticket when its issue has grown past `[enrichment]`'s marks since the
    ticket was last told (throttled per ticket); the first sight of a pair only records its counts."""
    if link.noted_count is None or link.noted_users is None:
        links.note_growth(rt.engine, link, count=issue.count, users=issue.user_count, commented=False)
        return
    reason = growth.growth(rt.policy.enrichment, count=issue.count, users=issue.user_count,
                           noted_count=link.noted_count, noted_users=link.noted_users,
                           noted_at=link.noted_at, now=now)
    if reason is None or not link.jira_key:
        return
    url = sentry_issue_url(rt.settings.sentry_url, rt.settings.sentry_org or "", link.sentry_issue_id)
    try:
        rt.jira.add_comment(link.jira_key, f"The Sentry issue has grown: {reason}. [Open it in Sentry|{url}]")
    except SyncerError as exc:
        log.warning("reconcile: %s: growth comment not posted: %s", link.jira_key, exc)
        return
    links.note_growth(rt.engine, link, count=issue.count, users=issue.user_count, commented=True,
                      detail=reason, cause=report.cause)


def _unlinked_in_sentry(rt: Runtime, link: LinkRecord, issue: SentryIssue) -> bool:
    """Whether a person removed the issue's link to our ticket in Sentry (its issue page's "unlink"):
    Sentry tells integrations nothing of it (GroupExternalIssueDetailsEndpoint.delete sends no
    webhook), but the issue's `annotations` stop showing it. Only for a link whose Sentry side we made
    as an external issue (its audit says so; without an installation the back-link is a note),
    confirmed with the issue's external-issue list before anything is undone."""
    if not link.sentry_link_done or issue.annotations is None:
        return False
    ours = f"{rt.jira_browse_url}/"
    if any(url.startswith(ours) for url in issue.annotations):
        return False
    if not links.linked_as_external_issue(rt.engine, link.id):
        return False
    try:
        urls = rt.sentry.external_issue_urls(issue.id)
    except SyncerError as exc:
        log.warning("reconcile: sentry issue %s: external issues unreadable: %s", issue.id, exc)
        return False
    return not any(url.startswith(ours) for url in urls)


def _undo_link(
    rt: Runtime, report: Report, link: LinkRecord, issue: SentryIssue, ticket: JiraTicket | None
) -> None:
    plan = drift.Plan(("unlinked_in_sentry",), "record",
                      f"the issue's link to {link.jira_key} was removed in Sentry")
    report.drift["unlinked_in_sentry"] += 1
    if report.dry_run:
        report.add(_row(link, issue, ticket, plan, RepairResult.WOULD))
        return
    undone = links.unlink(rt.engine, link.sentry_issue_id, cause=report.cause,
                          audit=[("sentry", "unlinked_in_sentry",
                                  f"{link.jira_key} was unlinked on Sentry's issue page; link undone")])
    detail = "link undone" if undone is not None else "already undone"
    report.add(_row(link, issue, ticket, plan, RepairResult.REPAIRED, f"{plan.reason}: {detail}"))


def _repair_drift(
    rt: Runtime, report: Report, link: LinkRecord, sides: Sides, plan: drift.Plan, installation_uuid: str
) -> None:
    issue, ticket = sides
    if not plan.kinds:  # not drift: something the link never knew, recorded without a row
        if not report.dry_run:
            learnt, detail = repair(rt, link, plan, issue, ticket, cause=report.cause)
            if learnt == RepairResult.FAILED:
                report.add(_row(link, issue, ticket, plan, learnt, detail))
        return
    for kind in plan.kinds:
        report.drift[kind] += 1
    if report.dry_run:
        report.add(_row(link, issue, ticket, plan, RepairResult.WOULD))
        return
    # The lines of this repair can be found by the pair, as those of its webhooks can.
    with logs.bound(cause=report.cause, sentry_issue_id=link.sentry_issue_id, jira_key=link.jira_key):
        result, detail = repair(
            rt, link, plan, issue, ticket, cause=report.cause, installation_uuid=installation_uuid
        )
        report.add(_row(link, issue, ticket, plan, result, detail))
        if result == RepairResult.FAILED:
            log.warning("reconcile: sentry issue %s / %s: %s", link.sentry_issue_id, link.jira_key, detail)


def _finish_backlinks(
    rt: Runtime,
    report: Report,
    link: LinkRecord,
    issue: SentryIssue,
    ticket: JiraTicket,
    installation_uuid: str,
) -> None:
    """A ticket made before its delivery died may lack its remote link or its Sentry link: the same
    idempotent upserts as the ticket path, which records each as done."""
    plan = drift.Plan(("backlinks_missing",), "record", _missing_backlinks(link))
    report.drift["backlinks_missing"] += 1
    if report.dry_run:
        report.add(_row(link, issue, ticket, plan, RepairResult.WOULD))
        return
    try:
        tickets.finish_backlinks(rt, link, installation_uuid, report.cause)
    except (SyncerError, SQLAlchemyError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        report.add(_row(link, issue, ticket, plan, RepairResult.FAILED, detail))
        log.warning(
            "reconcile: sentry issue %s / %s: back-links: %s", link.sentry_issue_id, link.jira_key, detail
        )
        return
    report.add(_row(link, issue, ticket, plan, RepairResult.REPAIRED, plan.reason + ": added"))


def _missing_backlinks(link: LinkRecord) -> str:
    missing = [
        what
        for what, done in (("the ticket's link to the issue", link.remote_link_done),
                           ("the issue's link to the ticket", link.sentry_link_done))
        if not done
    ]
    return " and ".join(missing) + " missing"


def _row(
    link: LinkRecord,
    issue: SentryIssue | None,
    ticket: JiraTicket | None,
    plan: drift.Plan | None,
    result: RepairResult,
    detail: str = "",
) -> Row:
    return Row(
        link_id=link.id,
        sentry_issue_id=link.sentry_issue_id,
        jira_key=link.jira_key or "",
        jira_state=_jira_state(ticket.status, ticket.status_category) if ticket else "(unreachable)",
        sentry_state=_sentry_state(issue.status, issue.substatus) if issue else "(missing)",
        stored_state=f"{_jira_state(link.jira_status, link.jira_status_category)} | "
        f"{_sentry_state(link.sentry_status, link.sentry_substatus)}",
        kind="+".join(plan.kinds) if plan else "invalid_link",
        action=plan.describe() if plan else "none",
        reason=plan.reason if plan else "",
        result=result,
        detail=detail,
    )


def _jira_state(status: str, category: str) -> str:
    return f"{status or '?'} ({category or '?'})"


def _sentry_state(status: str, substatus: str) -> str:
    return f"{status or '?'}/{substatus}" if substatus else (status or "?")
