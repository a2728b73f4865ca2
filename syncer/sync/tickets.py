"""Sentry → Jira: create or link exactly one ticket per issue, routed by ownership.

The order of operations is the design:
1. decide (pure routing) — ignored issues cost nothing more;
2. claim the issue in the database (see `syncer.store.links`), so one worker of many proceeds;
3. look for a ticket that already carries the issue's label (made by hand, by an earlier install,
   or by a create whose answer we never saw) and link it instead of creating, or wait for Jira's
   search to catch up with an earlier create (`syncer.core.tickets.choose_ticket` decides);
4. mark the create attempt, then create — the `jira` library's own retries are off, so one call
   is one request; an ambiguous failure (timeout, 5xx) makes the next attempt search first;
5. store the link (Jira id AND key: keys change when a ticket moves project) before anything else;
6. link both ways (Jira remote link, upserted by globalId; Sentry external issue).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from syncer import logs
from syncer.core import choices
from syncer.core.issue import JiraTicket, SentryIssue
from syncer.core.render import (
    label_tags,
    remote_link_global_id,
    render_ticket,
    sentry_issue_url,
    sentry_label,
)
from syncer.core.routing import Decision, IssueTags, decide, route_label
from syncer.core.tickets import TicketChoice, choose_ticket
from syncer.errors import AmbiguousError, Busy, HeldElsewhere, PayloadError, PermanentError, TransientError
from syncer.jira.client import FieldsRefused
from syncer.metrics import Metric
from syncer.policy import toml_key
from syncer.runtime import Runtime
from syncer.sentry.webhooks import SentryEvent
from syncer.store import installations, links, triage
from syncer.store.links import ClaimRecord, LinkRecord
from syncer.store.schema import LinkState, utcnow
from syncer.sync import assignees, enrichment, gathering, slack
from syncer.sync import fields as ticket_fields
from syncer.sync.outcome import Outcome

log = logging.getLogger(__name__)

TAGS_TTL_SECONDS = 600
# A claim held by another worker: look again shortly (it will be active, or its claim expired).
HELD_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class TicketPlan:
    """An issue routed to a ticket: what `create_or_link` (or a bulk filing) needs to make it."""

    issue: SentryIssue
    decision: Decision
    installation_uuid: str


def on_sentry_issue(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    """`issue.created`, `issue.unresolved`, `issue.assigned`, `event_alert.triggered`: make sure an
    issue that matches a route has its ticket."""
    planned = plan_ticket(rt, event, cause)
    if isinstance(planned, Outcome):
        return planned
    return create_or_link(rt, planned.issue, planned.decision, installation_uuid=planned.installation_uuid,
                          cause=cause)


def on_new_issue(rt: Runtime, event: SentryEvent, cause: str) -> Outcome:
    """`on_sentry_issue` for the events that announce a new issue: during a release storm
    (`gathering.backlogged`), an issue to create a ticket for is gathered for a bulk create
    (`syncer.sync.filing`) instead, before any claim or call: one call files many."""
    planned = plan_ticket(rt, event, cause, may_gather=True)
    if isinstance(planned, Outcome):
        return planned
    with gathering.creating(rt):
        return create_or_link(rt, planned.issue, planned.decision,
                              installation_uuid=planned.installation_uuid, cause=cause)


def plan_ticket(
    rt: Runtime, event: SentryEvent, cause: str, *, may_gather: bool = False
) -> Outcome | TicketPlan:
    """Everything `on_sentry_issue` does before claiming: the plan, or what came of the event when
    no ticket is to be made (or, `may_gather`, `Outcome.gather` under a backlog)."""
    if event.is_own_echo(rt.settings.sentry_app_id):
        return Outcome.ignore("our own change, echoed back by Sentry")
    issue_id = event.issue.id if event.issue else event.issue_id
    if not issue_id:
        raise PayloadError(f"{event.resource}.{event.action} names no issue")
    link = links.live(rt.engine, issue_id)
    if link is not None and link.state == LinkState.ACTIVE:
        if link.unreachable_since is not None:  # its back-links would answer 404 too: wait for it
            return Outcome.ignore(f"ticket unreachable: {link.jira_key} answers 404; nothing done")
        finish_backlinks(rt, link, event.installation_uuid, cause)
        told = enrichment.on_release_seen(rt, link, event.release, cause)
        if told is not None:
            return Outcome(f"already linked; {told}")
        return Outcome.ignore(f"already linked to {link.jira_key}")
    # The webhook's issue is current as of the event; event alerts carry none, so read it.
    issue = event.issue or rt.sentry.get_issue(issue_id)
    if issue.status not in ("", "unresolved"):
        return Outcome.ignore(f"issue is {issue.status}; tickets are opened for unresolved issues only")
    decision = decide(issue, rt.policy, lambda: tags_for(rt, issue.id))
    if event.alert_settings:
        decision = _alert_choices(rt, event, issue, decision)
    if decision.action == "ignore" or decision.target is None:
        triage.record_routing(rt.engine, issue.id, route=decision.route_name, team=None, action="ignore")
        return Outcome.ignore(f"route {decision.route_name}: ignore ({decision.reason})")
    # An event alert names its issue only: the filer would read it again (a second Sentry call).
    if may_gather and event.issue is not None and decision.action == "create" and gathering.backlogged(rt):
        return Outcome.gather(f"gathered for a bulk create ({decision.route_name}): many new issues "
                              "at once")
    # The team's channel hears of it first: its message is Slack work of its own (a Slack outage
    # must not hold the ticket up), and it shows the ticket once there is one.
    slack.on_routed(rt, issue, decision)
    if decision.action == "notify":
        triage.record_routing(rt.engine, issue.id, route=decision.route_name, team=decision.team,
                              action="notify")
        if not decision.slack_channel:
            return Outcome(f"route {decision.route_name}: notify, but team {decision.team} has no "
                           "slack_channel: nothing posted, no ticket until asked for")
        return Outcome(f"route {decision.route_name}: notify {decision.slack_channel}, "
                       "no ticket until asked for")
    return TicketPlan(issue, decision, event.installation_uuid)


def _alert_choices(rt: Runtime, event: SentryEvent, issue: SentryIssue, decision: Decision) -> Decision:
    """The alert rule's saved settings over the routes' decision. Settings the policy no longer
    accepts (a team since removed) are refused: a dead letter naming the setting, not a guess."""
    where = f"alert rule {event.rule!r}" if event.rule else "alert rule"
    try:
        chosen = choices.parse_choices(event.alert_settings, rt.policy, where=where)
    except choices.ChoiceError as exc:
        raise PermanentError(f"{where}: {exc}; change the rule's syncer settings in Sentry") from None
    return choices.apply(decision, rt.policy, issue, chosen)


def tags_for(
    rt: Runtime, issue_id: str, *, as_of: datetime | None = None, ttl: float = TAGS_TTL_SECONDS
) -> IssueTags:
    """Tags are not in webhooks; fetched only when a route needs them, cached briefly. `as_of`: the
    issue's last event (`last_seen`), when the caller has it: tags change only with a new event, so
    tags keyed by it stay right for as long as the caller keeps them (`ttl`). Sentry's tags list has
    only the top values of each key: a key's other values are read (and cached alike) only when a
    route on that key matched none of its top ones."""
    key = f"syncer:tags:{issue_id}"
    if as_of is None:
        ttl = TAGS_TTL_SECONDS
    else:
        key = f"{key}:{as_of.timestamp():.3f}"
    ttl = max(1, int(ttl))

    def rarer(tag_key: str) -> list[str]:
        values_key = f"syncer:tag-values:{key.removeprefix('syncer:tags:')}:{tag_key}"
        if rt.redis is not None and (cached := rt.redis.get(values_key)):
            every: list[str] = json.loads(cached)
            return every
        every = rt.sentry.issue_tag_values(issue_id, tag_key)
        if rt.redis is not None:
            rt.redis.setex(values_key, ttl, json.dumps(every))
        return every

    if rt.redis is not None and (cached := rt.redis.get(key)):
        loaded = json.loads(cached)
        if isinstance(loaded, dict) and isinstance(loaded.get("top"), dict):
            return IssueTags(loaded["top"], loaded.get("more", ()), rarer)
        return IssueTags(loaded)  # written before rarer values were known of: the top ones only
    top, more = rt.sentry.issue_tag_listing(issue_id)
    if rt.redis is not None:
        rt.redis.setex(key, ttl, json.dumps({"top": top, "more": sorted(more)}))
    return IssueTags(top, more, rarer)


def create_or_link(
    rt: Runtime, issue: SentryIssue, decision: Decision, *, installation_uuid: str, cause: str,
    description: str | None = None,
) -> Outcome:
    """`description`: a person's own words (Sentry's create form), put above the rendered one."""
    claimed = claim_issue(rt, issue, decision)
    if isinstance(claimed, LinkRecord):
        finish_backlinks(rt, claimed, installation_uuid, cause)
        return Outcome.ignore(f"already linked to {claimed.jira_key}")
    claim = claimed
    # An earlier attempt's create may have worked unseen: until a search shows a ticket or Jira's
    # search lag has passed, a failure here (even before we create anything) must not forget it.
    attempt = Attempt(rt, claim, issue.id)
    with attempt:
        found = rt.jira.find_by_label(sentry_label(issue.id))
        choice = choose(rt, attempt, issue, found)
        if choice.ticket is not None:
            link, note = adopted(rt, claim, issue, decision, choice.ticket, cause)
        else:
            draft = draft_ticket(rt, issue, decision, description=description)
            attempt.mark_create()
            try:
                created = rt.jira.create_issue(draft.fields)
            except AmbiguousError:
                raise
            except PermanentError as exc:
                created = after_refusal(rt, attempt, draft, exc)
            except TransientError:
                attempt.created_nothing = True  # refused before acting: 429
                raise
            link, note = ticket_created(rt, claim, issue, draft, created, cause)
    finish_backlinks(rt, link, installation_uuid, cause)
    slack.request(rt, issue.id, slack.REFRESH)  # its message, if it has one, shows the ticket
    return Outcome(note)


def claim_issue(rt: Runtime, issue: SentryIssue, decision: Decision) -> ClaimRecord | LinkRecord:
    """The issue's claim (or its active link, when it has one); Busy while another worker holds it."""
    assert decision.target is not None
    triage.record_routing(rt.engine, issue.id, route=decision.route_name, team=decision.team, action="create")
    try:
        return links.take_claim(
            rt.engine, issue.id, project=issue.project_slug, route=decision.route_name, team=decision.team,
            ttl=timedelta(seconds=rt.settings.claim_ttl_seconds),
        )
    except HeldElsewhere as exc:
        raise Busy(str(exc), retry_after=HELD_RETRY_SECONDS) from None


class Attempt:
    """One try at making a claim a ticket: on the way out with an error, the claim is given up as
    what was done allows. `created_nothing`: no create was sent, or it was refused outright (a 4xx
    or 429), so the next attempt need not search first; a permanent failure then removes the
    pending row, so a later event, after the config is fixed, starts afresh."""

    def __init__(self, rt: Runtime, claim: ClaimRecord, issue_id: str) -> None:
        self.rt = rt
        self.claim = claim
        self.issue_id = issue_id
        self.created_nothing = claim.create_attempted_at is None

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self.give_up(exc)

    def give_up(self, exc: BaseException) -> None:
        if isinstance(exc, PermanentError) and self.created_nothing:
            links.abandon_claim(self.rt.engine, self.claim)
        else:
            links.release_claim(self.rt.engine, self.claim,
                                created_nothing=self.created_nothing and not isinstance(exc, PermanentError))

    def mark_create(self) -> None:
        """Just before the create is sent: from here a failure leaves the attempt marked."""
        if not links.refresh_claim(self.rt.engine, self.claim, create_attempt=True):
            raise TransientError(
                f"lost the claim on sentry issue {self.issue_id}", retry_after=HELD_RETRY_SECONDS
            )
        self.created_nothing = False


def choose(rt: Runtime, attempt: Attempt, issue: SentryIssue, found: Sequence[JiraTicket]) -> TicketChoice:
    """Adopt or create, from the label search's answer; a wait raises (TransientError)."""
    choice = choose_ticket(
        found,
        retired=links.retired_ticket_ids(rt.engine, issue.id) if found else (),
        create_attempted_at=attempt.claim.create_attempted_at,
        now=utcnow(),
        search_lag=timedelta(seconds=rt.settings.jira_search_lag_seconds),
    )
    if choice.action == "wait":
        attempt.created_nothing = False
        raise TransientError(
            f"an earlier create for sentry issue {issue.id} may have succeeded; "
            "waiting for Jira search to show it",
            retry_after=choice.wait.total_seconds(),
        )
    return choice


@dataclass
class Draft:
    """A ticket ready to be sent: its fields, and what was found out making them."""

    decision: Decision
    fields: dict[str, Any]
    prepared: ticket_fields.Prepared
    assignee_note: str
    problem: str


def draft_ticket(rt: Runtime, issue: SentryIssue, decision: Decision, *,
                 description: str | None = None) -> Draft:
    assert decision.target is not None
    # Tags cost a Sentry call: read (or taken from the cache routing filled) only when a
    # label takes a value from them.
    tags = tags_for(rt, issue.id) if label_tags(decision.target) else None
    fields = render_ticket(
        issue, decision.target, sentry_url=rt.settings.sentry_links_url,
        org=rt.settings.sentry_org or "",
        tags=tags,
    )
    if description:  # Jira caps a text field at 32,767 characters (wire-formats.md)
        fields["description"] = f"{description}\n\n----\n{fields.get('description', '')}"[:32767]
    prepared = ticket_fields.prepare(rt, decision.target, fields)
    assignee = assignees.resolve(rt, decision.target.assignee_email, decision.target.jira_project)
    if assignee.account_id:
        fields["assignee"] = rt.jira.user_ref(assignee.account_id)
    assignee_note = f"left unassigned: {assignee.reason}" if assignee.reason else ""
    return Draft(decision, fields, prepared, assignee_note, assignee.problem)


def after_refusal(rt: Runtime, attempt: Attempt, draft: Draft, exc: PermanentError) -> tuple[str, str]:
    """Jira refused the create (alone, or its item of a bulk create): the ticket made unassigned
    when the assignee was what it refused, else the refusal raised as what it means."""
    decision = draft.decision
    assert decision.target is not None
    try:
        # The cached account was deactivated, or lost the project's Assignable User
        # permission: a ticket without an assignee beats none, in the same attempt.
        words = assignees.refused(exc) if "assignee" in draft.fields else None
        if words is None:
            raise exc
        email = decision.target.assignee_email or ""
        assignees.forget(rt, email, decision.target.jira_project)
        del draft.fields["assignee"]
        created = rt.jira.create_issue(draft.fields)
        draft.assignee_note = f"assignee {email} refused by Jira: {words}; left unassigned"
        draft.problem = assignees.REFUSED
        return created
    except AmbiguousError:
        raise
    except FieldsRefused as refused:
        # Retrying cannot help until someone changes the policy or the screen: a dead letter
        # that says which fields, in Jira's words, and where to set them. The screen may
        # have changed since it was read: the next ticket reads it afresh.
        attempt.created_nothing = True
        where = _fields_tables(decision)
        raise ticket_fields.refused(rt, refused, decision.target, draft.prepared, where) from None
    except (TransientError, PermanentError):
        attempt.created_nothing = True  # refused before acting: 4xx or 429
        raise


def adopted(rt: Runtime, claim: ClaimRecord, issue: SentryIssue, decision: Decision, ticket: JiraTicket,
            cause: str) -> tuple[LinkRecord, str]:
    """The found ticket's link, active, and the delivery's note of it."""
    link = _activate(rt, claim, issue, decision, ticket, cause, adopted=True)
    return link, f"linked existing ticket {ticket.key} ({decision.route_name})"


def ticket_created(rt: Runtime, claim: ClaimRecord, issue: SentryIssue, draft: Draft,
                   created: tuple[str, str], cause: str) -> tuple[LinkRecord, str]:
    """The new ticket's link, active, and the delivery's note of it."""
    decision = draft.decision
    assert decision.target is not None
    jira_id, jira_key = created
    if draft.assignee_note and decision.target.assignee_email:
        assignees.left_unassigned(rt, draft.problem)
    ticket = JiraTicket(id=jira_id, key=jira_key, project_key=decision.target.jira_project)
    link = _activate(
        rt, claim, issue, decision, ticket, cause, adopted=False, assignee_note=draft.assignee_note,
        field_notes=draft.prepared.notes,
    )
    note = f"created {jira_key} for team {decision.team or '-'} via {decision.route_name}"
    if draft.assignee_note and decision.target.assignee_email:
        note += f"; {draft.assignee_note.removeprefix('left ')}"
    return link, note


def _activate(
    rt: Runtime,
    claim: ClaimRecord,
    issue: SentryIssue,
    decision: Decision,
    ticket: JiraTicket,
    cause: str,
    *,
    adopted: bool,
    assignee_note: str = "",
    field_notes: list[str] | None = None,
) -> LinkRecord:
    now = utcnow()
    target = decision.target
    assert target is not None
    values: dict[str, Any] = {
        "jira_issue_id": ticket.id,
        "jira_key": ticket.key,
        "state": LinkState.ACTIVE,
        "claim_token": None,
        "claimed_at": None,
        "sentry_status": issue.status or "unresolved",
        "sentry_substatus": issue.substatus,
        "sentry_priority": issue.priority,
        "sentry_changed_at": issue.last_seen or now,
        "jira_status": ticket.status,
        "jira_status_category": ticket.status_category or ("new" if not adopted else ""),
        "jira_changed_at": ticket.updated,  # Jira's own time only: it is the Jira-side watermark
        "synced_at": now,
        "changed_by": cause,
        "updated_at": now,
        "sentry_first_seen": issue.first_seen,
        "ticketed_at": now,
        # What the new ticket says of the issue's size: [enrichment] compares later counts with it.
        "noted_count": issue.count,
        "noted_users": issue.user_count,
        "noted_release": issue.last_release or None,  # known when the issue was read from Sentry
    }
    values["resolved_at"] = links.resolved_since(values["jira_status_category"], None, now)
    detail = (
        f"route {decision.route_name}, team {decision.team or '-'}, "
        f"project {ticket.project_key or target.jira_project}"
        f", components {list(target.components)}, assignee {target.assignee_email or '-'}"
    )
    if assignee_note and target.assignee_email:
        detail += f" ({assignee_note})"
    for note in field_notes or ():
        detail += f"; {note}"
    logs.bind(jira_key=ticket.key)  # what the rest of this delivery's lines are about, too
    link = LinkRecord(id=claim.link_id, sentry_issue_id=issue.id, live_sentry_issue_id=issue.id,
                      sentry_project=issue.project_slug[:200], route=decision.route_name[:200],
                      team=decision.team, create_attempted_at=claim.create_attempted_at, **values)
    action = "linked_existing" if adopted else "created"
    # One transaction for the link and its audit row (every ticket passes here).
    links.activate(rt.engine, claim.link_id, values,
                   links.audit_row(link, side="jira", action=action, detail=detail, cause=cause))
    rt.counters.incr(Metric.TICKETS_MADE, team=decision.team or "none",
                     how="adopted" if adopted else "created")
    return link


def _fields_tables(decision: Decision) -> str:
    """Where a field for this ticket may be set in the policy, most specific first."""
    places = []
    if decision.route_index is not None:
        places.append(route_label(decision.route_index, decision.route_name))
    if decision.team is not None:
        places.append(f"[teams.{toml_key(decision.team)}]")
    places.append("[defaults]")
    return " or ".join(places)


def finish_backlinks(rt: Runtime, link: LinkRecord, installation_uuid: str, cause: str) -> None:
    """Let a person find each side from the other. Both calls are idempotent upserts; what is done
    is recorded once at the end (one transaction), or, when the Sentry side fails, the Jira side
    alone, so the retry does not repeat it."""
    if link.remote_link_done and link.sentry_link_done:
        return
    key = link.jira_key
    assert key is not None
    org = rt.settings.sentry_org or ""
    remote_done_now = not link.remote_link_done
    if remote_done_now:
        rt.jira.upsert_remote_link(
            key,
            global_id=remote_link_global_id(org, link.sentry_issue_id),
            url=sentry_issue_url(rt.settings.sentry_links_url, org, link.sentry_issue_id),
            title=f"Sentry issue {link.sentry_issue_id}",
        )
    if link.sentry_link_done:
        _mark(rt, link, sentry_link_done=True)
        return
    uuid = rt.settings.sentry_installation_uuid or installation_uuid
    web_url = f"{rt.jira_browse_url}/{key}"
    # An installation Sentry said it deleted answers 404 on its external-issue endpoints: the
    # contract's fallback, a note, still names the ticket on the issue.
    recorded = installations.state(rt.engine, uuid) if uuid else None
    try:
        if uuid and (recorded is None or recorded.deleted_at is None):
            rt.sentry.link_external_issue(
                uuid,
                link.sentry_issue_id,
                web_url=web_url,
                project=key.split("-")[0],
                identifier=key,
            )
            how = "external issue"
        else:
            rt.sentry.add_note(link.sentry_issue_id, f"Jira ticket: {key} {web_url}")
            how = f"note ({recorded.describe()})" if recorded else "note (no integration installation known)"
    except BaseException:
        if remote_done_now:
            _mark(rt, link, sentry_link_done=False)
        raise
    _mark(rt, link, sentry_link_done=True,
          audit_row=links.audit_row(link, side="sentry", action="linked", detail=how, cause=cause))


def _mark(
    rt: Runtime, link: LinkRecord, *, sentry_link_done: bool, audit_row: dict[str, Any] | None = None
) -> None:
    """The remote link is done by now; whether the Sentry side is, and the audit row of it."""
    links.mark_backlinks(rt.engine, link.id, remote_link_done=True, sentry_link_done=sentry_link_done,
                         audit=audit_row)
