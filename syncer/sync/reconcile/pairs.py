"""The linked pairs: every active link, page by page, both sides read, its drift planned by
`syncer.core.drift` and repaired (`repair.py`), each drifted link a row of the report."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from syncer.core import drift
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.errors import SyncerError
from syncer.locks import Renew
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import LinkRecord
from syncer.sync.reconcile.pages import link_pages, read_sides
from syncer.sync.reconcile.repair import repair
from syncer.sync.reconcile.report import Progress, RepairResult, Report, Row

log = logging.getLogger(__name__)


def check_links(
    rt: Runtime,
    report: Report,
    *,
    now: datetime,
    renew: Renew,
    progress: Progress | None,
    installation_uuid: str,
) -> None:
    report.links_total = links.count_active(rt.engine)
    # Jira's page is read in this thread while Sentry's is read in the caller's: both sides at once.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-jira") as pool:
        for batch in link_pages(rt.engine, rt.policy.reconcile.batch_size):
            try:
                sides = read_sides(rt, batch, pool)
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
    plan = drift.plan(link, issue, ticket, rt.policy, now)
    if plan is None:
        return
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
    result, detail = repair(
        rt, link, plan, issue, ticket, cause=report.cause, installation_uuid=installation_uuid
    )
    report.add(_row(link, issue, ticket, plan, result, detail))
    if result == RepairResult.FAILED:
        log.warning("reconcile: sentry issue %s / %s: %s", link.sentry_issue_id, link.jira_key, detail)


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
