"""A drift plan applied to one link, through the functions the webhook handlers use, under the
link's lock, and only if no webhook changed the link since its page was read."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any, NamedTuple

from sqlalchemy.exc import SQLAlchemyError

from syncer.core import drift
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.errors import Busy, SyncerError, TransientError
from syncer.locks import link_lock
from syncer.runtime import Runtime
from syncer.store import links
from syncer.store.links import LinkRecord
from syncer.store.schema import LinkState
from syncer.sync import inbound, merges, outbound
from syncer.sync.outcome import Outcome
from syncer.sync.reconcile.report import RepairResult

# A webhook's handler holds a link for a second or so; a run that waited longer on every busy link
# would stall behind traffic. The next run looks again.
REPAIR_LOCK_WAIT_SECONDS = 2.0


class Repair(NamedTuple):
    result: RepairResult
    detail: str


def repair(
    rt: Runtime,
    seen: LinkRecord,
    plan: drift.Plan,
    issue: SentryIssue | None,
    ticket: JiraTicket | None,
    *,
    cause: str,
    installation_uuid: str = "",
) -> Repair:
    """Apply a plan to one link, under its lock. The plan was made from the link as `seen` when its
    page was read: if a webhook has changed the link since, the plan is stale and the link is
    skipped (the next run looks again)."""
    with ExitStack() as held:
        try:
            held.enter_context(link_lock(rt, seen.id, wait=REPAIR_LOCK_WAIT_SECONDS,
                                         expiry=rt.settings.link_lock_seconds))
        except Busy as exc:
            # Ordinary traffic: a webhook's handler is applying a change to this link right now.
            # Not a failure (whoever pages on reconcile's exit status must not be woken by it).
            return Repair(RepairResult.SKIPPED, f"{exc}; the next run looks again")
        except TransientError as exc:  # Redis is away
            return Repair(RepairResult.FAILED, f"could not take the link's lock: {exc}")
        fresh = links.load(rt.engine, seen.id)
        if fresh is None or fresh.state != LinkState.ACTIVE:
            return Repair(RepairResult.SKIPPED, f"the link is {fresh.state if fresh else 'gone'} now")
        if _stored(fresh) != _stored(seen):
            return Repair(
                RepairResult.SKIPPED, "a webhook changed the link meanwhile; the next run looks again"
            )
        try:
            outcome = _apply(rt, fresh, plan, issue, ticket, cause=cause, installation_uuid=installation_uuid)
        except (SyncerError, SQLAlchemyError) as exc:
            return Repair(RepairResult.FAILED, f"{type(exc).__name__}: {exc}")
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
            return Repair(
                RepairResult.FAILED,
                f"{outcome.note}; linking the tickets failed: {type(exc).__name__}: {exc}",
            )
    repaired = plan.action in ("break", "merge") or bool(plan.moved_to) or not outcome.ignored
    return Repair(RepairResult.REPAIRED if repaired else RepairResult.RECORDED, outcome.note)


def _apply(
    rt: Runtime,
    link: LinkRecord,
    plan: drift.Plan,
    issue: SentryIssue | None,
    ticket: JiraTicket | None,
    *,
    cause: str,
    installation_uuid: str,
) -> Outcome:
    if plan.action == "flag":
        links.mark_unreachable(rt.engine, link, cause=cause, why=plan.reason)
        return Outcome.ignore(f"{link.jira_key} unreachable: link kept, flagged")
    if plan.action == "break":
        issue_gone = "issue_missing" in plan.kinds
        links.mark_broken(rt.engine, link, cause=cause, why=plan.reason, issue_gone=issue_gone)
        gone = f"sentry issue {link.sentry_issue_id}" if issue_gone else link.jira_key
        return Outcome(f"{gone} no longer exists: link marked broken")
    assert issue is not None and ticket is not None
    if plan.action == "merge":
        return merges.follow(rt, link, issue, cause=cause, installation_uuid=installation_uuid)[0]
    link_id = link.id
    if plan.moved_to:
        link = links.save(
            rt.engine,
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
            cause=cause,
            installation_uuid=installation_uuid,
        )
    links.save(
        rt.engine,
        link_id,
        cause=cause,
        **inbound.jira_fields(ticket, link, ticket.updated),
        **inbound.sentry_fields(issue, link),
    )
    return Outcome.ignore(plan.reason)


def _stored(link: LinkRecord) -> tuple[Any, ...]:
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
