"""Jira webhooks: signature checks and parsing, one stored payload per expectation."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncer.errors import PayloadError
from syncer.jira.webhooks import (
    ChangeItem,
    JiraEvent,
    delivery_key,
    parse_event,
    verify_signature,
    verify_token,
)

FIXTURES = Path(__file__).parent / "fixtures" / "jira"
SECRET = "webhook-s3cret"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- signatures ----------------------------------------------------------------------------------------

BODY = (FIXTURES / "issue_updated_done.json").read_bytes()


def test_valid_signature_is_accepted() -> None:
    assert verify_signature(SECRET, BODY, sign(BODY))


def test_signature_hex_case_does_not_matter() -> None:
    assert verify_signature(SECRET, BODY, "sha256=" + sign(BODY)[7:].upper())


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(sign(BODY, "another-secret"), id="wrong-secret"),
        pytest.param(sign(BODY + b" "), id="tampered-body"),
        pytest.param(sign(BODY)[7:], id="no-prefix"),
        pytest.param("sha1=" + sign(BODY)[7:], id="wrong-prefix"),
        pytest.param("sha256=" + "z" * 64, id="not-hex"),
        pytest.param("sha256=" + sign(BODY)[7:47], id="too-short"),
        pytest.param("sha256=\u00e9" * 3, id="non-ascii"),
    ],
)
def test_bad_signatures_are_refused(header: str | None) -> None:
    assert not verify_signature(SECRET, BODY, header)


def test_an_empty_secret_verifies_nothing() -> None:
    assert not verify_signature("", BODY, sign(BODY, ""))


def test_url_token() -> None:
    assert verify_token("tok-123", "tok-123")
    assert not verify_token("tok-123", "tok-124")
    assert not verify_token("tok-123", None)
    assert not verify_token("", "")


def test_delivery_key_prefers_jiras_identifier() -> None:
    assert delivery_key(" 5f1c-77aa ", b"{}") == "5f1c-77aa"


@pytest.mark.parametrize("identifier", [None, "", "has space", "x" * 201, "bad\nline"])
def test_delivery_key_falls_back_to_the_body_hash(identifier: str | None) -> None:
    assert delivery_key(identifier, b'{"a":1}') == "sha256:" + hashlib.sha256(b'{"a":1}').hexdigest()


# -- stored payloads -----------------------------------------------------------------------------------


def test_transition_to_done() -> None:
    event = parse_event(fixture("issue_updated_done"))
    assert event.webhook_event == "jira:issue_updated"
    assert event.event_type_name == "issue_generic"
    assert event.timestamp == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert event.user_id == "5b10ac8d82e05b22cc7d4ef5"
    assert event.status_change() == ChangeItem("status", "10000", "To Do", "10001", "Done")
    assert event.change("resolution") == ChangeItem("resolution", "", "", "10000", "Done")
    assert event.assignee_change() is None
    ticket = event.ticket
    assert ticket is not None
    assert (ticket.id, ticket.key, ticket.project_key) == ("10012", "OPS-12", "OPS")
    assert (ticket.status, ticket.status_category, ticket.resolution) == ("Done", "done", "Done")
    assert ticket.labels == ("sentry-4501", "sentry")


def test_reopened() -> None:
    event = parse_event(fixture("issue_updated_reopened"))
    change = event.status_change()
    assert change is not None
    assert (change.from_string, change.to_string, change.to_id) == ("Done", "To Do", "10000")
    assert event.ticket is not None
    assert event.ticket.status_category == "new"
    assert event.ticket.resolution == ""


def test_created() -> None:
    event = parse_event(fixture("issue_created"))
    assert event.webhook_event == "jira:issue_created"
    assert event.changelog == ()
    assert event.status_change() is None
    assert event.ticket is not None
    assert event.ticket.assignee_account_id == ""


def test_deleted() -> None:
    event = parse_event(fixture("issue_deleted"))
    assert event.webhook_event == "jira:issue_deleted"
    assert event.ticket is not None
    assert event.ticket.id == "10012"


def test_comment_created_takes_the_actor_from_the_comment() -> None:
    event = parse_event(fixture("comment_created"))
    assert event.webhook_event == "comment_created"
    assert event.comment == "Deployed the fix in 2026.1.3, please verify."
    assert event.user_id == "5b10ac8d82e05b22cc7d4ef5"
    assert event.ticket is not None
    assert event.ticket.key == "OPS-12"


def test_server_users_are_named() -> None:
    payload = fixture("issue_updated_done")
    payload["user"] = {"self": "https://jira.example.com/rest/api/2/user?username=alice", "name": "alice",
                       "key": "JIRAUSER10100", "displayName": "Alice"}
    assert parse_event(payload).user_id == "alice"


def test_cloud_assignee_change() -> None:
    payload = fixture("issue_updated_done")
    payload["issue_event_type_name"] = "issue_assigned"
    payload["changelog"]["items"] = [{
        "field": "assignee", "fieldtype": "jira", "fieldId": "assignee", "from": None, "fromString": None,
        "to": "5b10ac8d82e05b22cc7d4ef5", "toString": "Alice Example", "tmpFromAccountId": None,
        "tmpToAccountId": "5b10ac8d82e05b22cc7d4ef5",
    }]
    change = parse_event(payload).assignee_change()
    assert change == ChangeItem("assignee", "", "", "5b10ac8d82e05b22cc7d4ef5", "Alice Example")


def test_unknown_events_parse() -> None:
    event = parse_event({"webhookEvent": "sprint_started", "timestamp": 1, "sprint": {"id": 3}})
    assert event == JiraEvent(webhook_event="sprint_started", timestamp=datetime(1970, 1, 1, 0, 0, 0, 1000,
                                                                                 tzinfo=UTC))


# -- hostile payloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([], id="not-an-object"),
        pytest.param("jira:issue_updated", id="a-string"),
        pytest.param({}, id="no-event"),
        pytest.param({"webhookEvent": 7}, id="event-not-text"),
        pytest.param({"webhookEvent": "jira:issue_updated"}, id="issue-event-without-issue"),
        pytest.param({"webhookEvent": "jira:issue_updated", "issue": "OPS-1"}, id="issue-not-object"),
        pytest.param({"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-1"}},
                     id="issue-without-id"),
    ],
)
def test_unusable_payloads_are_payload_errors(payload: Any) -> None:
    with pytest.raises(PayloadError):
        parse_event(payload)


def test_mistyped_optional_fields_become_defaults() -> None:
    payload = fixture("issue_updated_done")
    payload["timestamp"] = "yesterday"
    payload["user"] = ["not", "a", "user"]
    payload["issue_event_type_name"] = {"x": 1}
    payload["changelog"] = {"items": ["junk", 3, None, {"field": "status", "from": {"id": 1}, "to": "10001"}]}
    payload["comment"] = "not an object"
    event = parse_event(payload)
    assert (event.timestamp, event.user_id, event.event_type_name, event.comment) == (None, "", "", "")
    assert event.changelog == (ChangeItem("status", "", "", "10001", ""),)


def test_huge_strings_are_cut() -> None:
    payload = fixture("issue_updated_done")
    payload["webhookEvent"] = "jira:issue_updated" + "x" * 10_000
    payload["changelog"]["items"][1]["toString"] = "D" * 1_000_000
    payload["changelog"]["items"] *= 1000
    event = parse_event(payload)
    assert len(event.webhook_event) == 100
    assert len(event.changelog) == 500
    assert all(len(item.to_string) <= 10_000 for item in event.changelog)


def test_absurd_timestamps_are_ignored() -> None:
    assert parse_event({"webhookEvent": "x", "timestamp": 10**30}).timestamp is None
    assert parse_event({"webhookEvent": "x", "timestamp": float("nan")}).timestamp is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "webhookEvent": st.sampled_from(["jira:issue_updated", "comment_created", "x"]) | json_values,
        "timestamp": json_values,
        "user": json_values,
        "issue": st.fixed_dictionaries({}, optional={"id": json_values, "key": json_values,
                                                      "fields": json_values}) | json_values,
        "changelog": st.fixed_dictionaries({}, optional={"items": st.lists(json_values, max_size=4)}),
        "comment": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(event_like)
def test_any_payload_parses_or_is_a_payload_error(payload: dict[str, Any]) -> None:
    try:
        event = parse_event(payload)
    except PayloadError:
        return
    assert isinstance(event, JiraEvent)
