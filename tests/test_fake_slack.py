"""The fake Slack speaks Slack's wire format to the real `slack_sdk` WebClient (Web API answers, errors,
paging, rate limits) and sends the Events API and interactivity requests Slack would send, checked with
slack_sdk's own signature verifier."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from syncer.fakes.base import Answer, FakeServer, Fault, WebhookInbox
from syncer.fakes.slack import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    FakeSlack,
    MessageChange,
    start_fake_slack,
)
from tests.harness import free_port

TOKEN = "xoxb-test-1234-fake"
SECRET = "test-signing-secret"
CHANNEL = "#payments-alerts"
BUTTONS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*KeyError: 'plan'*"}},
    {"type": "actions", "elements": [
        {"type": "button", "action_id": "create_ticket", "value": "4100000001",
         "text": {"type": "plain_text", "text": "Create ticket"}},
        {"type": "button", "action_id": "resolve", "value": "4100000001",
         "text": {"type": "plain_text", "text": "Resolve"}},
    ]},
]


@pytest.fixture(scope="module")
def inbox() -> Iterator[WebhookInbox]:
    receiver = WebhookInbox().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def fake(inbox: WebhookInbox) -> Iterator[FakeSlack]:
    server = start_fake_slack(bot_token=TOKEN, signing_secret=SECRET, events_url=inbox.url)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(fake: FakeSlack, inbox: WebhookInbox) -> None:
    fake.reset()
    fake.events.url = inbox.url
    fake.events.interactivity_url = None
    inbox.clear()


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=TOKEN, base_url=fake.url, timeout=5)


def slack_error(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value.response.status_code, dict(caught.value.response.data)


def post(client: WebClient, **kwargs: Any) -> tuple[str, str]:
    answer = client.chat_postMessage(channel=kwargs.pop("channel", CHANNEL), **kwargs)
    return answer["channel"], answer["ts"]


# ------------------------------------------------------------------ authentication and the Web API's shape


def test_tokens_are_checked_and_failures_are_200_with_ok_false(fake: FakeSlack) -> None:
    for token, error in ((None, "not_authed"), ("xoxb-wrong", "invalid_auth")):
        status, body = slack_error(lambda t=token: WebClient(token=t, base_url=fake.url).auth_test())
        assert (status, body) == (200, {"ok": False, "error": error})
    # A token is read from the Authorization header or a form field, never from a JSON body.
    assert httpx.post(f"{fake.url}auth.test", data={"token": TOKEN}).json()["ok"] is True
    assert httpx.post(f"{fake.url}auth.test", json={"token": TOKEN}).json()["error"] == "not_authed"
    unknown = httpx.post(f"{fake.url}chat.nothing", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert unknown["error"] == "unknown_method"


def test_auth_test_names_the_bot(client: WebClient) -> None:
    answer = client.auth_test()
    assert (answer["user_id"], answer["bot_id"], answer["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)


# ------------------------------------------------------------------ posting


def test_post_by_name_answers_with_the_channel_id_and_the_message(fake: FakeSlack, client: WebClient) -> None:
    answer = client.chat_postMessage(channel=CHANNEL, text="KeyError: 'plan'", blocks=BUTTONS)
    assert answer["channel"] == fake.channel_id(CHANNEL) and answer["channel"].startswith("C")
    message = answer["message"]
    assert (message["ts"], message["user"], message["bot_id"], message["app_id"]) == (
        answer["ts"], BOT_USER_ID, BOT_ID, APP_ID)
    # Slack fills in the block ids an app leaves out; the app's own action ids stay.
    assert all(block["block_id"] for block in message["blocks"])
    assert [e["action_id"] for e in message["blocks"][1]["elements"]] == ["create_ticket", "resolve"]
    (stored,) = fake.messages(CHANNEL)
    assert stored["text"] == "KeyError: 'plan'" and stored["blocks"] == message["blocks"]
    # The bare name and the ID work too; the ts grow.
    _, second = post(client, channel="payments-alerts", text="two")
    _, third = post(client, channel=answer["channel"], text="three")
    assert float(answer["ts"]) < float(second) < float(third)


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")  # slack_sdk, on purpose
def test_posting_where_the_bot_may_not(fake: FakeSlack, client: WebClient) -> None:
    fake.add_channel("secret-room", ["alice"], private=True, bot=False)
    fake.add_channel("old-alerts", ["alice"])
    fake.archive("#old-alerts")
    cases = {"#general": "not_in_channel", "#secret-room": "channel_not_found",
             "#no-such-channel": "channel_not_found", "#old-alerts": "is_archived"}
    for channel, error in cases.items():
        _, body = slack_error(lambda c=channel: client.chat_postMessage(channel=c, text="x"))
        assert body["error"] == error, channel
    assert slack_error(lambda: client.chat_postMessage(channel=CHANNEL))[1]["error"] == "no_text"
    assert fake.messages(CHANNEL) == []


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")  # slack_sdk, on purpose
def test_block_kit_limits_and_long_text(fake: FakeSlack, client: WebClient) -> None:
    too_many = [{"type": "divider"}] * 51
    _, body = slack_error(lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=too_many))
    assert body["error"] == "invalid_blocks"
    assert body["response_metadata"]["messages"] == [
        "[ERROR] no more than 50 items allowed [json-pointer:/blocks]"]
    long_section = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    _, body = slack_error(lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=long_section))
    assert body["errors"] == ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
    assert slack_error(lambda: client.chat_postMessage(channel=CHANNEL, blocks="{nope"))[1]["error"] == (
        "invalid_blocks_format")
    # Very long text is truncated, not refused.
    _, ts = post(client, text="y" * 40_050)
    assert len(fake.message(CHANNEL, ts)["text"]) == 40_000


def test_threads(fake: FakeSlack, client: WebClient) -> None:
    channel, parent = post(client, text="parent")
    _, reply = post(client, text="regressed in 2.4.1", thread_ts=parent)
    _, nested = post(client, text="reply to the reply", thread_ts=reply)
    assert [r["text"] for r in fake.replies(CHANNEL, parent)] == ["regressed in 2.4.1", "reply to the reply"]
    assert fake.message(CHANNEL, nested)["thread_ts"] == parent
    (top,) = fake.messages(CHANNEL)
    assert (top["reply_count"], top["latest_reply"], top["thread_ts"]) == (2, nested, parent)
    # A thread_ts naming no message is accepted, and the reply shows nowhere.
    ghost = client.chat_postMessage(channel=channel, text="lost", thread_ts="1000000000.000001")
    assert ghost["ok"] and len(fake.messages(CHANNEL)) == 1 and len(fake.replies(CHANNEL, parent)) == 2
    _, body = slack_error(lambda: client.chat_postMessage(channel=channel, text="x", thread_ts="0"))
    assert body["error"] == "invalid_thread_ts"


# ------------------------------------------------------------------ updating


def test_update_keeps_the_message_and_its_history(fake: FakeSlack, client: WebClient) -> None:
    channel, ts = post(client, text="new issue", blocks=BUTTONS)
    answer = client.chat_update(channel=channel, ts=ts, text="ticket PAY-1 created")
    assert (answer["channel"], answer["ts"], answer["text"]) == (channel, ts, "ticket PAY-1 created")
    (message,) = fake.messages(CHANNEL)
    assert message["text"] == "ticket PAY-1 created"
    assert message["blocks"] == answer["message"]["blocks"] != []  # blocks left out are kept
    (replaced,) = fake.edits(CHANNEL, ts)
    assert replaced["text"] == "new issue" and float(replaced["replaced_at"]) > float(ts)
    client.chat_update(channel=channel, ts=ts, text="resolved", blocks=[])
    assert "blocks" not in fake.message(CHANNEL, ts) and len(fake.edits(CHANNEL, ts)) == 2


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")  # slack_sdk, on purpose
def test_update_refusals(fake: FakeSlack, client: WebClient) -> None:
    channel, ts = post(client, text="mine")
    theirs = fake.person_post("alice", CHANNEL, "a person's message")
    cases = [
        ({"channel": CHANNEL, "ts": ts, "text": "x"}, "channel_not_found"),  # a name: IDs only here
        ({"channel": channel, "ts": "1000000000.000001", "text": "x"}, "message_not_found"),
        ({"channel": channel, "ts": theirs, "text": "x"}, "cant_update_message"),
        ({"channel": channel, "ts": ts, "text": "x" * 4001}, "msg_too_long"),
        ({"channel": channel, "ts": ts}, "no_text"),
    ]
    for kwargs, error in cases:
        assert slack_error(lambda k=kwargs: client.chat_update(**k))[1]["error"] == error, kwargs
    assert fake.edits(CHANNEL, ts) == [] and fake.message(CHANNEL, ts)["text"] == "mine"


# ------------------------------------------------------------------ reactions


def test_reactions_add_and_get(fake: FakeSlack, client: WebClient) -> None:
    channel, ts = post(client, text="issue")
    client.reactions_add(channel=channel, timestamp=ts, name="eyes")
    for stamp, error in ((ts, "already_reacted"), ("1.000001", "message_not_found")):
        _, body = slack_error(lambda t=stamp: client.reactions_add(channel=channel, timestamp=t, name="eyes"))
        assert body["error"] == error
    fake.person_react("alice", CHANNEL, ts, "white_check_mark")
    answer = client.reactions_get(channel=channel, timestamp=ts)
    assert (answer["type"], answer["channel"], answer["message"]["ts"]) == ("message", channel, ts)
    assert answer["message"]["reactions"] == [
        {"name": "eyes", "users": [BOT_USER_ID], "count": 1},
        {"name": "white_check_mark", "users": [fake.user_id("alice")], "count": 1},
    ]


def test_reactions_get_lists_every_user_only_when_full(fake: FakeSlack, client: WebClient) -> None:
    channel, ts = post(client, text="popular")
    for n in range(52):
        fake.person_react(fake.add_user(f"person{n}"), CHANNEL, ts, "eyes")
    (short,) = client.reactions_get(channel=channel, timestamp=ts)["message"]["reactions"]
    (full,) = client.reactions_get(channel=channel, timestamp=ts, full=True)["message"]["reactions"]
    assert (short["count"], len(short["users"]), len(full["users"])) == (52, 50, 52)


# ------------------------------------------------------------------ conversations and users


def test_conversations_members_pages_by_cursor(fake: FakeSlack, client: WebClient) -> None:
    people = [fake.add_user(f"member{n}") for n in range(5)]
    channel = fake.add_channel("big-room", people)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        answer = client.conversations_members(channel=channel, limit=2, cursor=cursor or None)
        seen += answer["members"]
        pages += 1
        cursor = answer["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert seen == [*people, BOT_USER_ID] and pages == 3
    bad = base64.b64encode(b"user:U999").decode()
    assert slack_error(lambda: client.conversations_members(channel=channel, cursor=bad))[1]["error"] == (
        "invalid_cursor")
    assert slack_error(lambda: client.conversations_members(channel="#big-room"))[1]["error"] == (
        "channel_not_found")


def test_conversations_list_and_info(fake: FakeSlack, client: WebClient) -> None:
    private = fake.add_channel("payments-private", ["alice"], private=True)
    fake.add_channel("hidden", ["alice"], private=True, bot=False)
    public = [c["name"] for c in client.conversations_list()["channels"]]
    assert public == ["general", "payments-alerts", "web-alerts"]
    both = [c["name"] for c in client.conversations_list(types="public_channel,private_channel")["channels"]]
    assert both == [*public, "payments-private"]
    info = client.conversations_info(channel=private, include_num_members=True)["channel"]
    assert (info["name"], info["is_private"], info["is_member"], info["num_members"]) == (
        "payments-private", True, True, 2)
    general = client.conversations_info(channel=fake.channel_id("#general"))["channel"]
    assert general["is_member"] is False


def test_users_info_and_email_scope(fake: FakeSlack, client: WebClient) -> None:
    alice = fake.user_id("alice")
    user = client.users_info(user=alice)["user"]
    assert (user["id"], user["name"], user["real_name"], user["profile"]["email"]) == (
        alice, "alice", "Alice Example", "alice@example.com")
    assert client.users_lookupByEmail(email="Alice@Example.com")["user"]["id"] == alice
    assert slack_error(lambda: client.users_info(user="U404"))[1]["error"] == "user_not_found"
    fake.email_visible = False  # the app was not granted users:read.email
    assert "email" not in client.users_info(user=alice)["user"]["profile"]


# ------------------------------------------------------------------ rate limits and outages


def test_posting_is_rate_limited_per_channel(fake: FakeSlack, client: WebClient) -> None:
    fake.enforce_rate_limits = True
    fake.post_burst = 2
    post(client, text="1")
    post(client, text="2")
    with pytest.raises(SlackApiError) as caught:
        post(client, text="3")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "1"
    assert caught.value.response["error"] == "ratelimited"
    post(client, channel="#web-alerts", text="another channel has its own allowance")
    # slack_sdk's rate-limit handler waits Retry-After and tries again.
    patient = WebClient(token=TOKEN, base_url=fake.url, timeout=5,
                        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    patient.chat_postMessage(channel=CHANNEL, text="3")
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["1", "2", "3"]


def test_outages_and_ambiguous_failures(fake: FakeSlack, client: WebClient) -> None:
    fake.faults.append(Fault("POST", r"/api/chat\.postMessage$", status=503))
    status, body = slack_error(lambda: post(client, text="down"))
    assert (status, body) == (503, {"ok": False, "error": "service_unavailable"})
    fake.faults.append(Fault("POST", r"/api/chat\.postMessage$", status=500))
    retrying = WebClient(token=TOKEN, base_url=fake.url, timeout=5,
                         retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)])
    retrying.chat_postMessage(channel=CHANNEL, text="after one 500")
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["after one 500"]
    # Posted, then the connection dropped: slack_sdk's default handler retries, and Slack has it twice.
    fake.faults.append(Fault("POST", r"/api/chat\.postMessage$", drop=True, after=True))
    post(client, text="twice")
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["after one 500", "twice", "twice"]
    assert fake.calls.count("POST", r"chat\.postMessage$") == 5


# ------------------------------------------------------------------ the Events API


def test_person_react_sends_a_signed_reaction_added(fake: FakeSlack, client: WebClient,
                                                    inbox: WebhookInbox) -> None:
    channel, ts = post(client, text="issue")
    event_id = fake.person_react("bob", CHANNEL, ts, ":eyes:")
    (hook,) = inbox.wait(1)
    assert SignatureVerifier(SECRET).is_valid_request(hook.body, hook.headers)
    assert not SignatureVerifier("another-secret").is_valid_request(hook.body, hook.headers)
    assert hook.headers["content-type"] == "application/json"
    assert "x-slack-retry-num" not in hook.headers
    body = hook.json()
    assert (body["type"], body["event_id"], body["team_id"], body["api_app_id"]) == (
        "event_callback", event_id, TEAM_ID, APP_ID)
    assert isinstance(body["event_time"], int)
    event = body["event"]
    assert (event["type"], event["user"], event["reaction"], event["item_user"]) == (
        "reaction_added", fake.user_id("bob"), "eyes", BOT_USER_ID)
    assert event["item"] == {"type": "message", "channel": channel, "ts": ts}
    assert fake.message(CHANNEL, ts)["reactions"] == [{"name": "eyes", "users": [fake.user_id("bob")],
                                                      "count": 1}]


def test_the_apps_own_reaction_comes_back_as_an_event(fake: FakeSlack, client: WebClient,
                                                      inbox: WebhookInbox) -> None:
    channel, ts = post(client, text="issue")
    client.reactions_add(channel=channel, timestamp=ts, name="ticket")
    (hook,) = inbox.wait(1)
    assert (hook.json()["event"]["user"], hook.json()["event"]["reaction"]) == (BOT_USER_ID, "ticket")


def test_events_only_from_channels_the_app_is_in(fake: FakeSlack) -> None:
    ts = fake.person_post("alice", "#general", "lunch?")
    assert fake.person_react("bob", "#general", ts, "eyes") is None
    assert fake.events.drain() and fake.events.attempts == []
    secret = fake.add_channel("secret", ["alice"], private=True)
    theirs = fake.person_post("alice", secret, "private")
    with pytest.raises(PermissionError):
        fake.person_react("bob", secret, theirs, "eyes")


def test_failed_events_are_retried_with_the_same_event_id(fake: FakeSlack, client: WebClient,
                                                          inbox: WebhookInbox) -> None:
    _, ts = post(client, text="issue")
    fake.events.timeout = 0.3
    inbox.answers[:] = [500, Answer(200, delay=1.0)]
    event_id = fake.person_react("alice", CHANNEL, ts, "eyes")
    hooks = inbox.wait(3)
    assert [h.json()["event_id"] for h in hooks] == [event_id] * 3
    assert [(h.headers.get("x-slack-retry-num"), h.headers.get("x-slack-retry-reason")) for h in hooks] == [
        (None, None), ("1", "http_error"), ("2", "http_timeout")]
    assert all(SignatureVerifier(SECRET).is_valid_request(h.body, h.headers) for h in hooks)
    assert fake.events.drain()
    assert [(a.status, a.failure) for a in fake.events.attempts] == [
        (500, "http_error"), (0, "http_timeout"), (200, None)]


def test_event_retries_stop_after_three_or_when_asked(fake: FakeSlack, client: WebClient,
                                                      inbox: WebhookInbox) -> None:
    _, ts = post(client, text="issue")
    inbox.answers[:] = [503] * 4
    fake.person_react("alice", CHANNEL, ts, "eyes")
    assert len(inbox.wait(4)) == 4 and fake.events.drain()
    assert [a.retry_num for a in fake.events.attempts] == [0, 1, 2, 3]
    fake.events.clear()
    inbox.clear()
    inbox.answers[:] = [Answer(400, headers={"X-Slack-No-Retry": "1"})]
    fake.person_react("bob", CHANNEL, ts, "eyes")
    assert fake.events.drain()
    assert [(a.status, a.retry_num) for a in fake.events.attempts] == [(400, 0)]
    fake.events.clear()
    fake.events.url = f"http://127.0.0.1:{free_port()}/slack"  # nobody listens
    fake.person_react("carol", CHANNEL, ts, "eyes")
    assert fake.events.drain()
    assert {a.failure for a in fake.events.attempts} == {"connection_failed"}
    assert [a.retry_reason for a in fake.events.attempts] == [None, *["connection_failed"] * 3]


def test_stale_signatures_and_person_unreact(fake: FakeSlack, client: WebClient, inbox: WebhookInbox) -> None:
    _, ts = post(client, text="issue")
    fake.signing_clock_offset = -600  # outside the five-minute replay window
    fake.person_react("alice", CHANNEL, ts, "eyes")
    (hook,) = inbox.wait(1)
    assert not SignatureVerifier(SECRET).is_valid_request(hook.body, hook.headers)
    fake.signing_clock_offset = 0
    fake.person_unreact("alice", CHANNEL, ts, "eyes")
    assert inbox.wait(2)[1].json()["event"]["type"] == "reaction_removed"
    assert "reactions" not in fake.message(CHANNEL, ts)
    with pytest.raises(ValueError, match="has no"):
        fake.person_unreact("alice", CHANNEL, ts, "eyes")


def test_url_verification(fake: FakeSlack, inbox: WebhookInbox) -> None:
    verifier = SignatureVerifier(SECRET)

    async def echo(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body()
        if scope["type"] != "http":
            return
        answer: Response = PlainTextResponse(json.loads(body)["challenge"]) if verifier.is_valid_request(
            body, dict(request.headers)) else Response(status_code=401)
        await answer(scope, receive, send)

    app = FakeServer(echo).start()
    try:
        assert fake.verify_events_url(app.url)
        fake.signing_secret = "rotated"  # the app still checks with the old secret: 401
        assert not fake.verify_events_url(app.url)
    finally:
        app.stop()
    assert not fake.verify_events_url()  # the inbox answers 200 without the challenge
    (hook,) = inbox.wait(1)
    assert hook.json()["type"] == "url_verification"


# ------------------------------------------------------------------ interactivity


def test_person_click_sends_block_actions_as_a_form(fake: FakeSlack, client: WebClient,
                                                    inbox: WebhookInbox) -> None:
    channel, ts = post(client, text="issue", blocks=BUTTONS)
    sent = fake.person_click("carol", CHANNEL, ts, "create_ticket")
    (hook,) = inbox.wait(1)
    assert hook.headers["content-type"] == "application/x-www-form-urlencoded"
    assert SignatureVerifier(SECRET).is_valid_request(hook.body, hook.headers)
    payload = json.loads(httpx.QueryParams(hook.body.decode())["payload"])
    assert payload == sent
    assert (payload["type"], payload["user"]["id"], payload["channel"]["id"], payload["message"]["ts"]) == (
        "block_actions", fake.user_id("carol"), channel, ts)
    assert payload["container"] == {"type": "message", "message_ts": ts, "channel_id": channel,
                                    "is_ephemeral": False}
    (action,) = payload["actions"]
    assert (action["action_id"], action["value"], action["type"]) == ("create_ticket", "4100000001", "button")
    assert action["block_id"] == fake.message(CHANNEL, ts)["blocks"][1]["block_id"]
    assert payload["trigger_id"] and payload["response_url"].startswith(fake.server.url)
    with pytest.raises(LookupError):
        fake.person_click("carol", CHANNEL, ts, "assign_to_me")
    with pytest.raises(ValueError, match="carries"):
        fake.person_click("carol", CHANNEL, ts, "resolve", value="other")


def test_interactivity_is_not_retried_and_may_have_its_own_url(fake: FakeSlack, client: WebClient,
                                                               inbox: WebhookInbox) -> None:
    _, ts = post(client, text="issue", blocks=BUTTONS)
    inbox.answers[:] = [500]
    fake.person_click("alice", CHANNEL, ts, "resolve")
    assert fake.events.drain()
    assert [(a.status, a.failure) for a in fake.events.attempts] == [(500, "http_error")]
    other = WebhookInbox().start()
    try:
        fake.events.interactivity_url = other.url
        fake.person_click("alice", CHANNEL, ts, "resolve")
        (hook,) = other.wait(1)
        assert json.loads(httpx.QueryParams(hook.body.decode())["payload"])["type"] == "block_actions"
        assert len(inbox.received) == 1
    finally:
        other.stop()


def test_response_url(fake: FakeSlack, client: WebClient) -> None:
    _, ts = post(client, text="issue", blocks=BUTTONS)
    url = fake.person_click("alice", CHANNEL, ts, "resolve")["response_url"]
    assert httpx.post(url, json={"text": "Only you can see this"}).json() == {"ok": True}
    ((user, seen),) = fake.ephemeral(CHANNEL)
    assert (user, seen["text"]) == (fake.user_id("alice"), "Only you can see this")
    httpx.post(url, json={"replace_original": True, "text": "Resolved by alice"}).raise_for_status()
    assert fake.message(CHANNEL, ts)["text"] == "Resolved by alice" and len(fake.edits(CHANNEL, ts)) == 1
    httpx.post(url, json={"response_type": "in_channel", "text": "for everyone"}).raise_for_status()
    assert [m["text"] for m in fake.messages(CHANNEL)] == ["Resolved by alice", "for everyone"]
    httpx.post(url, json={"text": "fourth"}).raise_for_status()
    httpx.post(url, json={"text": "fifth"}).raise_for_status()
    sixth = httpx.post(url, json={"text": "sixth"})
    assert (sixth.status_code, sixth.json()["error"]) == (404, "used_url")


# ------------------------------------------------------------------ watching and resetting


def test_watch_reports_each_change(fake: FakeSlack, client: WebClient) -> None:
    changes: list[MessageChange] = []
    stop = fake.watch(changes.append)
    channel, ts = post(client, text="KeyError: 'plan'\nin billing.invoices")
    client.chat_update(channel=channel, ts=ts, text="KeyError: 'plan' (PAY-1)")
    post(client, text="regressed", thread_ts=ts)
    fake.person_react("alice", CHANNEL, ts, "eyes")
    stop()
    post(client, text="unseen")
    assert [c.kind for c in changes] == ["posted", "updated", "replied", "reaction_added"]
    lines = [str(c) for c in changes]
    assert lines[0] == f"#payments-alerts {ts} posted: KeyError: 'plan'"
    assert lines[1].endswith("updated: KeyError: 'plan' (PAY-1)")
    assert f"replied (thread {ts}): regressed" in lines[2]
    assert lines[3] == f"#payments-alerts {ts} +:eyes: by alice"


def test_reset_restores_the_default_workspace(fake: FakeSlack, client: WebClient) -> None:
    post(client, text="x")
    fake.add_user("zed")
    fake.enforce_rate_limits = True
    fake.reset()
    assert fake.messages(CHANNEL) == [] and fake.calls.count() == 0
    assert not fake.enforce_rate_limits
    with pytest.raises(LookupError):
        fake.user_id("zed")
    assert fake.user("alice")["profile"]["email"] == "alice@example.com"
