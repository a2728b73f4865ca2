"""Sentry webhooks: signatures, delivery keys, the replay window, parsing of every stored payload, hostile
bodies, and the round trip through the fake (what Sentry sends back after our own changes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.core.issue import SentryActor
from syncer.errors import PayloadError
from syncer.fakes.base import WebhookInbox
from syncer.fakes.sentry import FakeSentry, start_fake_sentry
from syncer.sentry.client import SentryClient
from syncer.sentry.webhooks import (
    SentryEvent,
    delivery_key,
    parse_event,
    timestamp_ok,
    verify_signature,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sentry"
SECRET = "webhook-test-secret"
TOKEN = "webhook-test-token"
APP_ID = "77a1c0de-5555-4666-8777-888899990000"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ signatures


BODY = b'{"action":"resolved","installation":{"uuid":"x"},"data":{},"actor":{}}'


def test_a_valid_signature_is_accepted() -> None:
    assert verify_signature(SECRET, BODY, sign(BODY))


def test_hex_case_does_not_matter() -> None:
    assert verify_signature(SECRET, BODY, sign(BODY).upper())


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        sign(BODY, "another-secret"),
        sign(BODY + b" "),
        sign(BODY)[:-1],
        sign(BODY) + "0",
        "z" * 64,
        f"sha256={sign(BODY)}",
        f" {sign(BODY)}",
        f"{sign(BODY)[:32]} {sign(BODY)[33:]}",
    ],
    ids=["missing", "empty", "wrong-secret", "other-body", "short", "long", "not-hex", "prefixed",
         "padded", "spaced"],
)
def test_bad_signatures_are_refused(signature: str | None) -> None:
    assert not verify_signature(SECRET, BODY, signature)


def test_a_tampered_body_is_refused() -> None:
    signature = sign(BODY)
    assert not verify_signature(SECRET, BODY.replace(b"resolved", b"ignored"), signature)


def test_re_serialised_json_does_not_verify() -> None:
    # The signature covers the exact bytes Sentry sent; parsed-and-dumped JSON is other bytes.
    assert not verify_signature(SECRET, json.dumps(json.loads(BODY)).encode(), sign(BODY))


def test_an_empty_secret_accepts_nothing() -> None:
    assert not verify_signature("", BODY, sign(BODY, ""))


# ------------------------------------------------------------------ delivery keys and timestamps


def test_delivery_key_is_stable_and_content_derived() -> None:
    key = delivery_key("issue", BODY)
    assert key == delivery_key("issue", BODY)
    assert len(key) == 64
    assert all(c in "0123456789abcdef" for c in key)
    assert key != delivery_key("issue", BODY + b" ")
    assert key != delivery_key("comment", BODY)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, False),
        ("", False),
        ("1000000000", True),
        ("1000000299", True),
        ("999999700.5", True),
        ("1000000301", False),
        ("999999600", False),
        ("soon", False),
        ("-5", False),
        ("1e9", False),
        ("99999999999999999999", False),
    ],
)
def test_timestamp_window(header: str | None, ok: bool) -> None:
    assert timestamp_ok(header, now=1_000_000_000.0, window_seconds=300) is ok


@pytest.mark.parametrize("header", [None, "", "1000", "soon"])
def test_a_window_of_zero_turns_the_timestamp_check_off(header: str | None) -> None:
    assert timestamp_ok(header, now=1_000_000_000.0, window_seconds=0) is True


# ------------------------------------------------------------------ the stored payloads


def test_issue_resolved() -> None:
    event = parse_event("issue", fixture("issue_resolved"))
    assert (event.resource, event.action, event.resolution_type) == ("issue", "resolved", "now")
    assert event.issue is not None
    assert event.issue.status == "resolved"
    assert event.issue_id == event.issue.id == "4100000001"
    assert event.installation_uuid == "a3c9e1b2-7f64-4d8a-b5e0-2f1d6c8b9e07"
    assert event.actor == SentryActor(type="user", id="1", name="Alice Example")
    assert not event.is_own_echo("5d1f8a7e-2c4b-4e0f-9a3d-7b6c1e2f3a40")


@pytest.mark.parametrize(("short_id", "kept"), [
    ("BILLING-API-3F", "BILLING-API-3F"),
    ("MY_APP-1", "MY_APP-1"),
    ("https://evil.example/", ""),
    ("[click|https://evil.example]", ""),
    ("NOHYPHEN", ""),
])
def test_a_short_id_not_of_sentrys_shape_is_dropped(short_id: str, kept: str) -> None:
    # It is a ticket's link text: a URL there would show one place and lead to another.
    payload = fixture("issue_resolved")
    payload["data"]["issue"]["shortId"] = short_id
    issue = parse_event("issue", payload).issue
    assert issue is not None and issue.short_id == kept


def test_issue_unresolved_regressed() -> None:
    event = parse_event("issue", fixture("issue_unresolved_regressed"))
    assert event.action == "unresolved"
    assert event.issue is not None
    assert (event.issue.status, event.issue.substatus) == ("unresolved", "regressed")
    assert event.actor is not None
    assert (event.actor.type, event.actor.id) == ("application", "sentry")
    assert not event.is_own_echo("sentry-is-not-our-app")


def test_issue_ignored() -> None:
    event = parse_event("issue", fixture("issue_ignored"))
    assert event.action == "ignored"
    assert event.issue is not None
    assert (event.issue.status, event.issue.substatus) == ("ignored", "archived_until_escalating")
    assert event.issue.status_details == {"ignoreUntilEscalating": True}


def test_archived_is_the_same_event_under_its_newer_name() -> None:
    payload = fixture("issue_ignored")
    payload["action"] = "archived"
    event = parse_event("issue", payload)
    assert event.action == "archived"
    assert event.issue is not None
    assert event.issue.status == "ignored"


def test_issue_assigned() -> None:
    event = parse_event("issue", fixture("issue_assigned"))
    assert event.assignee == SentryActor(type="user", id="2", name="Bob Example", email="bob@example.com")
    assert event.issue is not None
    assert event.issue.assigned_to is not None
    assert event.issue.assigned_to.email == "bob@example.com"


def test_assigned_without_data_assignee_falls_back_to_the_issue() -> None:
    payload = fixture("issue_assigned")
    del payload["data"]["assignee"]
    event = parse_event("issue", payload)
    assert event.assignee == SentryActor(type="user", id="2", name="Bob Example", email="bob@example.com")
    payload["data"]["issue"]["assignedTo"] = None
    assert parse_event("issue", payload).assignee is None


def test_event_alert_triggered() -> None:
    event = parse_event("event_alert", fixture("event_alert_triggered"))
    assert (event.resource, event.action) == ("event_alert", "triggered")
    assert event.issue is None
    assert event.issue_id == "4100000005"
    assert event.rule == "Page on-call for new billing errors"
    assert event.release == "billing-api@2.14.0"  # from its tags: the body has no `release` key


def test_event_alert_release_from_the_event_or_its_sentry_release_tag() -> None:
    payload = fixture("event_alert_triggered")
    event = payload["data"]["event"]
    event["tags"] = [["sentry:release", "billing-api@3.0.0"]]
    assert parse_event("event_alert", payload).release == "billing-api@3.0.0"
    event["release"] = "billing-api@3.0.1"
    assert parse_event("event_alert", payload).release == "billing-api@3.0.1"
    event["release"], event["tags"] = None, [["release"], "junk", ["level", "error"]]
    assert parse_event("event_alert", payload).release == ""  # names none: nothing to tell


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        ({"issue_url": "https://ops.example.com/sentry/api/0/issues/4100000007/"}, "4100000007"),
        ({"web_url": "https://sentry.example.com/organizations/acme/issues/4100000008/events/abc/"},
         "4100000008"),
        ({"web_url": "https://acme.sentry.io/issues/4100000009/?referrer=alert"}, "4100000009"),
        ({"issue_url": "https://x/api/0/issues/abc/", "web_url": "https://x/issues/"}, None),
    ],
    ids=["issue_url-under-a-prefix", "web_url", "web_url-customer-domain", "neither"],
)
def test_event_alert_of_before_2022_names_the_issue_in_its_urls(
    urls: dict[str, str], expected: str | None
) -> None:
    payload = fixture("event_alert_triggered")
    del payload["data"]["event"]["issue_id"]  # as before getsentry/sentry#31222
    payload["data"]["event"].update(urls)
    for key in ("issue_url", "web_url"):
        if key not in urls:
            payload["data"]["event"].pop(key, None)
    if expected is None:
        with pytest.raises(PayloadError, match="names no issue"):
            parse_event("event_alert", payload)
    else:
        assert parse_event("event_alert", payload).issue_id == expected


def test_comment_created() -> None:
    event = parse_event("comment", fixture("comment_created"))
    assert (event.resource, event.action, event.issue_id) == ("comment", "created", "4100000006")
    assert event.actor is not None
    assert event.actor.name == "Carol Example"


@pytest.mark.parametrize("name", ["issue_resolved", "issue_unresolved_regressed", "issue_ignored",
                                  "issue_assigned", "event_alert_triggered", "comment_created"])
def test_raw_bytes_parse_like_the_decoded_body(name: str) -> None:
    raw = (FIXTURES / f"{name}.json").read_bytes()
    resource = name.split("_")[0] if not name.startswith("event_alert") else "event_alert"
    assert parse_event(resource, raw) == parse_event(resource, json.loads(raw))


# ------------------------------------------------------------------ hostile and unusual bodies


def resolved_with(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = fixture("issue_resolved")
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    ("resource", "payload"),
    [
        ("issue", b"not json"),
        ("issue", b"\xff\xfe"),
        ("issue", b"[" * 100_000 + b"]" * 100_000),
        ("issue", b'{"action": "' + b"x" * (6 * 1024 * 1024) + b'"}'),
        ("issue", [1, 2, 3]),
        ("issue", None),
        ("issue", {"data": {}}),
        ("issue", resolved_with(action=7)),
        ("issue", resolved_with(data={"resolution_type": "now"})),
        ("issue", resolved_with(data={"issue": {"id": "abc"}})),
        ("issue", resolved_with(data={"issue": {"id": True}})),
        ("issue", resolved_with(data={"issue": "4100000001"})),
        ("event_alert", {"action": "triggered", "data": {"event": {"issue_id": None}}}),
        ("event_alert", {"action": "triggered", "data": {"event": "4100000001"}}),
        ("comment", {"action": "created", "data": {"issue_id": "12; DROP TABLE"}}),
    ],
    ids=["not-json", "not-utf8", "deep", "huge", "list", "null", "no-action", "action-type", "no-issue",
         "bad-id", "bool-id", "issue-string", "alert-no-issue", "alert-event-string",
         "comment-bad-id"],
)
def test_unusable_payloads_raise_payload_error(resource: str, payload: Any) -> None:
    with pytest.raises(PayloadError):
        parse_event(resource, payload)


def test_unknown_resources_and_actions_parse_without_an_issue() -> None:
    installation = parse_event("installation", {"action": "created", "installation": {"uuid": "u"},
                                                "data": {"installation": {}}, "actor": None})
    assert (installation.resource, installation.issue, installation.actor) == ("installation", None, None)
    odd = parse_event("issue", resolved_with(action="merged", data={"issue": {"id": "x"}}))
    assert (odd.action, odd.issue, odd.issue_id) == ("merged", None, None)
    metric = parse_event("metric_alert", {"action": "critical", "data": []})
    assert metric.issue_id is None


def test_wrong_types_become_defaults() -> None:
    payload = fixture("issue_resolved")
    payload["installation"] = "not an object"
    payload["actor"] = ["user"]
    payload["data"]["resolution_type"] = {"now": True}
    payload["data"]["issue"].update(title=None, count=[1], project="billing", statusDetails="x",
                                     culprit="y" * 100_000)
    event = parse_event("issue", payload)
    assert (event.installation_uuid, event.actor, event.resolution_type) == ("", None, "")
    assert event.issue is not None
    assert (event.issue.title, event.issue.count, event.issue.project_slug) == ("", 0, "")
    assert len(event.issue.culprit) == 10_000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
payload_like = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["created", "resolved", "assigned", "ignored", "triggered"]) | json_values,
        "installation": json_values | st.fixed_dictionaries({"uuid": json_values}),
        "actor": json_values | st.fixed_dictionaries({"type": json_values, "id": json_values}),
        "data": json_values | st.fixed_dictionaries(
            {}, optional={"issue": json_values | st.fixed_dictionaries({"id": json_values}),
                          "event": json_values, "issue_id": json_values, "assignee": json_values}),
    },
)


@settings(max_examples=300, deadline=None)
@given(resource=st.sampled_from(["issue", "event_alert", "comment", "error", "installation", ""]),
       payload=payload_like | json_values)
def test_any_json_either_parses_or_raises_payload_error(resource: str, payload: Any) -> None:
    try:
        event = parse_event(resource, payload)
    except PayloadError:
        return
    assert isinstance(event, SentryEvent)
    event.is_own_echo(APP_ID)


def test_is_own_echo_needs_our_application_id() -> None:
    ours = SentryEvent("issue", "resolved", actor=SentryActor("application", APP_ID, "syncer"))
    assert ours.is_own_echo(APP_ID)
    assert not ours.is_own_echo(None)
    assert not ours.is_own_echo("")
    assert not ours.is_own_echo("another-app")
    assert not SentryEvent("issue", "resolved", actor=SentryActor("user", APP_ID)).is_own_echo(APP_ID)
    assert not SentryEvent("issue", "resolved").is_own_echo(APP_ID)


# ------------------------------------------------------------------ round trip through the fake


@pytest.fixture(scope="module")
def inbox() -> Iterator[WebhookInbox]:
    receiver = WebhookInbox().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def fake(inbox: WebhookInbox) -> Iterator[FakeSentry]:
    server = start_fake_sentry(token=TOKEN, client_secret=SECRET, app_id=APP_ID, webhook_url=inbox.url)
    yield server
    server.stop()


@pytest.fixture
def sentry(fake: FakeSentry, inbox: WebhookInbox) -> Iterator[SentryClient]:
    fake.reset()
    inbox.clear()
    with SentryClient(fake.url, fake.org, TOKEN) as client:
        yield client


def received(inbox: WebhookInbox, count: int) -> list[SentryEvent]:
    events = []
    for hook in inbox.wait(count):
        assert verify_signature(SECRET, hook.body, hook.headers["sentry-hook-signature"])
        assert timestamp_ok(hook.headers["sentry-hook-timestamp"], time.time(), 60)
        events.append(parse_event(hook.headers["sentry-hook-resource"], hook.body))
    return events


def test_our_own_change_comes_back_as_our_echo(
    fake: FakeSentry, inbox: WebhookInbox, sentry: SentryClient
) -> None:
    issue = fake.file_issue()
    sentry.update_issue(issue["id"], status="resolved")
    created, resolved = received(inbox, 2)
    assert created.action == "created"
    assert created.issue is not None
    assert created.issue.web_url == issue["permalink"]
    assert not created.is_own_echo(APP_ID)
    assert (resolved.action, resolved.issue_id) == ("resolved", issue["id"])
    assert resolved.actor == SentryActor("application", APP_ID, "syncer")
    assert resolved.is_own_echo(APP_ID)


def test_a_regression_is_not_our_echo(fake: FakeSentry, inbox: WebhookInbox, sentry: SentryClient) -> None:
    issue = fake.file_issue()
    sentry.update_issue(issue["id"], status="resolved")
    fake.regress(issue["id"])
    *_, regressed = received(inbox, 3)
    assert regressed.action == "unresolved"
    assert regressed.issue is not None
    assert regressed.issue.substatus == "regressed"
    assert regressed.actor is not None
    assert regressed.actor.id == "sentry"
    assert not regressed.is_own_echo(APP_ID)


def test_a_put_that_changes_nothing_sends_no_webhook(
    fake: FakeSentry, inbox: WebhookInbox, sentry: SentryClient
) -> None:
    issue = fake.file_issue()
    sentry.update_issue(issue["id"], status="unresolved")  # already unresolved: no change
    sentry.update_issue(issue["id"], assigned_to="")  # already unassigned: no change
    fake.trigger_alert(issue["id"])  # deliveries are in order: the next one after `created` is this
    created, alert = received(inbox, 2)
    assert (created.action, alert.resource, alert.issue_id) == ("created", "event_alert", issue["id"])
    assert len(inbox.received) == 2


def test_retries_share_a_delivery_key_though_request_ids_differ(
    fake: FakeSentry, inbox: WebhookInbox
) -> None:
    fake.reset()
    inbox.clear()
    inbox.answers[:] = [500]
    fake.file_issue()
    first, retry = inbox.wait(2)
    assert first.headers["request-id"] != retry.headers["request-id"]
    resource = first.headers["sentry-hook-resource"]
    assert delivery_key(resource, first.body) == delivery_key(resource, retry.body)
