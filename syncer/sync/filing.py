"""The bulk filer: new issues gathered during a storm (`syncer.sync.gathering`) filed up to 50 at a
time, one label search and one bulk create for all of them, then each ticket's back-links.

Each item goes the single path's way (`syncer.sync.tickets.create_or_link`), only in step with the
others: its delivery taken, routed, its issue claimed; one `labels in (...)` search; per item the
choice (adopt, wait, create); the create attempt marked for every item to create; one bulk create;
per item, created → activated, or refused → handled as a create of it alone would be (a refused
assignee: made again unassigned; refused fields: that item's dead letter; another refusal: as its
status says); then its back-links and its delivery finished. A bulk create that fails as a whole
ambiguously (a timeout, a 5xx) leaves every item's create attempt marked and its claim released, so
each item's next try searches first: resolved per item, with no duplicate. Whatever fails for one
item is that item's alone, recorded on its delivery as the single path would (queued, backed off,
or a dead letter); a delivery whose back-link is throttled is queued again, its link already
active, so its next try only finishes the back-links.

One filer per Jira host at a time (`syncer.locks.filer_lock`): batches are as full as the backlog.
A worker that is stopping files no further batch; what is still gathered waits for another filer
(the sweep starts one) and, failing that, for the sweeper to hand the deliveries out again.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from syncer import locks, logs
from syncer.core.issue import JiraTicket
from syncer.core.render import sentry_label
from syncer.errors import AmbiguousError, Busy, PermanentError, SyncerError, TransientError
from syncer.jira.client import BULK_CREATE_MAX
from syncer.runtime import Runtime
from syncer.sentry import webhooks as sentry_webhooks
from syncer.sentry.webhooks import SentryEvent
from syncer.store import deliveries as inbox
from syncer.store import installations
from syncer.store.links import LinkRecord
from syncer.sync import deliveries, dispatch, gathering, slack, tickets
from syncer.sync.deliveries import Step
from syncer.sync.outcome import Outcome
from syncer.sync.tickets import Attempt, Draft, TicketPlan

log = logs.get_logger(__name__)

BATCH = BULK_CREATE_MAX
# Threads that make a batch's back-links: enough to keep both APIs' budgets busy (a remote link
# and a Sentry link per ticket), few enough not to crowd the worker's database pool.
BACKLINK_THREADS = 4

Later = Callable[[int, float], None]  # schedule a delivery's next try in so many seconds


@dataclass
class _Item:
    """One gathered delivery on its way through a batch."""

    delivery: inbox.Taken
    event: SentryEvent | None = None
    plan: TicketPlan | None = None
    attempt: Attempt | None = None
    draft: Draft | None = None
    link: LinkRecord | None = None
    note: str = ""
    ignored: bool = False
    settled: bool = False

    @property
    def cause(self) -> str:
        return f"delivery:{self.delivery.id}"


def run(rt: Runtime, *, stopping: Callable[[], bool], later: Later) -> int:
    """File what is gathered until none is left or the worker stops: the number of deliveries
    settled. Returns 0 at once when another filer holds the lock."""
    host = gathering.jira_host(rt)
    settled = 0
    while not stopping():
        try:
            with locks.filer_lock(rt, host) as renew:
                while not stopping():
                    ids = gathering.take(rt, BATCH)
                    if not ids:
                        break
                    settled += file_batch(rt, ids, later)
                    renew()
        except Busy:
            return settled
        # Let go: an id gathered after the last look, while the lock was still held, started no
        # filer, so look once more.
        if not gathering.waiting(rt):
            break
    return settled


def file_batch(rt: Runtime, ids: list[int], later: Later) -> int:
    lease = timedelta(seconds=rt.settings.sweep_after_seconds)
    items = [_Item(taken) for delivery_id in ids
             if (taken := inbox.take(rt.engine, delivery_id, lease=lease)) is not None]
    for item in items:
        _guarded(rt, item, later, partial(_plan, rt, item))
    claimed = [item for item in items if item.attempt is not None and not item.settled]
    if claimed:
        _search_and_choose(rt, claimed, later)
    creating = [item for item in claimed if item.draft is not None and not item.settled]
    if creating:
        _renew_leases(rt, items)
        _create(rt, creating, later)
    linked = [item for item in items if item.link is not None and not item.settled]
    _renew_leases(rt, linked)
    with ThreadPoolExecutor(BACKLINK_THREADS, thread_name_prefix="backlinks") as pool:
        for item in linked:
            pool.submit(contextvars.copy_context().run, _guarded, rt, item, later, partial(_finish, rt, item))
    log.info("bulk filer: %s deliveries, %s tickets created in one bulk create, %s linked",
             len(items), len(creating), len(linked))
    return len(items)


def _renew_leases(rt: Runtime, items: list[_Item]) -> None:
    """A batch's phases wait their turns at Jira's rate: the rows still to be settled keep their
    leases, or the sweeper would hand them out again mid-batch (their claims would keep that safe,
    at the price of their back-link calls made twice)."""
    inbox.renew_leases(rt.engine, [item.delivery.id for item in items if not item.settled])


def _plan(rt: Runtime, item: _Item) -> None:
    delivery = item.delivery
    event = (sentry_webhooks.parse_event(delivery.resource, delivery.payload)
             if delivery.source == "sentry" else None)
    if event is None or event.job is not sentry_webhooks.Job.ENSURE_TICKET:
        # Not what is gathered (nothing else is, today): handled as a delivery of its own.
        _done(rt, item, dispatch.handle(rt, delivery))
        return
    item.event = event
    logs.bind(sentry_issue_id=event.issue.id if event.issue else event.issue_id)
    if event.installation_uuid:
        installations.seen(rt.engine, event.installation_uuid)
    planned = tickets.plan_ticket(rt, event, item.cause)
    if isinstance(planned, Outcome):
        _done(rt, item, planned)
        return
    item.plan = planned
    claimed = tickets.claim_issue(rt, planned.issue, planned.decision)
    if isinstance(claimed, LinkRecord):
        item.link, item.note, item.ignored = claimed, f"already linked to {claimed.jira_key}", True
        return
    item.attempt = Attempt(rt, claimed, planned.issue.id)


def _search_and_choose(rt: Runtime, claimed: list[_Item], later: Later) -> None:
    labels = [sentry_label(_plan_of(item).issue.id) for item in claimed]
    try:
        found = rt.jira.find_by_labels(labels)
    except Exception as exc:
        for item in claimed:
            _guarded(rt, item, later, partial(_raise, exc))
        return
    for item, label in zip(claimed, labels, strict=True):
        _guarded(rt, item, later, partial(_choose, rt, item, found.get(label, []), len(claimed)))


def _choose(rt: Runtime, item: _Item, found: list[JiraTicket], searched: int) -> None:
    plan, attempt = _plan_of(item), item.attempt
    assert attempt is not None
    choice = tickets.choose(rt, attempt, plan.issue, found)
    if choice.ticket is not None:
        item.link, note = tickets.adopted(rt, attempt.claim, plan.issue, plan.decision, choice.ticket,
                                          item.cause)
        item.note = f"{note}; found by a search for {searched} issues at once"
        return
    item.draft = tickets.draft_ticket(rt, plan.issue, plan.decision)
    attempt.mark_create()


def _create(rt: Runtime, creating: list[_Item], later: Later) -> None:
    drafts = [item.draft for item in creating]
    try:
        answers: list[tuple[str, str] | SyncerError] = rt.jira.create_issues(
            [draft.fields for draft in drafts if draft is not None])
    except Exception as exc:
        answers = [exc if isinstance(exc, SyncerError) else _unexpected(exc)] * len(creating)
    for item, answer in zip(creating, answers, strict=True):
        _guarded(rt, item, later, partial(_created, rt, item, answer, len(creating)))


def _created(rt: Runtime, item: _Item, answer: tuple[str, str] | SyncerError, bulk: int) -> None:
    plan, attempt, draft = _plan_of(item), item.attempt, item.draft
    assert attempt is not None and draft is not None
    created = _as_alone(rt, attempt, draft, answer) if isinstance(answer, SyncerError) else answer
    item.link, note = tickets.ticket_created(rt, attempt.claim, plan.issue, draft, created, item.cause)
    item.note = f"{note}; filed in a bulk create of {bulk}"


def _as_alone(rt: Runtime, attempt: Attempt, draft: Draft, exc: SyncerError) -> tuple[str, str]:
    """A bulk create's failure for one item, handled as `create_or_link` handles a create's."""
    if isinstance(exc, AmbiguousError):
        raise exc
    if isinstance(exc, PermanentError):
        return tickets.after_refusal(rt, attempt, draft, exc)
    if isinstance(exc, TransientError):
        attempt.created_nothing = True  # refused before acting: 429
    raise exc


def _finish(rt: Runtime, item: _Item) -> None:
    assert item.link is not None
    plan = item.plan
    installation_uuid = item.event.installation_uuid if item.event else ""
    tickets.finish_backlinks(rt, item.link, installation_uuid, item.cause)
    if plan is not None and not item.ignored:
        slack.request(rt, plan.issue.id, slack.REFRESH)  # its message, if it has one, shows the ticket
    _done(rt, item, Outcome(item.note, ignored=item.ignored))


def _guarded(rt: Runtime, item: _Item, later: Later, step: Callable[[], None]) -> None:
    """One step for one item: what it raises is that item's alone, recorded on its delivery as the
    single path records it, its claim given up as what was done allows."""
    if item.settled:
        return
    with logs.bound(delivery_id=item.delivery.id, cause=item.cause):
        try:
            step()
        except Exception as exc:
            if item.attempt is not None and item.link is None:
                item.attempt.give_up(exc)
            _settle(item, deliveries.failed(rt, item.delivery, exc), later)


def _done(rt: Runtime, item: _Item, outcome: Outcome) -> None:
    deliveries.finished(rt, item.delivery, outcome)
    item.settled = True
    event = item.event
    issue_id = (event.issue.id if event.issue else event.issue_id) if event else ""
    if event is not None and issue_id and event.resource == "issue":
        slack.after_sentry_event(rt, issue_id, action=event.action,
                                 substatus=event.issue.substatus if event.issue else "",
                                 own_echo=event.is_own_echo(rt.settings.sentry_app_id),
                                 delivery_id=item.delivery.id)


def _settle(item: _Item, step: Step, later: Later) -> None:
    item.settled = True
    if step.retry_in is not None:
        later(item.delivery.id, step.retry_in)


def _plan_of(item: _Item) -> TicketPlan:
    assert item.plan is not None
    return item.plan


def _raise(exc: Exception) -> None:
    raise exc


def _unexpected(exc: Exception) -> SyncerError:
    """None of ours from the bulk call: as uncertain for each item as a lost answer."""
    return AmbiguousError(f"bulk create: unexpected {type(exc).__name__}")
