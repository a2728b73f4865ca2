"""A fake Slack workspace: the Web API an app calls (through `slack_sdk`'s `WebClient`), and the Events
API and interactivity requests Slack sends to the app, signed the way Slack signs them.

It is a real HTTP server (see `base.FakeServer`), driven from Python:

    fake = start_fake_slack(events_url=receiver.url)
    client = WebClient(token=fake.bot_token, base_url=fake.url)        # `.url` ends in /api/
    ts = client.chat_postMessage(channel="#payments-alerts", text="KeyError")["ts"]
    fake.person_react("alice", "#payments-alerts", ts, "eyes")         # -> signed `reaction_added`
    fake.person_click("bob", "#payments-alerts", ts, "create_ticket")  # -> `block_actions` payload
    fake.messages("#payments-alerts"), fake.edits("#payments-alerts", ts), fake.watch(print)

Sources: the method descriptions Slack publishes (mirrored in slack-ruby/slack-api-ref: `methods/*/*.json`
and `docs.slack.dev/methods/*.json` give each method's arguments, answers and error codes), the Events API,
request-signing, interactivity and rate-limit guides on api.slack.com / docs.slack.dev, and slack_sdk's
`web/base_client.py` (what the client actually sends) and `signature/__init__.py` (what it verifies).

Behaviour a real workspace has, which the fake keeps:
- Failures are HTTP 200 with `{"ok": false, "error": ...}`; only rate limits (429 + Retry-After) and
  outages change the status. No token: `not_authed`; a wrong one: `invalid_auth`.
- `chat.postMessage` takes a channel ID or name; `chat.update`, `reactions.*` and `conversations.*` take
  IDs only (a name answers `channel_not_found`). Answers always carry the ID.
- The bot posts only where it is a member: `not_in_channel` for a public channel, `channel_not_found` for
  a private one (which it cannot even see). `conversations.list` lists public channels unless `types`
  asks for private ones.
- The app may update only its own messages (`cant_update_message`); `chat.update` refuses text over
  4,000 characters (`msg_too_long`), while `chat.postMessage` truncates text over 40,000 (Slack's
  changelog, 2018-04 "truncating really long messages").
- A `thread_ts` that names no message is accepted (`ok`) but the reply shows nowhere, which is what a
  float-formatted ts does on real Slack (slackapi/python-slack-sdk#840); a malformed one is
  `invalid_thread_ts`; replying to a reply joins the parent's thread.
- The app's own `reactions.add` comes back as a `reaction_added` event whose `user` is the bot.
- `reactions.get` without `full` may list fewer users than `count` says.
- Events are retried (same `event_id`, `X-Slack-Retry-Num`/`-Reason`) when the receiver answers non-2xx,
  cannot be reached or takes longer than 3 s; `X-Slack-No-Retry: 1` in an answer stops that.
  Interactivity payloads are not retried.
- Rate limits: `chat.postMessage` allows about one message per second per channel with short bursts
  (api.slack.com/docs/rate-limits, "Posting messages"); off unless `enforce_rate_limits` is set.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncer.fakes.base import (
    CallLog,
    FakeServer,
    Fault,
    Misbehaviour,
    WebhookSender,
    _Delivery,
    _Poster,
    hmac_sha256_hex,
)

log = logging.getLogger(__name__)

TEAM_ID = "T01FAKE0SL"
APP_ID = "A01SYNCER0"
BOT_USER_ID = "U01SYNCBOT"
BOT_ID = "B01SYNCBOT"
DEFAULT_BOT_TOKEN = "xoxb-1111-2222-fakeslackbottoken"
DEFAULT_SIGNING_SECRET = "fake-slack-signing-secret"
DEFAULT_VERIFICATION_TOKEN = "fakeVerificationToken0"
# What Slack's own requests to an app say they are.
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
POST_TEXT_LIMIT = 40_000  # chat.postMessage truncates beyond this
UPDATE_TEXT_LIMIT = 4_000  # chat.update: msg_too_long beyond this
PAGE_DEFAULT = 100
PAGE_MAX = 1000
REACTION_USERS_SHOWN = 50  # reactions.get without `full`
RESPONSE_URL_USES = 5  # a response_url works five times within 30 minutes (docs: "Handling user interaction")
RESPONSE_URL_LIFETIME = 1800.0
_TS = re.compile(r"^\d{1,12}\.\d{1,6}$")
_EMOJI = re.compile(r"^[a-z0-9_+'-]+(::skin-tone-[2-6])?$")


class SlackError(Exception):
    """A Web API failure: `{"ok": false, "error": error, **extra}` with this HTTP status."""

    def __init__(self, error: str, status: int = 200, headers: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> Response:
        return JSONResponse({"ok": False, "error": self.error, **self.extra}, status_code=self.status,
                            headers=self.headers)


def _invalid_blocks(problem: str, pointer: str) -> SlackError:
    # Block Kit validation failures name the offending place with a JSON pointer.
    message = f"{problem} [json-pointer:{pointer}]"
    return SlackError("invalid_blocks", errors=[message],
                      response_metadata={"messages": [f"[ERROR] {message}"]})


def _short_id() -> str:
    return secrets.token_urlsafe(4)[:5]


def _normalise_blocks(raw: Any) -> list[dict[str, Any]]:
    """Check the Block Kit limits syncer's messages could reach (Block Kit reference: 50 blocks, section
    text 3,000 characters, header 150, button text 75, value 2,000, action_id 255) and give every block
    and button the ids Slack fills in when they are missing."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SlackError("invalid_blocks_format") from None
    if not isinstance(raw, list) or not all(isinstance(b, dict) and isinstance(b.get("type"), str)
                                            for b in raw):
        raise SlackError("invalid_blocks_format")
    if len(raw) > 50:
        raise _invalid_blocks("no more than 50 items allowed", "/blocks")
    blocks = copy.deepcopy(raw)
    for i, block in enumerate(blocks):
        block.setdefault("block_id", _short_id())
        text = block.get("text")
        limit = {"section": 3000, "header": 150}.get(block["type"])
        if limit and isinstance(text, dict) and len(str(text.get("text", ""))) > limit:
            raise _invalid_blocks(f"must be less than {limit + 1} characters", f"/blocks/{i}/text/text")
        for j, element in enumerate(block.get("elements") or []):
            if not isinstance(element, dict) or element.get("type") != "button":
                continue
            element.setdefault("action_id", _short_id())
            where = f"/blocks/{i}/elements/{j}"
            label = element.get("text")
            if isinstance(label, dict) and len(str(label.get("text", ""))) > 75:
                raise _invalid_blocks("must be less than 76 characters", f"{where}/text/text")
            if len(str(element.get("value", ""))) > 2000:
                raise _invalid_blocks("must be less than 2001 characters", f"{where}/value")
            if len(str(element["action_id"])) > 255:
                raise _invalid_blocks("must be less than 256 characters", f"{where}/action_id")
    return blocks


def _buttons(blocks: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(block, button) for every button in the message."""
    return [(block, element) for block in blocks for element in (block.get("elements") or [])
            if isinstance(element, dict) and element.get("type") == "button"]


# --------------------------------------------------------------------------------------------------
# State


@dataclass
class _User:
    id: str
    name: str
    real_name: str
    email: str
    is_bot: bool = False


@dataclass
class _Channel:
    id: str
    name: str
    private: bool
    members: list[str]
    created: int
    archived: bool = False
    messages: dict[str, _Message] = field(default_factory=dict)  # every message by ts, replies too
    timeline: list[str] = field(default_factory=list)  # top-level ts, oldest first


@dataclass
class _Message:
    ts: str
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]]
    from_app: bool
    thread_ts: str | None = None  # a reply: its parent's ts; a parent with replies: its own
    replies: list[str] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)  # name -> users, in the order they came
    edits: list[dict[str, Any]] = field(default_factory=list)  # the versions chat.update replaced
    visible: bool = True
    deleted: bool = False


@dataclass
class _ResponseHook:
    """A click's response_url: the message clicked, who clicked, when, and how often it was used."""

    channel: str
    ts: str
    user: str
    issued: float
    uses: int = 0


@dataclass(frozen=True)
class MessageChange:
    """Something a person watching the channel would see change. `message` is the message as it is now
    (as `conversations.history` shows it); `reaction` is set for reaction changes."""

    kind: str  # posted | replied | updated | deleted | reaction_added | reaction_removed | ephemeral
    channel: str
    channel_name: str
    ts: str
    message: dict[str, Any]
    actor: str | None = None  # a user ID
    reaction: str | None = None
    actor_name: str | None = None

    def __str__(self) -> str:
        where = f"#{self.channel_name} {self.ts}"
        if self.reaction is not None:
            sign = "+" if self.kind == "reaction_added" else "-"
            return f"{where} {sign}:{self.reaction}: by {self.actor_name or self.actor}"
        lines = (self.message.get("text") or "").splitlines() or [""]
        text = lines[0] if len(lines[0]) <= 120 else lines[0][:119] + "…"
        parent = self.message.get("thread_ts")
        thread = f" (thread {parent})" if parent and parent != self.ts else ""
        return f"{where} {self.kind}{thread}: {text}"


@dataclass(frozen=True)
class DeliveryAttempt:
    """One request the fake made to the app. `retry_num`/`retry_reason` are what its headers said;
    `failure` is why Slack would count it failed (None: it succeeded); `status` 0: no answer."""

    url: str
    headers: dict[str, str]
    body: bytes
    status: int
    retry_num: int
    retry_reason: str | None
    failure: str | None

    def json(self) -> Any:
        """The event (or, for interactivity, the decoded `payload` field)."""
        if self.headers.get("Content-Type") == "application/x-www-form-urlencoded":
            return json.loads(parse_qs(self.body.decode())["payload"][0])
        return json.loads(self.body)


@dataclass(frozen=True)
class _SlackDelivery(_Delivery):
    content_type: str = "application/json"
    retries: bool = True


class SlackSender(WebhookSender):
    """Slack's requests to the app: Events API callbacks and interactivity payloads, in order, from a
    background thread. Each attempt is signed afresh (a retry minutes later must still fall inside the
    receiver's replay window). Events are retried after a failure (`retry_delays`: Slack waits "nearly
    immediately", one minute, five minutes; shorter here so tests can watch all three), interactivity
    payloads are not. `timeout`: Slack gives up on an answer after 3 seconds."""

    def __init__(self, sign: Callable[[bytes], dict[str, str]]) -> None:
        self.sign = sign
        self.interactivity_url: str | None = None  # None: the events URL (one endpoint, as syncer has)
        self._attempts: list[DeliveryAttempt] = []
        self.set_defaults()
        super().__init__("fake-slack")

    def set_defaults(self) -> None:
        self.timeout = 3.0
        self.retry_delays: tuple[float, ...] = (0.05, 0.2, 0.5)

    @property
    def attempts(self) -> list[DeliveryAttempt]:
        with self._lock:
            return list(self._attempts)

    def send_event(self, body: bytes) -> None:
        if self.enabled and self.url:
            self._queue.put(_SlackDelivery(self.url, {}, body))

    def send_interaction(self, payload: Mapping[str, Any]) -> None:
        url = self.interactivity_url or self.url
        if self.enabled and url:
            body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
            self._queue.put(_SlackDelivery(url, {}, body, content_type="application/x-www-form-urlencoded",
                                           retries=False))

    def clear(self) -> None:
        with self._lock:
            self._attempts.clear()
            self.sent.clear()

    def _deliver(self, client: _Poster, item: _Delivery) -> tuple[dict[str, str], int]:
        assert isinstance(item, _SlackDelivery)
        retry_num, reason = 0, None
        # Slack follows at most two redirects, then counts the attempt failed (`too_many_redirects`).
        with httpx.Client(follow_redirects=True, max_redirects=2) as http:
            while True:
                headers = {"Content-Type": item.content_type, "User-Agent": SLACK_USER_AGENT,
                           **self.sign(item.body)}
                if retry_num:
                    headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": str(reason)}
                status, failure, no_retry = self._attempt(http, item.url, item.body, headers)
                with self._lock:
                    self._attempts.append(
                        DeliveryAttempt(item.url, headers, item.body, status, retry_num, reason, failure))
                if failure is None or no_retry or not item.retries or retry_num >= len(self.retry_delays):
                    return headers, status
                time.sleep(self.retry_delays[retry_num])
                retry_num, reason = retry_num + 1, failure

    def _attempt(self, http: httpx.Client, url: str, body: bytes,
                 headers: dict[str, str]) -> tuple[int, str | None, bool]:
        """(status, failure reason in Slack's words or None, whether the answer asked for no retry)."""
        try:
            answer = http.post(url, content=body, headers=headers, timeout=self.timeout)
        except httpx.TooManyRedirects:
            return 0, "too_many_redirects", False
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return 0, "connection_failed", False
        except httpx.TimeoutException:
            return 0, "http_timeout", False
        except httpx.HTTPError:
            return 0, "unknown_error", False
        if 200 <= answer.status_code < 300:
            return answer.status_code, None, False
        return answer.status_code, "http_error", answer.headers.get("x-slack-no-retry") == "1"


class _Args:
    """A Web API call's arguments, from the query string and a form or JSON body (slack_sdk sends
    `chat.*` as JSON and the rest form-encoded, always by POST)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, (dict, list)):
            return None
        return str(value)

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        return value is True or str(value).lower() in ("1", "true")

    def limit(self) -> int:
        raw = self.text("limit")
        if not raw:
            return PAGE_DEFAULT
        try:
            limit = int(raw)
        except ValueError:
            raise SlackError("invalid_limit") from None
        if not 1 <= limit <= PAGE_MAX:
            raise SlackError("invalid_limit")
        return limit


def _page(items: list[str], kind: str, args: _Args) -> tuple[list[str], str]:
    """One page by Slack's cursor convention: the cursor is base64 of `<kind>:<first id of the next page>`;
    the last page's `next_cursor` is ""."""
    limit = args.limit()
    start = 0
    cursor = args.text("cursor")
    if cursor:
        try:
            prefix, _, first = base64.b64decode(cursor, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise SlackError("invalid_cursor") from None
        if prefix != kind or first not in items:
            raise SlackError("invalid_cursor")
        start = items.index(first)
    page = items[start:start + limit]
    rest = items[start + limit:]
    return page, base64.b64encode(f"{kind}:{rest[0]}".encode()).decode() if rest else ""


# --------------------------------------------------------------------------------------------------
# The workspace


class FakeSlack:
    """State, Web API routes and outgoing requests of one fake workspace with our app installed. Every
    public method is thread-safe. People and channels are named as in the UI ("alice", "#payments-alerts")
    or by ID."""

    def __init__(self, *, bot_token: str = DEFAULT_BOT_TOKEN, signing_secret: str = DEFAULT_SIGNING_SECRET,
                 events_url: str | None = None, interactivity_url: str | None = None,
                 team_name: str = "Acme", port: int = 0) -> None:
        self.bot_token = bot_token
        self._installed_secret = signing_secret
        self.signing_secret = signing_secret  # tests may rotate it; reset() restores it
        self.verification_token = DEFAULT_VERIFICATION_TOKEN
        self.team_name = team_name
        self.calls = CallLog()
        self.faults: list[Fault] = []
        self.events = SlackSender(self.sign)
        self.events.url = events_url
        self.events.interactivity_url = interactivity_url
        self._lock = threading.RLock()
        self._watchers: list[Callable[[MessageChange], None]] = []
        self._changes: list[MessageChange] = []
        self._set_defaults()
        self._clear_state()
        methods: dict[str, Callable[[_Args], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "reactions.add": self._reactions_add,
            "reactions.get": self._reactions_get,
            "conversations.info": self._conversations_info,
            "conversations.list": self._conversations_list,
            "conversations.members": self._conversations_members,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
        }
        self._methods = methods
        app = Starlette(routes=[
            Route("/api/{method}", self._api, methods=["GET", "POST"]),
            Route("/actions/{team}/{hook}/{secret}", self._response_url, methods=["POST"]),
        ])
        self._misbehaviour = Misbehaviour(app, self.calls, self.faults, threading.Lock())
        self._misbehaviour.fault_body = _fault_body
        self.server = FakeServer(self._misbehaviour, port)
        self.url = f"{self.server.url}/api/"

    # ------------------------------------------------------------------ lifecycle and switches

    def _set_defaults(self) -> None:
        self.signing_secret = self._installed_secret
        self.enforce_rate_limits = False  # True: chat.postMessage answers 429 past the per-channel rate
        self.post_rate = 1.0  # messages per second per channel, once the burst is spent
        self.post_burst = 3
        self.email_visible = True  # False: the app lacks users:read.email, profiles show no e-mail
        self.signing_clock_offset = 0.0  # seconds added to X-Slack-Request-Timestamp (stale/future requests)

    def _clear_state(self) -> None:
        with self._lock:
            self._ids = itertools.count(0x1A2B3C)
            self._users: dict[str, _User] = {}
            self._channels: dict[str, _Channel] = {}
            self._last_ts_us = 0
            self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)
            self._hooks: dict[str, _ResponseHook] = {}  # by the response_url's secret
            self._ephemeral: list[tuple[str, str, dict[str, Any]]] = []  # channel, user, message
            self._changes.clear()
            self._users[BOT_USER_ID] = _User(BOT_USER_ID, "syncer", "syncer", "", is_bot=True)
            for name, real in (("alice", "Alice Example"), ("bob", "Bob Example"), ("carol", "Carol Example"),
                               ("dave", "Dave Outsider")):
                self._add_user(name, real, f"{name}@example.com")
            self._add_channel("general", ["alice", "bob", "carol", "dave"], private=False, bot=False)
            self._add_channel("payments-alerts", ["alice", "bob"], private=False, bot=True)
            self._add_channel("web-alerts", ["carol", "alice"], private=False, bot=True)

    def start(self) -> FakeSlack:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.events.close()

    def reset(self) -> None:
        """Back to the default workspace: its people and channels, no messages, calls, faults or
        watchers, default switches."""
        self._clear_state()
        self._set_defaults()
        with self._lock:
            self._watchers.clear()
        self.calls.reset()
        self.faults.clear()
        self.latency = 0.0
        self.events.enabled = True
        self.events.set_defaults()
        self.events.discard_pending()
        self.events.drain(timeout=10.0)  # the delivery in flight, if any
        self.events.clear()

    @property
    def latency(self) -> float:
        return self._misbehaviour.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._misbehaviour.latency = seconds

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The signing headers Slack sends with `body`: `v0=` HMAC-SHA256 of `v0:<timestamp>:<body>` with
        the signing secret (api.slack.com/authentication/verifying-requests-from-slack)."""
        when = int(time.time() + self.signing_clock_offset) if timestamp is None else timestamp
        signature = hmac_sha256_hex(self.signing_secret, f"v0:{when}:".encode() + body)
        return {"X-Slack-Request-Timestamp": str(when), "X-Slack-Signature": f"v0={signature}"}

    # ------------------------------------------------------------------ the workspace's people and channels

    def add_user(self, name: str, real_name: str | None = None, email: str | None = None) -> str:
        """A new member of the workspace; their user ID."""
        with self._lock:
            return self._add_user(name, real_name or name.title(), email or f"{name}@example.com").id

    def add_channel(self, name: str, members: Sequence[str] = (), *, private: bool = False,
                    bot: bool = True) -> str:
        """A new channel with these people (and the app, unless `bot=False`); its ID."""
        with self._lock:
            return self._add_channel(name.lstrip("#"), members, private=private, bot=bot).id

    def join(self, channel: str, user: str) -> None:
        with self._lock:
            found, who = self._channel(channel), self._user(user).id
            if who not in found.members:
                found.members.append(who)

    def leave(self, channel: str, user: str) -> None:
        with self._lock:
            found, who = self._channel(channel), self._user(user).id
            if who in found.members:
                found.members.remove(who)

    def archive(self, channel: str) -> None:
        with self._lock:
            self._channel(channel).archived = True

    def user_id(self, user: str) -> str:
        with self._lock:
            return self._user(user).id

    def channel_id(self, channel: str) -> str:
        with self._lock:
            return self._channel(channel).id

    def user(self, user: str) -> dict[str, Any]:
        """The user as `users.info` shows them."""
        with self._lock:
            return self._render_user(self._user(user))

    # ------------------------------------------------------------------ what the channel shows

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """The channel's top-level messages, oldest first, as `conversations.history` shows them (with
        every reaction's users)."""
        with self._lock:
            found = self._channel(channel)
            return [self._render(found.messages[ts], full=True) for ts in found.timeline
                    if not found.messages[ts].deleted]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self._lock:
            return self._render(self._message(self._channel(channel), ts), full=True)

    def replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The thread's replies under the message `ts`, oldest first."""
        with self._lock:
            found = self._channel(channel)
            return [self._render(found.messages[r], full=True) for r in self._message(found, ts).replies]

    def edits(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The versions of the message that `chat.update` (or a response_url) replaced, oldest first:
        `{"text", "blocks", "replaced_at"}`. Empty for a message never updated."""
        with self._lock:
            return copy.deepcopy(self._message(self._channel(channel), ts).edits)

    def ephemeral(self, channel: str) -> list[tuple[str, dict[str, Any]]]:
        """(user, message) for each message only that user saw (response_url answers)."""
        with self._lock:
            cid = self._channel(channel).id
            return [(user, copy.deepcopy(m)) for c, user, m in self._ephemeral if c == cid]

    def watch(self, callback: Callable[[MessageChange], None]) -> Callable[[], None]:
        """Call `callback` with every change to any channel (`print` gives one line per change); returns
        the function that stops it. Callbacks run on the fake's server thread: keep them quick."""
        with self._lock:
            self._watchers.append(callback)

        def stop() -> None:
            with self._lock:
                if callback in self._watchers:
                    self._watchers.remove(callback)

        return stop

    # ------------------------------------------------------------------ things people do in Slack

    def person_post(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> str:
        """A person writes a message (or a reply); its ts. The app cannot update it."""
        with self._lock:
            found, who = self._channel(channel), self._user(user)
            if who.id not in found.members:
                raise PermissionError(f"{who.name} is not in #{found.name}")
            message = self._post(found, who.id, text, [], thread_ts, from_app=False)
        self._notify()
        return message.ts

    def person_react(self, user: str, channel: str, ts: str, reaction: str) -> str | None:
        """A person adds a reaction (`"eyes"`; `":eyes:"` works too); sends the signed `reaction_added`
        event when the app is in the channel. The event's id, or None when the app is not in the channel
        (Slack sends it nothing). Anyone may react in a public channel; a private one only its members
        see."""
        with self._lock:
            found, who = self._channel(channel), self._user(user)
            self._check_sees(found, who)
            event_id = self._react(found, self._message(found, ts), who.id, reaction.strip(":"))
        self._notify()
        return event_id

    def person_unreact(self, user: str, channel: str, ts: str, reaction: str) -> str | None:
        """A person takes a reaction back; sends `reaction_removed` like `person_react`."""
        with self._lock:
            found, who = self._channel(channel), self._user(user)
            message = self._message(found, ts)
            name = reaction.strip(":")
            if who.id not in message.reactions.get(name, []):
                raise ValueError(f"{who.name} has no :{name}: on {ts}")
            message.reactions[name].remove(who.id)
            if not message.reactions[name]:
                del message.reactions[name]
            self._change("reaction_removed", found, message, who.id, name)
            event_id = self._send_reaction_event("reaction_removed", found, message, who.id, name)
        self._notify()
        return event_id

    def person_click(self, user: str, channel: str, ts: str, action_id: str,
                     value: str | None = None) -> dict[str, Any]:
        """A person clicks the message's button `action_id`; sends the signed `block_actions` payload to
        the interactivity URL and returns it. `value`, when given, must be the button's own value (a
        person cannot change it); LookupError when the message has no such button."""
        with self._lock:
            found, who = self._channel(channel), self._user(user)
            self._check_sees(found, who)
            message = self._message(found, ts)
            found_button = next(((block, button) for block, button in _buttons(message.blocks)
                                 if button.get("action_id") == action_id), None)
            if found_button is None:
                raise LookupError(f"message {ts} has no button {action_id!r}")
            block, button = found_button
            if value is not None and value != button.get("value"):
                raise ValueError(f"button {action_id!r} carries {button.get('value')!r}, not {value!r}")
            payload = self._block_actions(found, message, who, block, button)
        self.events.send_interaction(payload)
        return payload

    def verify_events_url(self, url: str | None = None) -> bool:
        """Slack's check when an app's Request URL is saved: a signed `url_verification` request whose
        `challenge` the app must echo (as plain text, JSON or a form). Whether it did."""
        challenge = secrets.token_urlsafe(24)
        body = json.dumps({"token": self.verification_token, "challenge": challenge,
                           "type": "url_verification"}).encode()
        target = url or self.events.url
        if not target:
            raise ValueError("no events URL")
        headers = {"Content-Type": "application/json", "User-Agent": SLACK_USER_AGENT, **self.sign(body)}
        try:
            answer = httpx.post(target, content=body, headers=headers, timeout=self.events.timeout)
        except httpx.HTTPError:
            return False
        if answer.status_code != 200:
            return False
        text = answer.text.strip()
        if text == challenge:
            return True
        try:
            return bool(json.loads(text).get("challenge") == challenge)
        except (ValueError, AttributeError):
            return dict(parse_qsl(text)).get("challenge") == challenge

    # ------------------------------------------------------------------ state internals (under the lock)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08X}"

    def _next_ts(self) -> str:
        now = int(time.time() * 1_000_000)
        self._last_ts_us = max(now, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _add_user(self, name: str, real_name: str, email: str) -> _User:
        if any(u.name == name for u in self._users.values()):
            raise ValueError(f"there is already a user {name!r}")
        user = _User(self._next_id("U"), name, real_name, email)
        self._users[user.id] = user
        return user

    def _add_channel(self, name: str, members: Sequence[str], *, private: bool, bot: bool) -> _Channel:
        if any(c.name == name for c in self._channels.values()):
            raise ValueError(f"there is already a channel #{name}")
        ids = [self._user(m).id for m in members] + ([BOT_USER_ID] if bot else [])
        channel = _Channel(self._next_id("G" if private else "C"), name, private, ids, int(time.time()))
        self._channels[channel.id] = channel
        return channel

    def _user(self, user: str) -> _User:
        found = self._users.get(user) or next((u for u in self._users.values() if u.name == user), None)
        if found is None:
            raise LookupError(f"no Slack user {user!r}")
        return found

    def _channel(self, channel: str) -> _Channel:
        found = self._find_channel(channel, by_name=True)
        if found is None:
            raise LookupError(f"no Slack channel {channel!r}")
        return found

    def _find_channel(self, channel: str | None, *, by_name: bool) -> _Channel | None:
        if not channel:
            return None
        if channel in self._channels:
            return self._channels[channel]
        if not by_name:
            return None
        name = channel.removeprefix("#")
        return next((c for c in self._channels.values() if c.name == name), None)

    def _message(self, channel: _Channel, ts: str) -> _Message:
        message = channel.messages.get(ts)
        if message is None or message.deleted or not message.visible:
            raise LookupError(f"no message {ts} in #{channel.name}")
        return message

    def _check_sees(self, channel: _Channel, user: _User) -> None:
        if channel.private and user.id not in channel.members:
            raise PermissionError(f"{user.name} cannot see the private #{channel.name}")

    def _post(self, channel: _Channel, user: str, text: str, blocks: list[dict[str, Any]],
              thread_ts: str | None, *, from_app: bool) -> _Message:
        message = _Message(self._next_ts(), channel.id, user, text, blocks, from_app)
        channel.messages[message.ts] = message
        if thread_ts is None:
            channel.timeline.append(message.ts)
            self._change("posted", channel, message, user)
            return message
        parent = channel.messages.get(thread_ts)
        if parent is not None and parent.thread_ts not in (None, parent.ts):
            parent = channel.messages.get(parent.thread_ts)  # a reply to a reply joins the parent's thread
        if parent is None or parent.deleted:
            message.thread_ts, message.visible = thread_ts, False
            return message
        parent.thread_ts = parent.ts
        parent.replies.append(message.ts)
        message.thread_ts = parent.ts
        self._change("replied", channel, message, user)
        return message

    def _edit(self, channel: _Channel, message: _Message, text: str | None,
              blocks: list[dict[str, Any]] | None) -> None:
        message.edits.append({"text": message.text, "blocks": copy.deepcopy(message.blocks),
                              "replaced_at": self._next_ts()})
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        self._change("updated", channel, message, BOT_USER_ID)

    def _react(self, channel: _Channel, message: _Message, user: str, name: str) -> str | None:
        if not _EMOJI.match(name):
            raise SlackError("invalid_name")
        users = message.reactions.setdefault(name, [])
        if user in users:
            raise SlackError("already_reacted")
        users.append(user)
        self._change("reaction_added", channel, message, user, name)
        return self._send_reaction_event("reaction_added", channel, message, user, name)

    def _send_reaction_event(self, kind: str, channel: _Channel, message: _Message, user: str,
                             name: str) -> str | None:
        # Apps get events only from conversations they are in.
        if BOT_USER_ID not in channel.members:
            return None
        event = {"type": kind, "user": user, "reaction": name, "item_user": message.user,
                 "item": {"type": "message", "channel": channel.id, "ts": message.ts},
                 "event_ts": self._next_ts()}
        event_id = "Ev0" + secrets.token_hex(5).upper()
        envelope = {
            "token": self.verification_token, "team_id": TEAM_ID, "context_team_id": TEAM_ID,
            "context_enterprise_id": None, "api_app_id": APP_ID, "event": event, "type": "event_callback",
            "event_id": event_id, "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
            "event_context": "4-" + base64.b64encode(secrets.token_bytes(24)).decode(),
        }
        self.events.send_event(json.dumps(envelope, separators=(",", ":")).encode())
        return event_id

    def _block_actions(self, channel: _Channel, message: _Message, user: _User, block: dict[str, Any],
                       button: dict[str, Any]) -> dict[str, Any]:
        """The interactivity payload of a button click (api.slack.com/reference/interaction-payloads/
        block-actions)."""
        hook = secrets.token_hex(12)
        self._hooks[hook] = _ResponseHook(channel.id, message.ts, user.id, time.monotonic())
        action = {"type": "button", "action_id": button["action_id"], "block_id": block["block_id"],
                  "text": copy.deepcopy(button.get("text")), "action_ts": self._next_ts()}
        if "value" in button:
            action["value"] = button["value"]
        return {
            "type": "block_actions",
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": self.verification_token,
            "container": {"type": "message", "message_ts": message.ts, "channel_id": channel.id,
                          "is_ephemeral": False},
            "trigger_id": f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(16)}",
            "team": {"id": TEAM_ID, "domain": self.team_name.lower()},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": channel.name},
            "message": self._render(message, full=True),
            "state": {"values": {}},
            "response_url": f"{self.server.url}/actions/{TEAM_ID}/{next(self._ids)}/{hook}",
            "actions": [action],
        }

    def _change(self, kind: str, channel: _Channel, message: _Message, actor: str | None,
                reaction: str | None = None) -> None:
        if self._watchers:
            name = self._users[actor].name if actor in self._users else None
            self._changes.append(MessageChange(kind, channel.id, channel.name, message.ts,
                                               self._render(message, full=True), actor, reaction, name))

    def _notify(self) -> None:
        """Tell the watchers what changed, outside the lock (a watcher may read the fake)."""
        with self._lock:
            changes, self._changes = self._changes, []
            watchers = list(self._watchers)
        for change in changes:
            for watcher in watchers:
                try:
                    watcher(change)
                except Exception:
                    log.exception("fake Slack watcher failed")

    def _render(self, message: _Message, *, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "user": message.user, "text": message.text,
                               "ts": message.ts, "team": TEAM_ID}
        if message.from_app:
            out |= {"bot_id": BOT_ID, "app_id": APP_ID}
        if message.blocks:
            out["blocks"] = copy.deepcopy(message.blocks)
        if message.thread_ts:
            out["thread_ts"] = message.thread_ts
        if message.replies:
            channel = self._channels[message.channel]
            authors = [channel.messages[r].user for r in message.replies]
            out |= {"reply_count": len(message.replies), "reply_users": list(dict.fromkeys(authors)),
                    "reply_users_count": len(set(authors)), "latest_reply": message.replies[-1]}
        if message.reactions:
            out["reactions"] = [{"name": name, "users": users if full else users[:REACTION_USERS_SHOWN],
                                 "count": len(users)} for name, users in message.reactions.items()]
        return out

    def _render_user(self, user: _User) -> dict[str, Any]:
        profile: dict[str, Any] = {"real_name": user.real_name, "display_name": user.name,
                                   "real_name_normalized": user.real_name,
                                   "display_name_normalized": user.name, "team": TEAM_ID}
        if user.is_bot:
            profile |= {"bot_id": BOT_ID, "api_app_id": APP_ID}
        elif self.email_visible:
            profile["email"] = user.email
        return {"id": user.id, "team_id": TEAM_ID, "name": user.name, "deleted": False,
                "real_name": user.real_name, "tz": "Europe/London", "tz_label": "British Summer Time",
                "tz_offset": 3600, "profile": profile, "is_admin": False, "is_owner": False,
                "is_bot": user.is_bot, "is_app_user": False, "updated": 1_700_000_000}

    def _render_channel(self, channel: _Channel, *, num_members: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": channel.id, "name": channel.name, "name_normalized": channel.name, "is_channel": True,
            "is_group": False, "is_im": False, "is_mpim": False, "is_private": channel.private,
            "is_archived": channel.archived, "is_general": channel.name == "general",
            "is_member": BOT_USER_ID in channel.members, "is_shared": False, "is_ext_shared": False,
            "is_org_shared": False, "created": channel.created, "creator": channel.members[0]
            if channel.members else BOT_USER_ID, "context_team_id": TEAM_ID,
        }
        if num_members:
            out["num_members"] = len(channel.members)
        return out

    # ------------------------------------------------------------------ HTTP: the Web API

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        try:
            args, body_token = await self._read_args(request)
            handler = self._methods.get(method)
            if handler is None:
                raise SlackError("unknown_method", req_method=method)
            self._authenticate(request, body_token)
            with self._lock:
                result = handler(args)
        except SlackError as failure:
            self._notify()
            return failure.response()
        self._notify()
        return JSONResponse({"ok": True, **result}, headers={"X-Slack-Req-Id": secrets.token_hex(16)})

    async def _read_args(self, request: Request) -> tuple[_Args, str | None]:
        """The arguments, and a token passed in a form body (Slack reads tokens from the Authorization
        header or from POST parameters; a `token` inside a JSON body is not read)."""
        values: dict[str, Any] = dict(request.query_params)
        raw = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        form_token = None
        if raw and kind == "application/json":
            try:
                data = json.loads(raw)
            except ValueError:
                raise SlackError("invalid_json") from None
            if not isinstance(data, dict):
                raise SlackError("invalid_json")
            values |= {k: v for k, v in data.items() if k != "token"}
        elif raw and kind == "application/x-www-form-urlencoded":
            try:
                form = dict(parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=True))
            except (UnicodeDecodeError, ValueError):
                raise SlackError("invalid_form_data") from None
            form_token = form.pop("token", None)
            values |= form
        elif raw:
            raise SlackError("invalid_post_type")
        values.pop("token", None)  # never from the query string
        return _Args(values), form_token

    def _authenticate(self, request: Request, body_token: str | None) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else body_token
        if not token:
            raise SlackError("not_authed")
        if not secrets.compare_digest(token.encode(), self.bot_token.encode()):
            raise SlackError("invalid_auth")

    def _bot_channel(self, args: _Args, *, by_name: bool = False, post: bool = False) -> _Channel:
        """The channel the call names, as the bot can reach it: a private channel it is not in does not
        exist for it; a public one it is not in can be read but not posted to."""
        channel = self._find_channel(args.text("channel"), by_name=by_name)
        if channel is None or (channel.private and BOT_USER_ID not in channel.members):
            raise SlackError("channel_not_found")
        if post and channel.archived:
            raise SlackError("is_archived")
        if post and BOT_USER_ID not in channel.members:
            raise SlackError("not_in_channel")
        return channel

    def _take_post_slot(self, channel: _Channel) -> None:
        """A token bucket per channel: `post_burst` messages at once, then `post_rate` a second."""
        if not self.enforce_rate_limits:
            return
        now = time.monotonic()
        tokens, at = self._buckets.get(channel.id, (float(self.post_burst), now))
        tokens = min(float(self.post_burst), tokens + (now - at) * self.post_rate)
        if tokens < 1.0:
            wait = max(1, math.ceil((1.0 - tokens) / self.post_rate))
            self._buckets[channel.id] = (tokens, now)
            raise SlackError("ratelimited", status=429, headers={"Retry-After": str(wait)})
        self._buckets[channel.id] = (tokens - 1.0, now)

    def _auth_test(self, args: _Args) -> dict[str, Any]:
        return {"url": f"https://{self.team_name.lower()}.slack.com/", "team": self.team_name,
                "user": self._users[BOT_USER_ID].name, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                "bot_id": BOT_ID, "is_enterprise_install": False}

    def _chat_post_message(self, args: _Args) -> dict[str, Any]:
        channel = self._bot_channel(args, by_name=True, post=True)
        text = args.text("text") or ""
        blocks = _normalise_blocks(args.values["blocks"]) if args.values.get("blocks") else []
        if not text and not blocks and not args.values.get("attachments"):
            raise SlackError("no_text")
        thread_ts = args.text("thread_ts") or None
        if thread_ts is not None and not _TS.match(thread_ts):
            problem = f"[ERROR] {thread_ts} is not a valid thread_ts"
            raise SlackError("invalid_thread_ts", response_metadata={"messages": [problem]})
        self._take_post_slot(channel)
        message = self._post(channel, BOT_USER_ID, text[:POST_TEXT_LIMIT], blocks, thread_ts, from_app=True)
        return {"channel": channel.id, "ts": message.ts, "message": self._render(message, full=True)}

    def _chat_update(self, args: _Args) -> dict[str, Any]:
        channel = self._bot_channel(args)
        message = self._api_message(channel, args.text("ts"), missing="message_not_found")
        if not message.from_app:
            raise SlackError("cant_update_message")
        text = args.text("text")
        blocks = _normalise_blocks(args.values["blocks"]) if "blocks" in args.values else None
        if not text and not blocks:
            raise SlackError("no_text")
        if text is not None and len(text) > UPDATE_TEXT_LIMIT:
            raise SlackError("msg_too_long")
        # Fields left out keep their old value; `blocks: []` removes the blocks.
        self._edit(channel, message, text, blocks)
        return {"channel": channel.id, "ts": message.ts, "text": message.text,
                "message": self._render(message, full=True)}

    def _api_message(self, channel: _Channel, ts: str | None, missing: str = "no_item_specified") -> _Message:
        if not ts:
            raise SlackError(missing)
        message = channel.messages.get(ts)
        if message is None or message.deleted or not message.visible:
            raise SlackError("message_not_found")
        return message

    def _reactions_add(self, args: _Args) -> dict[str, Any]:
        channel = self._bot_channel(args)
        message = self._api_message(channel, args.text("timestamp"))
        self._react(channel, message, BOT_USER_ID, args.text("name") or "")
        return {}

    def _reactions_get(self, args: _Args) -> dict[str, Any]:
        channel = self._bot_channel(args)
        message = self._api_message(channel, args.text("timestamp"))
        return {"type": "message", "channel": channel.id,
                "message": self._render(message, full=args.flag("full"))}

    def _conversations_info(self, args: _Args) -> dict[str, Any]:
        channel = self._bot_channel(args)
        return {"channel": self._render_channel(channel, num_members=args.flag("include_num_members"))}

    def _conversations_list(self, args: _Args) -> dict[str, Any]:
        types = set((args.text("types") or "public_channel").split(","))
        listed = [c.id for c in self._channels.values()
                  if ("private_channel" if c.private else "public_channel") in types
                  and (not c.private or BOT_USER_ID in c.members)
                  and not (c.archived and args.flag("exclude_archived"))]
        page, cursor = _page(listed, "channel", args)
        return {"channels": [self._render_channel(self._channels[c]) for c in page],
                "response_metadata": {"next_cursor": cursor}}

    def _conversations_members(self, args: _Args) -> dict[str, Any]:
        channel = self._bot_channel(args)
        page, cursor = _page(channel.members, "user", args)
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _users_info(self, args: _Args) -> dict[str, Any]:
        user = self._users.get(args.text("user") or "")
        if user is None:
            raise SlackError("user_not_found")
        return {"user": self._render_user(user)}

    def _users_lookup_by_email(self, args: _Args) -> dict[str, Any]:
        email = (args.text("email") or "").lower()
        user = next((u for u in self._users.values() if u.email and u.email.lower() == email), None)
        if user is None:
            raise SlackError("users_not_found")
        return {"user": self._render_user(user)}

    # ------------------------------------------------------------------ HTTP: response_url

    async def _response_url(self, request: Request) -> Response:
        """What an app posts to a click's `response_url`: a message for the clicking person only
        (`ephemeral`, the default), one for the channel (`in_channel`), or `replace_original` /
        `delete_original` on the message that was clicked. It works `RESPONSE_URL_USES` times within
        `RESPONSE_URL_LIFETIME`; the error words past that are the fake's own (Slack documents the limits,
        not its answers)."""
        try:
            data = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
        with self._lock:
            hook = self._hooks.get(request.path_params["secret"])
            if hook is None or time.monotonic() - hook.issued > RESPONSE_URL_LIFETIME:
                return JSONResponse({"ok": False, "error": "expired_url"}, status_code=404)
            if hook.uses >= RESPONSE_URL_USES:
                return JSONResponse({"ok": False, "error": "used_url"}, status_code=404)
            hook.uses += 1
            try:
                self._answer_click(self._channels[hook.channel], hook.ts, hook.user, data)
            except SlackError as failure:
                return JSONResponse({"ok": False, "error": failure.error}, status_code=400)
        self._notify()
        return JSONResponse({"ok": True})

    def _answer_click(self, channel: _Channel, ts: str, user: str, data: dict[str, Any]) -> None:
        original = channel.messages[ts]
        if data.get("delete_original"):
            original.deleted = True
            self._change("deleted", channel, original, BOT_USER_ID)
            return
        text = data.get("text") if isinstance(data.get("text"), str) else None
        blocks = _normalise_blocks(data["blocks"]) if data.get("blocks") else None
        if not text and not blocks:
            raise SlackError("no_text")
        if data.get("replace_original"):
            self._edit(channel, original, text, blocks)
        elif data.get("response_type") == "in_channel":
            thread = data.get("thread_ts") if isinstance(data.get("thread_ts"), str) else None
            self._post(channel, BOT_USER_ID, text or "", blocks or [], thread, from_app=True)
        else:
            at = self._next_ts()
            message = {"type": "message", "text": text or "", "blocks": blocks or [], "ts": at}
            self._ephemeral.append((channel.id, user, message))
            if self._watchers:
                self._changes.append(MessageChange("ephemeral", channel.id, channel.name, at,
                                                   copy.deepcopy(message), user))


def _fault_body(fault: Fault) -> dict[str, Any]:
    """Slack's own words for an injected failure's status."""
    error = {429: "ratelimited", 503: "service_unavailable", 500: "fatal_error"}.get(fault.status,
                                                                                     "internal_error")
    return {"ok": False, "error": error}


def start_fake_slack(
    *,
    bot_token: str = DEFAULT_BOT_TOKEN,
    signing_secret: str = DEFAULT_SIGNING_SECRET,
    events_url: str | None = None,
    interactivity_url: str | None = None,
    team_name: str = "Acme",
    port: int = 0,
) -> FakeSlack:
    """Start a fake Slack on 127.0.0.1 (`port=0`: any free port). `.url` is the Web API base
    (`http://127.0.0.1:<port>/api/`, what `WebClient(base_url=...)` takes); events and interactivity go
    to `events_url` (`interactivity_url`, when the app has a separate one)."""
    return FakeSlack(bot_token=bot_token, signing_secret=signing_secret, events_url=events_url,
                     interactivity_url=interactivity_url, team_name=team_name, port=port).start()


__all__ = [
    "APP_ID", "BOT_ID", "BOT_USER_ID", "TEAM_ID", "DeliveryAttempt", "FakeSlack", "Fault", "MessageChange",
    "SlackError", "SlackSender", "start_fake_slack",
]
