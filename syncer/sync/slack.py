"""The team's triage loop in Slack: each owned issue's message in its team's channel, kept true, and
what people's reactions and buttons on it ask for.

Slack work never runs inside a ticket's or a status change's delivery: those only *ask* for it, by
storing a delivery of source `slack-out` in the inbox (`request`), which a worker runs as its own
task with the inbox's retries. So a Slack outage delays messages, never tickets or status sync, and
the messages catch up once Slack answers (the retry window is the same day-long one).

A message is posted once (under `locks.message_lock`, and only while the issue's row has no `ts`) and
then only updated with `chat.update`; an update that would show what the message shows already is
not sent (`core.slack.fingerprint`).

What people ask for in Slack goes through the same paths as everything else: a ticket through
`tickets.create_or_link` (the claim makes it one ticket, however many reactions and clicks race), a
resolution through Sentry and then the ticket's close through `outbound`. Only members of the team's
channel may act; every act, refused ones too, is audited with the Slack user.
"""

from __future__ import annotations

import json
import uuid

from syncer import logs
from syncer.core import slack as render
from syncer.core import status
from syncer.core.issue import SentryIssue
from syncer.core.render import sentry_issue_url
from syncer.core.routing import Decision, decide
from syncer.errors import PayloadError, TransientError
from syncer.locks import link_lock, message_lock
from syncer.runtime import Runtime
from syncer.slack.client import SlackClient
from syncer.slack.webhooks import SlackAct, parse
from syncer.store import deliveries, installations, links
from syncer.store import slack as messages
from syncer.store.schema import LinkState, utcnow
from syncer.sync.outcome import Outcome

log = logs.get_logger(__name__)

SOURCE = "slack-out"  # the inbox's source for syncer's own Slack work
REFRESH, REGRESSED, RELEASE = "refresh", "regressed", "release"
# A message whose first post is still being made by another worker: look again shortly.
POSTING_RETRY_SECONDS = 3.0
MEMBERS_TTL_SECONDS = 60
RELEASE_LINES = 40  # issues a release summary reads titles for (it shows 20 of each kind)


# --- asking for Slack work (from any handler) -------------------------------------------------------


def on_routed(rt: Runtime, issue: SentryIssue, decision: Decision) -> None:
    """An issue a route sent to a team (to Jira, or to its channel only): its message, if the team
    has a channel and Slack is set up."""
    if rt.slack is None or decision.team is None or decision.team not in rt.policy.teams:
        return
    # The team's own channel: an alert rule's settings may have chosen another team than the route.
    channel = rt.policy.teams[decision.team].slack_channel
    if not channel:
        return
    messages.ensure(
        rt.engine,
        issue.id,
        team=decision.team,
        route=decision.route_name,
        action=decision.action,
        channel=channel,
    )
    request(rt, issue.id, REFRESH)


def request(
    rt: Runtime,
    sentry_issue_id: str,
    kind: str,
    *,
    key: str | None = None,
    detail: dict[str, str] | None = None,
) -> None:
    """Store a piece of Slack work for the issue's message (when it has one) and hand it out.
    `key` makes the work once-only (a regression's reply, keyed by the delivery that told of it)."""
    if rt.slack is None or messages.load(rt.engine, sentry_issue_id) is None:
        return
    body = json.dumps({"issue": sentry_issue_id, **(detail or {})}).encode()
    stored = deliveries.store(
        rt.engine,
        source=SOURCE,
        key=key or f"{kind}:{sentry_issue_id}:{uuid.uuid4().hex}",
        resource=kind,
        action="",
        payload=body,
    )
    if stored.duplicate or rt.enqueue is None:
        return
    try:
        rt.enqueue(stored.delivery_id)
    except Exception as exc:  # the broker is down: the sweeper hands the stored work out later
        log.warning(
            "slack work %s not enqueued (%s); left for the sweeper", stored.delivery_id, type(exc).__name__
        )


def after_sentry_event(
    rt: Runtime, sentry_issue_id: str, *, action: str, substatus: str, own_echo: bool, delivery_id: int
) -> None:
    """A Sentry webhook about an issue was handled: its message follows. Our own echoes are left
    out: what syncer changed itself asks for its update when the whole change is done."""
    if rt.slack is None or own_echo or action == "created":  # a new issue's post comes from routing
        return
    if action == "unresolved" and substatus == "regressed":
        request(rt, sentry_issue_id, REGRESSED, key=f"{REGRESSED}:{sentry_issue_id}:{delivery_id}")
    else:
        request(rt, sentry_issue_id, REFRESH)


def after_ticket_change(rt: Runtime, jira_issue_id: str) -> None:
    """A Jira webhook moved a linked ticket (or its issue): the issue's message follows."""
    if rt.slack is None or not jira_issue_id:
        return
    link = links.active_for_ticket(rt.engine, jira_issue_id)
    if link is not None:
        request(rt, link.sentry_issue_id, REFRESH)


# --- running Slack work -----------------------------------------------------------------------------


def run(rt: Runtime, kind: str, payload: str, cause: str) -> Outcome:
    """One piece of `slack-out` work."""
    client = rt.slack
    if client is None:
        return Outcome.ignore("Slack is not set up (SYNCER_SLACK_BOT_TOKEN, SYNCER_SLACK_SIGNING_SECRET)")
    try:
        data = json.loads(payload)
        issue_id = str(data["issue"])
    except (ValueError, KeyError, TypeError):
        raise PayloadError("slack work without an issue") from None
    logs.bind(sentry_issue_id=issue_id)
    if kind == RELEASE:
        return _release_summary(rt, client, str(data.get("release") or ""), str(data.get("channel") or ""))
    with message_lock(rt, issue_id):
        record = messages.load(rt.engine, issue_id)
        if record is None:
            return Outcome.ignore(f"sentry issue {issue_id} has no Slack message")
        issue = rt.sentry.find_issue(issue_id)
        if issue is None:  # deleted in Sentry since: the message keeps what it last showed
            return Outcome.ignore(f"Sentry has no issue {issue_id} any more (deleted)")
        if kind == REGRESSED:
            return _regressed(rt, client, record, issue)
        return _refresh(rt, client, record, issue)


def _facts(rt: Runtime, record: messages.MessageRecord, issue: SentryIssue) -> render.MessageFacts:
    link = links.live(rt.engine, issue.id)
    ticket_key = (
        link.jira_key if link is not None and link.state == LinkState.ACTIVE and link.jira_key else ""
    )
    return render.MessageFacts(
        issue=issue,
        sentry_url=issue.permalink
        or sentry_issue_url(rt.settings.sentry_links_url, rt.settings.sentry_org or "", issue.id),
        route=record.route,
        team=record.team,
        action=record.action,
        ticket_key=ticket_key,
        ticket_url=f"{rt.jira_browse_url}/{ticket_key}" if ticket_key else "",
        ticket_status=link.jira_status if link is not None and ticket_key else "",
        ticket_done=bool(link is not None and ticket_key and link.jira_status_category == status.DONE),
        acknowledged_by=record.acknowledged_by,
    )


def _refresh(rt: Runtime, client: SlackClient, record: messages.MessageRecord, issue: SentryIssue) -> Outcome:
    facts = _facts(rt, record, issue)
    text, blocks = render.render_message(facts)
    shown = render.fingerprint(text, blocks)
    if record.ts is None or record.channel_id is None:
        channel_id, ts = client.post_message(record.channel, text=text, blocks=blocks)
        messages.posted(rt.engine, issue.id, channel_id=channel_id, ts=ts, shown=shown)
        if issue.first_release:
            messages.set_release(rt.engine, issue.id, issue.first_release)
            _ask_release_summary(rt, issue.id, issue.first_release, record.channel)
        return Outcome(f"posted to {record.channel} ({ts})")
    if shown == record.shown:
        return Outcome.ignore(f"the message in {record.channel} shows this already")
    client.update_message(record.channel_id, record.ts, text=text, blocks=blocks)
    messages.shown(rt.engine, issue.id, shown)
    return Outcome(
        f"updated the message in {record.channel} ({record.ts}): {render.state_words(facts)}"
    )


def _regressed(
    rt: Runtime, client: SlackClient, record: messages.MessageRecord, issue: SentryIssue
) -> Outcome:
    if record.ts is None or record.channel_id is None:
        # Not posted yet (Slack was down when the issue came): the post shows the regression.
        return _refresh(rt, client, record, issue)
    client.post_message(record.channel_id, text=render.regression_reply(issue), thread_ts=record.ts)
    messages.told_regression(
        rt.engine, issue.id, count=record.regressions_told + 1, release=issue.last_release
    )
    if issue.last_release:
        _ask_release_summary(rt, issue.id, issue.last_release, record.channel)
    refreshed = _refresh(rt, client, record, issue)
    return Outcome(f"told the regression in the thread; {refreshed.note}")


def _ask_release_summary(rt: Runtime, issue_id: str, release: str, channel: str) -> None:
    request(rt, issue_id, RELEASE, detail={"release": release, "channel": channel})


def _release_summary(rt: Runtime, client: SlackClient, release: str, channel: str) -> Outcome:
    """Release watch: the channel's summary of a release's new issues and regressions, one message
    per release and channel, updated as more arrive."""
    if not release or not channel:
        raise PayloadError("release summary without a release or channel")
    records = messages.in_release(rt.engine, release, channel)
    posted = [r for r in records if r.channel_id]
    if not posted:
        return Outcome.ignore(f"no message in {channel} for release {release}")
    channel_id = posted[0].channel_id or ""
    org = rt.settings.sentry_org or ""
    lines = [
        render.ReleaseLine(
            title=_title(rt, r.sentry_issue_id),
            url=sentry_issue_url(rt.settings.sentry_links_url, org, r.sentry_issue_id),
            regressed=r.release != release,
        )
        for r in posted[:RELEASE_LINES]
    ]
    text, blocks = render.render_release(release, lines)
    shown = render.fingerprint(text, blocks)
    with message_lock(rt, f"release:{channel_id}:{release}"):
        thread = messages.release_thread(rt.engine, channel_id, release)
        if thread is None or thread.ts is None:
            _, ts = client.post_message(channel_id, text=text, blocks=blocks)
            messages.release_posted(rt.engine, channel_id, release, ts=ts, shown=shown)
            return Outcome(f"release {release}: summary posted to {channel}")
        if thread.shown == shown:
            return Outcome.ignore(f"release {release}: the summary in {channel} shows this already")
        client.update_message(channel_id, thread.ts, text=text, blocks=blocks)
        messages.release_posted(rt.engine, channel_id, release, ts=thread.ts, shown=shown)
        return Outcome(f"release {release}: summary in {channel} updated")


def _title(rt: Runtime, issue_id: str) -> str:
    issue = rt.sentry.find_issue(issue_id)
    return issue.title if issue is not None else f"Sentry issue {issue_id}"


# --- what people do in Slack ------------------------------------------------------------------------


def on_act(rt: Runtime, resource: str, payload: str, cause: str) -> Outcome:
    """A reaction or a button click on one of syncer's messages."""
    client = rt.slack
    if client is None:
        return Outcome.ignore("Slack is not set up")
    act = parse(resource, payload)
    if act is None or not act.channel or not act.ts or not act.user:
        return Outcome.ignore("not about a message")
    meaning = (
        rt.policy.slack.meaning(act.reaction) if act.reaction else render.BUTTON_MEANINGS.get(act.action_id)
    )
    if meaning is None:
        return Outcome.ignore(f"{act.what} means nothing to syncer")
    record = messages.by_message(rt.engine, act.channel, act.ts)
    if record is None:
        return Outcome.ignore(f"{act.what} on a message syncer did not post")
    logs.bind(sentry_issue_id=record.sentry_issue_id)
    if act.user not in _members(rt, client, act.channel):
        why = f"{act.what} by {act.user}, who is not a member of {record.channel}: refused"
        messages.audit(rt.engine, record.sentry_issue_id, action="refused", detail=why, cause=cause)
        return Outcome.ignore(why)
    if meaning == "acknowledge":
        return _acknowledge(
            rt,
            client,
            record,
            act,
            cause,
            assign=act.action_id == render.ASSIGN_TO_ME or rt.policy.slack.assign_on_acknowledge,
        )
    if meaning == "ticket":
        return _ticket(rt, record, act, cause)
    return _resolve(rt, record, act, cause)


def _members(rt: Runtime, client: SlackClient, channel_id: str) -> set[str]:
    """The channel's members, read at most once a minute (Slack's tier-4 method, shared by workers)."""
    key = f"syncer:slack-members:{channel_id}"
    if rt.redis is not None and (cached := rt.redis.get(key)):
        return set(json.loads(cached))
    members = client.channel_members(channel_id)
    if rt.redis is not None:
        rt.redis.setex(key, MEMBERS_TTL_SECONDS, json.dumps(sorted(members)))
    return members


def _acknowledge(
    rt: Runtime,
    client: SlackClient,
    record: messages.MessageRecord,
    act: SlackAct,
    cause: str,
    *,
    assign: bool,
) -> Outcome:
    first = messages.acknowledge(rt.engine, record.sentry_issue_id, act.user)
    note = f"acknowledged by {act.user} ({act.what})" if first else f"{act.what} by {act.user}"
    if assign:
        note += "; " + _assign(rt, client, record.sentry_issue_id, act.user, cause)
    messages.audit(
        rt.engine,
        record.sentry_issue_id,
        action="acknowledged" if first else "acknowledge_again",
        detail=note,
        cause=cause,
    )
    request(rt, record.sentry_issue_id, REFRESH)
    return Outcome(note)


def _assign(rt: Runtime, client: SlackClient, issue_id: str, user: str, cause: str) -> str:
    """Assign the Sentry issue to the Slack user, found in [people] by their profile's e-mail."""
    email = client.user_email(user)
    if not email:
        return "not assigned: their Slack profile shows no e-mail (the app needs users:read.email)"
    person = rt.policy.directory.by_email(email)
    if person is None:
        return f"not assigned: {email} is not in [people]"
    rt.sentry.update_issue(issue_id, assigned_to=person.sentry_ref)
    note = f"assigned in Sentry to {email}"
    link = links.live(rt.engine, issue_id)
    if rt.policy.status.assignee_to_jira and link is not None and link.state == LinkState.ACTIVE:
        # Sentry's `issue.assigned` echo of our own change is left alone: the ticket follows here.
        from syncer.sync import outbound

        followed = outbound.assign_ticket(
            rt, link, person.email, f"assigned from Slack: assign {link.jira_key} to {email}", cause=cause
        )
        note += f"; {followed.note}"
    return note


def _ticket(rt: Runtime, record: messages.MessageRecord, act: SlackAct, cause: str) -> Outcome:
    from syncer.sync import tickets  # tickets asks this module for messages: imported when used

    link = links.live(rt.engine, record.sentry_issue_id)
    if link is not None and link.state == LinkState.ACTIVE:
        return Outcome.ignore(f"{act.what} by {act.user}: already linked to {link.jira_key}")
    issue = rt.sentry.get_issue(record.sentry_issue_id)
    decision = decide(issue, rt.policy, lambda: tickets.tags_for(rt, issue.id)).asked_for_ticket()
    if not decision.files_ticket:
        why = (
            f"{act.what} by {act.user}: route {decision.route_name} now ignores the issue ({decision.reason})"
        )
        messages.audit(rt.engine, issue.id, action="ticket_refused", detail=why, cause=cause)
        return Outcome.ignore(why)
    messages.audit(
        rt.engine, issue.id, action="ticket_asked", detail=f"{act.what} by {act.user}", cause=cause
    )
    outcome = tickets.create_or_link(
        rt, issue, decision, installation_uuid=installations.latest(rt.engine) or "", cause=cause
    )
    return Outcome(f"{act.what} by {act.user}: {outcome.note}", ignored=outcome.ignored)


def _resolve(rt: Runtime, record: messages.MessageRecord, act: SlackAct, cause: str) -> Outcome:
    from syncer.sync import outbound

    issue_id = record.sentry_issue_id
    resolution = rt.policy.status.sentry_resolution
    issue = rt.sentry.update_issue(issue_id, status=resolution)
    messages.audit(
        rt.engine,
        issue_id,
        action="resolve",
        detail=f"{act.what} by {act.user}: Sentry {resolution}",
        cause=cause,
    )
    note = f"{act.what} by {act.user}: Sentry issue {resolution}"
    link = links.live(rt.engine, issue_id)
    if link is not None and link.state == LinkState.PENDING:
        raise TransientError(f"a ticket for sentry issue {issue_id} is being created", retry_after=5.0)
    if link is not None and link.state == LinkState.ACTIVE and link.jira_issue_id:
        # Sentry echoes our change as our own, which outbound leaves alone: the ticket is closed here.
        with link_lock(rt, link.id, expiry=rt.settings.link_lock_seconds):
            fresh = links.load(rt.engine, link.id)
            if fresh is not None and fresh.state == LinkState.ACTIVE and fresh.jira_issue_id:
                ticket = rt.jira.get_ticket(fresh.jira_issue_id)
                if ticket is not None:
                    decision = status.decide_outbound(
                        "resolved",
                        issue=issue,
                        ticket=ticket,
                        known=fresh,
                        policy=rt.policy.status,
                        now=utcnow(),
                    )
                    applied = outbound.apply_outbound(rt, fresh, issue, ticket, decision, cause=cause)
                    note += f"; {applied.note}"
    request(rt, issue_id, REFRESH)
    return Outcome(note)
