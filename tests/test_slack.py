"""The team's triage loop in Slack, through the real stack: the fake Sentry files an issue, the web app
stores its webhook, a real worker routes it and posts to the fake Slack; people react and click in the
fake Slack, which signs its requests as Slack does; the worker acts on Sentry and Jira and keeps the
message true. Routing and intake are tested on their own first (pure decisions, the real web app)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from syncer.core.issue import SentryIssue
from syncer.core.routing import decide
from syncer.core.slack import escape, render_message
from syncer.errors import ConfigError
from syncer.fakes.base import FakeServer, Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.fakes.slack import FakeSlack
from syncer.policy import load_policy, parse_policy
from syncer.store.schema import DeliveryState, Link, LinkState
from tests.harness import audit_of, deliveries, link_of, wait_for

CHANNEL = "#payments-alerts"
POLICY = Path(__file__).parent / "fixtures" / "policies" / "service.toml"


# --- routing: the notify action -----------------------------------------------------------------------


def test_a_notify_route_posts_without_a_ticket_and_keeps_where_the_ticket_would_go() -> None:
    policy = load_policy(POLICY)
    issue = SentryIssue(id="1", title="KeyError", level="error", project_slug="checkout-lab-api")
    decision = decide(issue, policy, lambda: {})
    assert decision.action == "notify"
    assert not decision.files_ticket
    assert decision.slack_channel == CHANNEL
    assert decision.target is not None and decision.target.jira_project == "PAY"
    asked = decision.asked_for_ticket()
    assert asked.action == "create" and asked.files_ticket and asked.route_name == "checkout-lab"
    created = decide(SentryIssue(id="2", level="error", project_slug="checkout-api"), policy, lambda: {})
    assert created.action == "create" and created.slack_channel == CHANNEL


def test_route_explain_says_notify_and_names_the_channel() -> None:
    from syncer.cli.views import format_explanation

    policy = load_policy(POLICY)
    issue = SentryIssue(id="1", title="KeyError", level="error", project_slug="checkout-lab-api")
    text = format_explanation(decide(issue, policy, lambda: {}), issue)
    assert "Result: notify team checkout in Slack, no ticket until someone asks for one there" in text
    assert f"channel     {CHANNEL}" in text
    from syncer.cli.views import format_routing_table  # what check-config prints

    table = format_routing_table(policy)
    assert f"team checkout: notify {CHANNEL}, ticket when asked for: PAY" in table
    assert f"team checkout: post to {CHANNEL}: PAY" in table


POLICY_HEAD = '[defaults]\njira_project = "OPS"\n'


def test_notify_needs_the_teams_channel() -> None:
    text = POLICY_HEAD + '[teams.a]\n[[routes]]\nwhen = {}\nteam = "a"\naction = "notify"\n'
    with pytest.raises(
        ConfigError, match=r"routes\[0\]\.action: \"notify\" posts to the team's Slack channel"
    ):
        parse_policy(text, "p.toml")


@pytest.mark.parametrize("channel", ["payments-alerts", "#Payments", "#with space", "c123"])
def test_a_slack_channel_is_a_name_with_its_hash_or_an_id(channel: str) -> None:
    with pytest.raises(ConfigError, match="is not a Slack channel"):
        parse_policy(POLICY_HEAD + f'[teams.a]\nslack_channel = "{channel}"\n', "p.toml")
    parse_policy(POLICY_HEAD + '[teams.a]\nslack_channel = "C0123456789"\n', "p.toml")


def test_one_meaning_per_reaction() -> None:
    with pytest.raises(
        ConfigError, match=r"slack.resolve_reactions: :eyes: is also in acknowledge_reactions"
    ):
        parse_policy(POLICY_HEAD + '[slack]\nresolve_reactions = ["eyes"]\n', "p.toml")
    policy = parse_policy(
        POLICY_HEAD + '[slack]\nticket_reactions = [":jira:", "admission_tickets"]\n', "p.toml"
    )
    assert policy.slack.meaning("jira") == "ticket" and policy.slack.meaning("ticket") is None
    assert policy.slack.meaning("eyes::skin-tone-3") == "acknowledge"


def test_sentry_text_is_inert_in_mrkdwn() -> None:
    from syncer.core.slack import MessageFacts

    issue = SentryIssue(
        id="7",
        title="<!channel> & <https://evil|click>",
        culprit="a > b",
        level="error",
        project_slug="checkout-api",
    )
    text, blocks = render_message(
        MessageFacts(issue=issue, sentry_url="https://s/7", route="r", team="t", action="notify")
    )
    shown = json.dumps(blocks)
    assert "<!channel>" not in shown and "<https://evil" not in shown and "<!channel>" not in text
    assert escape("<!channel> & <https://evil|click>") in shown
    assert "a &gt; b" in shown


# --- intake: POST /webhooks/slack ---------------------------------------------------------------------


def _reaction_body(event_id: str = "Ev0TEST0001") -> bytes:
    return json.dumps(
        {
            "type": "event_callback",
            "event_id": event_id,
            "team_id": "T1",
            "event": {
                "type": "reaction_added",
                "user": "U1",
                "reaction": "eyes",
                "item": {"type": "message", "channel": "C1", "ts": "1.000001"},
            },
        }
    ).encode()


def test_url_verification_is_answered_with_the_challenge(
    clean: None, web: FakeServer, fake_slack: FakeSlack
) -> None:
    assert fake_slack.verify_events_url(f"{web.url}/webhooks/slack")


def test_a_bad_signature_is_401_and_nothing_is_stored(
    clean: None, web: FakeServer, fake_slack: FakeSlack, engine: Engine
) -> None:
    body = _reaction_body()
    headers = fake_slack.sign(body)
    headers["X-Slack-Signature"] = "v0=" + "0" * 64
    answer = httpx.post(
        f"{web.url}/webhooks/slack",
        content=body,
        timeout=10,
        headers={"Content-Type": "application/json", **headers},
    )
    assert answer.status_code == 401
    # Signed right, but six minutes ago: outside the replay window.
    stale = httpx.post(
        f"{web.url}/webhooks/slack",
        content=body,
        timeout=10,
        headers={
            "Content-Type": "application/json",
            **fake_slack.sign(body, timestamp=int(time.time()) - 360),
        },
    )
    assert stale.status_code == 401
    missing = httpx.post(
        f"{web.url}/webhooks/slack", content=body, timeout=10, headers={"Content-Type": "application/json"}
    )
    assert missing.status_code == 401
    assert deliveries(engine, "slack") == []


def test_an_event_is_stored_once_however_often_slack_retries_it(
    clean: None, web: FakeServer, fake_slack: FakeSlack, engine: Engine
) -> None:
    body = _reaction_body("Ev0TESTDUP1")
    answers = [
        httpx.post(
            f"{web.url}/webhooks/slack",
            content=body,
            timeout=10,
            headers={
                "Content-Type": "application/json",
                "X-Slack-Retry-Num": str(n),
                **fake_slack.sign(body),
            },
        )
        for n in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    stored = deliveries(engine, "slack")
    assert [(d.delivery_key, d.resource, d.action) for d in stored] == [
        ("event:Ev0TESTDUP1", "event", "reaction_added")
    ]


# --- the loop, end to end -----------------------------------------------------------------------------


def _message(fake_slack: FakeSlack, title: str) -> dict[str, Any] | None:
    return next((m for m in fake_slack.messages(CHANNEL) if title in m.get("text", "")), None)


def _posted(fake_slack: FakeSlack, title: str, timeout: float = 45) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: _message(fake_slack, title), timeout, what=f"the message about {title!r} in {CHANNEL}"
    )
    return found


def _buttons(message: dict[str, Any]) -> list[str]:
    return [
        e["action_id"]
        for b in message.get("blocks", [])
        for e in b.get("elements", [])
        if e.get("type") == "button"
    ]


def _settled(engine: Engine) -> None:
    wait_for(
        lambda: all(d.state not in DeliveryState.UNFINISHED for d in deliveries(engine)),
        60,
        what="every delivery to finish",
    )


def _shown_with_its_ticket(engine: Engine, fake_slack: FakeSlack, issue_id: str, title: str) -> Link:
    """The issue's active, back-linked ticket once the channel's message shows it and the inbox is idle."""
    link: Link = wait_for(
        lambda: (
            (found := link_of(engine, issue_id)) is not None
            and found.state == LinkState.ACTIVE
            and found.sentry_link_done
            and found
        ),
        45,
        what=f"the ticket of {issue_id}",
    )
    wait_for(
        lambda: (m := _message(fake_slack, title)) and link.jira_key in json.dumps(m["blocks"]),
        45,
        what="the message to show the ticket",
    )
    _settled(engine)
    return link


def _tickets(fake_jira: FakeJira, issue_id: str) -> list[dict[str, Any]]:
    return [i for i in fake_jira.issues() if f"sentry-{issue_id}" in i["labels"]]


def test_notify_then_a_reaction_and_a_racing_click_make_exactly_one_ticket(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    fake_slack: FakeSlack,
    engine: Engine,
) -> None:
    issue = fake_sentry.file_issue(
        project="checkout-lab-api", title="KeyError: 'coupon' <b>", release="3.1.0"
    )
    message = _posted(fake_slack, "KeyError: 'coupon'")
    assert "create_ticket" in _buttons(message) and "resolve" in _buttons(message)
    assert "&lt;b&gt;" in message["text"]
    facts = json.dumps(message["blocks"])
    assert "checkout-lab" in facts and "3.1.0" in facts and "none yet" in facts
    _settled(engine)
    assert _tickets(fake_jira, issue["id"]) == []
    assert link_of(engine, issue["id"]) is None

    fake_slack.person_react("alice", CHANNEL, message["ts"], "ticket")
    fake_slack.person_click("bob", CHANNEL, message["ts"], "create_ticket")
    link = wait_for(
        lambda: (
            (found := link_of(engine, issue["id"])) is not None and found.state == LinkState.ACTIVE and found
        ),
        45,
        what="the ticket asked for in Slack",
    )
    _settled(engine)
    assert len(_tickets(fake_jira, issue["id"])) == 1
    updated = wait_for(
        lambda: (
            (m := _message(fake_slack, "KeyError: 'coupon'"))
            and link.jira_key in json.dumps(m["blocks"])
            and m
        ),
        30,
        what="the message to show the ticket",
    )
    assert "create_ticket" not in _buttons(updated)
    asked = [a for a in audit_of(engine, issue["id"]) if a.side == "slack" and a.action == "ticket_asked"]
    users = {fake_slack.user_id("alice"), fake_slack.user_id("bob")}
    assert asked and all(any(u in a.detail for u in users) for a in asked)


def test_only_members_of_the_channel_may_act(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    fake_slack: FakeSlack,
    engine: Engine,
) -> None:
    issue = fake_sentry.file_issue(project="checkout-lab-api", title="ValueError: outsider")
    message = _posted(fake_slack, "ValueError: outsider")
    fake_slack.person_react("dave", CHANNEL, message["ts"], "ticket")  # in the workspace, not the channel
    wait_for(
        lambda: any(a.action == "refused" for a in audit_of(engine, issue["id"])),
        45,
        what="the outsider's reaction to be refused",
    )
    _settled(engine)
    assert _tickets(fake_jira, issue["id"]) == []
    refused = next(a for a in audit_of(engine, issue["id"]) if a.action == "refused")
    assert fake_slack.user_id("dave") in refused.detail
    from syncer.sync.links import format_detail  # what `syncer links show` prints

    shown = format_detail(engine, issue["id"])
    assert "no links" in shown and "slack   refused" in shown

    fake_slack.person_react("alice", CHANNEL, message["ts"], "eyes")
    wait_for(
        lambda: (
            (m := _message(fake_slack, "ValueError: outsider"))
            and f"<@{fake_slack.user_id('alice')}>" in json.dumps(m["blocks"])
        ),
        45,
        what="the acknowledgement on the message",
    )
    assert any(a.action == "acknowledged" for a in audit_of(engine, issue["id"]))


def test_resolve_from_slack_resolves_sentry_closes_the_ticket_and_updates_the_message_once(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    fake_slack: FakeSlack,
    engine: Engine,
) -> None:
    issue = fake_sentry.file_issue(project="checkout-api", title="TimeoutError: payment gateway")
    link = _shown_with_its_ticket(engine, fake_slack, issue["id"], "TimeoutError: payment gateway")
    message = _message(fake_slack, "TimeoutError: payment gateway")
    assert message is not None
    edits_before = len(fake_slack.edits(CHANNEL, message["ts"]))

    fake_slack.person_react("bob", CHANNEL, message["ts"], "white_check_mark")
    wait_for(lambda: fake_sentry.issue(issue["id"])["status"] == "resolved", 45, what="Sentry resolved")
    wait_for(
        lambda: (t := fake_jira.issue(link.jira_key or "")) and t["status_category"] == "done",
        45,
        what="the ticket closed",
    )
    wait_for(
        lambda: "Resolved, ticket closed" in (_message(fake_slack, "TimeoutError") or {}).get("text", ""),
        45,
        what="the message to say so",
    )
    _settled(engine)
    assert len(fake_slack.edits(CHANNEL, message["ts"])) == edits_before + 1
    assert "resolve" not in _buttons(_message(fake_slack, "TimeoutError") or {})


def test_a_regression_is_told_in_the_thread_naming_the_release(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    fake_slack: FakeSlack,
    engine: Engine,
) -> None:
    issue = fake_sentry.file_issue(project="checkout-api", title="IndexError: cart", release="4.0.0")
    message = _posted(fake_slack, "IndexError: cart")
    wait_for(
        lambda: (found := link_of(engine, issue["id"])) is not None and found.state == LinkState.ACTIVE,
        45,
        what="the ticket",
    )
    _settled(engine)
    fake_sentry.person_resolve(issue["id"])
    wait_for(
        lambda: "Resolved" in (_message(fake_slack, "IndexError: cart") or {}).get("text", ""),
        45,
        what="the message to show the resolution",
    )
    _settled(engine)
    fake_sentry.regress(issue["id"], release="4.0.1")
    replies = wait_for(lambda: fake_slack.replies(CHANNEL, message["ts"]), 45, what="the thread reply")
    assert "Regressed in release 4.0.1" in replies[0]["text"]
    wait_for(
        lambda: "Regressed in 4.0.1" in (_message(fake_slack, "IndexError: cart") or {}).get("text", ""),
        45,
        what="the message's state",
    )
    _settled(engine)
    assert len(fake_slack.replies(CHANNEL, message["ts"])) == 1
    assert len([m for m in fake_slack.messages(CHANNEL) if "IndexError: cart" in m["text"]]) == 1

    # Release watch: 4.0.0 had it as new, 4.0.1 as a regression.
    def summaries() -> list[str]:
        return [m["text"] for m in fake_slack.messages(CHANNEL) if m["text"].startswith("Release")]

    wait_for(
        lambda: len(summaries()) == 2 and "1 regression" in " ".join(summaries()),
        45,
        what="the two release summaries",
    )
    assert "Release 4.0.0: 1 new issue, 0 regressions" in summaries()
    assert "Release 4.0.1: 0 new issues, 1 regression" in summaries()


def test_slack_down_tickets_still_made_and_the_message_catches_up(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    fake_slack: FakeSlack,
    engine: Engine,
) -> None:
    fake_slack.faults.append(Fault("*", r"^/api/", status=503, times=None))
    try:
        issue = fake_sentry.file_issue(project="checkout-api", title="OSError: disk full")
        link = wait_for(
            lambda: (
                (found := link_of(engine, issue["id"])) is not None
                and found.state == LinkState.ACTIVE
                and found
            ),
            45,
            what="the ticket, Slack down",
        )
        wait_for(
            lambda: any(
                d.source == "slack-out" and d.attempts >= 1 and d.last_error for d in deliveries(engine)
            ),
            45,
            what="a Slack post to fail",
        )
        assert _message(fake_slack, "OSError: disk full") is None
        assert len(_tickets(fake_jira, issue["id"])) == 1
    finally:
        fake_slack.faults.clear()
    caught_up = wait_for(
        lambda: (
            (m := _message(fake_slack, "OSError: disk full"))
            and link.jira_key in json.dumps(m["blocks"])
            and m
        ),
        60,
        what="the message once Slack is back",
    )
    assert caught_up["ts"]


def test_a_click_is_stored_once_by_its_trigger_id(
    clean: None, web: FakeServer, fake_slack: FakeSlack, engine: Engine
) -> None:
    from urllib.parse import urlencode

    payload = {
        "type": "block_actions",
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "user": {"id": "U1"},
        "channel": {"id": "C1"},
        "container": {"message_ts": "1.000001"},
        "actions": [{"action_id": "resolve", "value": "1", "action_ts": "1.5"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answers = [
        httpx.post(
            f"{web.url}/webhooks/slack",
            content=body,
            timeout=10,
            headers={**headers, **fake_slack.sign(body)},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    stored = deliveries(engine, "slack")
    assert [(d.delivery_key, d.resource, d.action) for d in stored] == [
        ("action:13345224609.738474920.8088930838d88f008e0", "interaction", "block_actions")
    ]
    garbled = httpx.post(
        f"{web.url}/webhooks/slack",
        content=b"payload=%7Bnot-json",
        timeout=10,
        headers={**headers, **fake_slack.sign(b"payload=%7Bnot-json")},
    )
    assert garbled.status_code == 400
    assert len(deliveries(engine, "slack")) == 1


def test_slacks_429_holds_the_post_until_its_retry_after(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_slack: FakeSlack, engine: Engine
) -> None:
    fake_slack.faults.append(
        Fault("POST", r"^/api/chat\.postMessage$", status=429, times=1, headers={"Retry-After": "2"})
    )
    fake_sentry.file_issue(project="checkout-lab-api", title="RecursionError: ratelimited")
    _posted(fake_slack, "RecursionError: ratelimited")
    posts = fake_slack.calls.calls("POST", "/api/chat.postMessage")
    assert len(posts) == 2
    assert posts[1].at - posts[0].at >= 2.0  # not before Slack's Retry-After
    (work,) = [d for d in deliveries(engine, "slack-out") if d.resource == "refresh" and d.attempts > 1]
    assert work.state == DeliveryState.DONE


def test_notify_routes_without_slack_are_a_configuration_error(process_env: dict[str, str]) -> None:
    import subprocess
    import sys

    no_slack = {k: v for k, v in process_env.items() if not k.startswith("SYNCER_SLACK_")}
    done = subprocess.run(
        [sys.executable, "-m", "syncer", "check-config"],
        env=no_slack,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert 'routes[11] "checkout-lab": action = "notify" posts to Slack, which is not set up' in done.stderr
    assert "Slack: teams name channels, but Slack is not set up" in done.stdout
    half = {**no_slack, "SYNCER_SLACK_BOT_TOKEN": "xoxb-1"}
    done = subprocess.run(
        [sys.executable, "-m", "syncer", "worker"],
        env=half,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "SYNCER_SLACK_BOT_TOKEN is set but SYNCER_SLACK_SIGNING_SECRET is not" in done.stderr
    assert "xoxb-1" not in done.stdout + done.stderr


def test_assign_to_me_acknowledges_and_says_why_nobody_was_assigned(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_slack: FakeSlack, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="checkout-lab-api", title="LookupError: assign me")
    message = _posted(fake_slack, "LookupError: assign me")
    fake_slack.person_click("bob", CHANNEL, message["ts"], "assign_to_me")
    line = wait_for(
        lambda: next((a for a in audit_of(engine, issue["id"]) if a.action == "acknowledged"), None),
        45,
        what="the acknowledgement",
    )
    # The session's policy has no [people]: the e-mail of Bob's Slack profile finds nobody in Sentry.
    assert "not assigned: bob@example.com is not in [people]" in line.detail
    assert fake_slack.user_id("bob") in line.detail
    assert fake_sentry.issue(issue["id"])["assignedTo"] is None
    wait_for(
        lambda: (
            (m := _message(fake_slack, "LookupError: assign me"))
            and f"<@{fake_slack.user_id('bob')}>" in json.dumps(m["blocks"])
        ),
        45,
        what="the message to name who acknowledged",
    )


def test_a_ticket_closed_in_jira_updates_the_message(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, fake_slack: FakeSlack, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="checkout-api", title="MemoryError: closed in Jira")
    link = _shown_with_its_ticket(engine, fake_slack, issue["id"], "MemoryError: closed in Jira")
    fake_jira.person_transition(link.jira_key or "", "Done")
    wait_for(
        lambda: fake_sentry.issue(issue["id"])["status"] == "resolved", 45, what="Sentry resolved by Jira"
    )
    wait_for(
        lambda: (
            "Resolved, ticket closed"
            in (_message(fake_slack, "MemoryError: closed in Jira") or {}).get("text", "")
        ),
        45,
        what="the message to show the closed ticket",
    )


def test_reconcile_posts_a_notify_issue_whose_webhook_was_lost(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_slack: FakeSlack, engine: Engine
) -> None:
    from syncer.runtime import Runtime
    from syncer.settings import current_settings
    from syncer.sync import reconcile
    from syncer.worker import app as worker

    fake_sentry.webhooks.enabled = False
    try:
        issue = fake_sentry.file_issue(project="checkout-lab-api", title="EOFError: webhook lost")
    finally:
        fake_sentry.webhooks.enabled = True
    rt = Runtime(current_settings(), enqueue=worker.enqueue)
    try:
        first = reconcile.run(rt)
        assert first.backfill_ignored == 1 and first.backfill == []  # no ticket: the route only notifies
        message = _posted(fake_slack, "EOFError: webhook lost")
        _settled(engine)
        reconcile.run(rt)
        _settled(engine)
    finally:
        rt.engine.dispose()
    assert [m["ts"] for m in fake_slack.messages(CHANNEL) if "EOFError" in m["text"]] == [message["ts"]]
    assert fake_slack.edits(CHANNEL, message["ts"]) == []
    assert link_of(engine, issue["id"]) is None


def _alerted_by_rule(
    fake_sentry: FakeSentry, rule: str, *, mode: str, team: str, title: str
) -> dict[str, Any]:
    """An alert rule saved with syncer's action (`mode`, `team`), and a new issue that reaches syncer
    only through that rule's alert (its own issue webhook is not sent)."""
    from syncer.sentry import ui

    fake_sentry.screens.schema = ui.schema(load_policy(POLICY), "https://syncer.example.com")
    saved = fake_sentry.screens.save_alert_rule(rule, {"mode": mode, "team": team})
    assert saved.status_code == 200, saved.text
    fake_sentry.webhooks.enabled = False
    try:
        issue = fake_sentry.file_issue(project="misc-app", title=title)
    finally:
        fake_sentry.webhooks.enabled = True
    fake_sentry.trigger_alert(issue["id"], rule=rule)
    return issue


def test_an_alert_rule_choosing_a_team_posts_to_that_teams_channel(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, fake_slack: FakeSlack, engine: Engine
) -> None:
    issue = _alerted_by_rule(fake_sentry, "Page checkout", mode="create", team="checkout",
                             title="ArithmeticError: by alert")  # the routes would send it to [defaults]
    link = wait_for(
        lambda: (
            (found := link_of(engine, issue["id"])) is not None and found.state == LinkState.ACTIVE and found
        ),
        45,
        what="the alert's ticket",
    )
    wait_for(
        lambda: (
            (m := _message(fake_slack, "ArithmeticError: by alert"))
            and link.jira_key in json.dumps(m["blocks"])
        ),
        45,
        what="the message in the chosen team's channel",
    )


def test_a_notify_only_alert_rule_posts_to_the_teams_channel_and_files_nothing(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, fake_slack: FakeSlack, engine: Engine
) -> None:
    issue = _alerted_by_rule(fake_sentry, "Tell checkout", mode="notify", team="checkout",
                             title="BufferError: notify only")  # the routes would file it in [defaults]
    message = _posted(fake_slack, "BufferError: notify only")
    assert "create_ticket" in _buttons(message)  # the ticket waits for a person, as on a notify route
    _settled(engine)
    [alert] = [d for d in deliveries(engine) if d.resource == "event_alert"]
    assert alert.state == DeliveryState.DONE and "notify #payments-alerts" in (alert.outcome or "")
    assert _tickets(fake_jira, issue["id"]) == [] and link_of(engine, issue["id"]) is None


def test_a_notify_only_alert_rule_for_a_team_without_a_channel_says_so(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, fake_slack: FakeSlack, engine: Engine
) -> None:
    issue = _alerted_by_rule(fake_sentry, "Tell web", mode="notify", team="web",
                             title="BufferError: no channel")
    alert = wait_for(
        lambda: next(
            (d for d in deliveries(engine) if d.resource == "event_alert" and d.state == DeliveryState.DONE),
            None,
        ),
        45,
        what="the alert to be handled",
    )
    assert "team web has no slack_channel: nothing posted" in (alert.outcome or "")
    _settled(engine)
    assert _message(fake_slack, "BufferError: no channel") is None
    assert _tickets(fake_jira, issue["id"]) == []
