"""Bad input at both webhook endpoints and in the worker: every delivery gets a clear 4xx, or is
stored and then recorded (done, ignored, or a dead letter with its error), never a 500, never a
crash of the worker, never a half-made ticket.

Example tables pin the cases a person thinks of; hypothesis looks for the ones nobody did, over the
endpoints (the real app, in-process, on the session database) and over the parsers and the pure
decisions that follow them (routing, rendering).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.core.render import SUMMARY_LIMIT, render_ticket
from syncer.core.routing import TicketTarget, decide
from syncer.errors import PayloadError
from syncer.fakes.base import FakeServer, compact_json
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.jira import webhooks as jira_webhooks
from syncer.policy import load_policy
from syncer.sentry import webhooks as sentry_webhooks
from syncer.store.schema import DeadLetter, Delivery, DeliveryState, Link, LinkState
from tests.conftest import (
    FIXTURES,
    INSTALLATION_UUID,
    JIRA_WEBHOOK_SECRET,
    load_fixture,
    post_sentry,
    sign_sentry,
)
from tests.harness import SyncerProcess, wait_for

ALLOWED = {202, 400, 401, 413}


def sign_jira(body: bytes, secret: str = JIRA_WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_jira(
    base: str, body: bytes, *, headers: dict[str, str] | None = None, query: str = ""
) -> httpx.Response:
    sent = {"Content-Type": "application/json", "X-Hub-Signature": sign_jira(body)}
    sent.update(headers or {})
    return httpx.post(f"{base}/webhooks/jira{query}", content=body, headers=sent, timeout=30)


def count_deliveries(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Delivery)).one())


def all_deliveries(engine: Engine) -> list[Delivery]:
    with Session(engine) as session:
        return list(session.exec(select(Delivery).order_by(Delivery.id)).all())  # type: ignore[arg-type]


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


# ------------------------------------------------------------------ the endpoints, case by case


@pytest.mark.parametrize(
    ("offset", "status"),
    [(0, 202), (-600, 202), (-3600, 401), (+3600, 401), ("junk", 401), ("1e9", 401), ("-5", 401)],
    ids=["now", "ten-minutes-old", "an-hour-old", "an-hour-ahead", "junk", "exponent", "negative"],
)
def test_sentry_replay_window(
    clean: None, web: FakeServer, engine: Engine, offset: int | str, status: int
) -> None:
    stamp = offset if isinstance(offset, str) else str(int(time.time()) + offset)
    payload = {**load_fixture("sentry/issue_created.json"), "nonce": str(offset)}
    answer = post_sentry(web.url, payload, headers={"Sentry-Hook-Timestamp": stamp})
    assert answer.status_code == status, answer.text
    assert count_deliveries(engine) == (1 if status == 202 else 0)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        "sha256=zz" + "0" * 62,
        "0" * 64,
        "sha1=" + "0" * 40,
        "sha256=" + hmac.new(b"another secret", b"{}", hashlib.sha256).hexdigest(),
    ],
    ids=["missing", "empty", "prefix-only", "zeros", "not-hex", "no-prefix", "sha1", "other-secret"],
)
def test_jira_bad_signatures_are_401(
    clean: None, web: FakeServer, engine: Engine, header: str | None
) -> None:
    body = json.dumps({"webhookEvent": "jira:issue_updated", "issue": {"id": "1"}}).encode()
    headers = {"X-Hub-Signature": header} if header is not None else {}
    answer = httpx.post(f"{web.url}/webhooks/jira", content=body, headers=headers, timeout=10)
    assert answer.status_code == 401
    assert count_deliveries(engine) == 0


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 65536
        sent += 65536


@pytest.mark.parametrize("endpoint", ["sentry", "jira"])
def test_a_streamed_body_over_the_limit_is_413(
    clean: None, web: FakeServer, engine: Engine, endpoint: str
) -> None:
    # Chunked, so no Content-Length announces the size: the limit must hold while reading.
    answer = httpx.post(f"{web.url}/webhooks/{endpoint}", content=_chunks(2 * 1024 * 1024), timeout=30)
    assert answer.status_code == 413
    assert count_deliveries(engine) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{}",
        b'{"action": "created", "x": "\xc3\x28"}',
        b'\xef\xbb\xbf{"action": "created"}',
        b'{"a": "\xed\xa0\x80"}',
        b"",
        b"null",
        b'"text"',
        b"[" * 100_000,
        b'{"a":' * 100_000,
    ],
    ids=[
        "utf16-bom",
        "bad-utf8",
        "utf8-bom",
        "encoded-surrogate",
        "empty",
        "null",
        "string",
        "deep-list",
        "deep-object",
    ],
)
def test_unreadable_bodies_are_400_on_both_endpoints(
    clean: None, web: FakeServer, engine: Engine, body: bytes
) -> None:
    assert post_sentry(web.url, body).status_code == 400
    assert post_jira(web.url, body).status_code == 400
    assert count_deliveries(engine) == 0


@pytest.mark.parametrize(
    "action",
    ["\ud800", "a\x00b", "x" * 5000, "\U0001f4a5"],
    ids=["lone-surrogate", "nul", "huge", "emoji"],
)
def test_odd_text_in_stored_fields_is_stored_not_a_500(
    clean: None, web: FakeServer, engine: Engine, action: str
) -> None:
    # Valid JSON may carry `"\ud800"` or `"\u0000"`: Python reads them, but no UTF-8 column (and no
    # PostgreSQL text) takes them as they are.
    sentry = post_sentry(web.url, {"action": action, "data": {}}, resource="installation")
    jira = post_jira(web.url, compact_json({"webhookEvent": action, "issue_event_type_name": action}))
    assert (sentry.status_code, jira.status_code) == (202, 202), (sentry.text, jira.text)
    stored = all_deliveries(engine)
    assert len(stored) == 2
    assert all(len(d.action) <= 100 and len(d.resource) <= 100 for d in stored)


def test_huge_headers_are_cut_not_refused(clean: None, web: FakeServer, engine: Engine) -> None:
    answer = post_sentry(
        web.url, {"action": "created", "data": {}}, resource="r" * 4000, headers={"Request-ID": "q" * 4000}
    )
    assert answer.status_code == 202
    (row,) = all_deliveries(engine)
    assert row.resource == "r" * 100


# ------------------------------------------------------------------ the endpoints, by hypothesis


@pytest.fixture(scope="module")
def intake(environment: None, engine: Engine) -> Iterator[tuple[httpx.Client, list[int]]]:
    """The real intake app on a socket of its own, with a recording enqueue (no broker, no worker):
    hypothesis sends it hundreds of requests without feeding them to anyone."""
    from syncer.settings import current_settings
    from syncer.web.app import create_app

    enqueued: list[int] = []
    server = FakeServer(create_app(current_settings(), engine, enqueued.append, lambda: None)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, enqueued
    finally:
        server.stop()


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=()), max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


def check_answer(answer: httpx.Response, engine: Engine, before: int, enqueued: list[int]) -> None:
    assert answer.status_code in ALLOWED, (answer.status_code, answer.text)
    after = count_deliveries(engine)
    if answer.status_code == 202:
        delivery = answer.json()["delivery"]
        assert after == before + (0 if answer.json()["duplicate"] else 1)
        if not answer.json()["duplicate"]:  # handed on after the answer
            wait_for(lambda: delivery in enqueued, 5, what="the delivery to be enqueued")
    else:
        assert after == before  # a refusal stores nothing


@given(
    body=st.one_of(st.binary(max_size=300), json_value.map(compact_json)),
    signed=st.booleans(),
    resource=header_text,
    stamp=st.one_of(
        st.none(), header_text, st.integers(-(10**6), 10**6).map(lambda d: str(int(time.time()) + d))
    ),
)
def test_sentry_endpoint_never_fails(
    intake: tuple[httpx.Client, list[int]],
    engine: Engine,
    body: bytes,
    signed: bool,
    resource: str,
    stamp: str | None,
) -> None:
    client, enqueued = intake
    headers = {
        "Sentry-Hook-Resource": resource,
        "Sentry-Hook-Signature": sign_sentry(body) if signed else sign_sentry(body, "guess"),
    }
    if stamp is not None:
        headers["Sentry-Hook-Timestamp"] = stamp
    before = count_deliveries(engine)
    answer = client.post("/webhooks/sentry", content=body, headers=headers)
    check_answer(answer, engine, before, enqueued)
    if not signed:
        assert answer.status_code in (401, 413)


@given(
    body=st.one_of(st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode())),
    how=st.sampled_from(["signature", "token", "bad-signature", "bad-token", "none"]),
    identifier=st.one_of(st.none(), header_text),
)
def test_jira_endpoint_never_fails(
    intake: tuple[httpx.Client, list[int]], engine: Engine, body: bytes, how: str, identifier: str | None
) -> None:
    client, enqueued = intake
    headers: dict[str, str] = {}
    url = "/webhooks/jira"
    if how == "signature":
        headers["X-Hub-Signature"] = sign_jira(body)
    elif how == "bad-signature":
        headers["X-Hub-Signature"] = sign_jira(body, "guess")
    elif how == "token":
        url += f"?token={JIRA_WEBHOOK_SECRET}"
    elif how == "bad-token":
        url += "?token=guess"
    if identifier is not None:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    before = count_deliveries(engine)
    answer = client.post(url, content=body, headers=headers)
    check_answer(answer, engine, before, enqueued)
    if how not in ("signature", "token"):
        assert answer.status_code in (401, 413)


# ------------------------------------------------------------------ parsers and the pure decisions after them


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    value = copy.copy(value)
    value[path[0]] = _replace(value[path[0]], path[1:], new)
    return value


SENTRY_FIXTURES = sorted(p.name for p in (FIXTURES / "sentry").glob("*.json"))
JIRA_FIXTURES = sorted(p.name for p in (FIXTURES / "jira").glob("*.json"))
odd_values = st.one_of(
    json_value,
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "9" * 30,
            "x" * 100_000,
            "\ud800",
            "\x00",
            "https://evil.example/",
            "[x|javascript:alert(1)]",
            "{code}",
            0,
            -1,
            2**63,
            1e308,
            True,
            [],
            {},
            None,
        ]
    ),
    st.integers(1, 800).map(nested),
)


# Where an unescaped `[text|url]` of Jira's wiki markup leads (escape_wiki escapes `[`, `|` and `]`).
LINK_TARGET = re.compile(r"(?<!\\)\[[^\]]*?(?<!\\)\|([^\]]*)(?<!\\)\]")


@st.composite
def mutated(draw: st.DrawFn, folder: str, names: list[str]) -> tuple[str, Any]:
    """A real stored payload with one to three of its values (any depth, the root included) replaced."""
    name = draw(st.sampled_from(names))
    payload = json.loads((FIXTURES / folder / name).read_text())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(payload)))
        payload = _replace(payload, path, draw(odd_values))
    return name, payload


@pytest.fixture(scope="module")
def policy(policy_path: Any) -> Any:
    return load_policy(policy_path)


@given(
    case=mutated("sentry", SENTRY_FIXTURES),
    resource=st.sampled_from(["issue", "event_alert", "comment", "x"]),
)
def test_mutated_sentry_payloads_parse_route_and_render_or_raise_payload_error(
    policy: Any, case: tuple[str, Any], resource: str
) -> None:
    _, payload = case
    try:
        event = sentry_webhooks.parse_event(resource, payload)
    except PayloadError:
        return
    if event.issue is None:
        return
    decision = decide(event.issue, policy, lambda: {"http.status_code": ["500"]})
    if decision.target is None:
        return
    fields = render_ticket(event.issue, decision.target, sentry_url="https://sentry.io", org="acme")
    assert 0 < len(fields["summary"]) <= SUMMARY_LIMIT and "\n" not in fields["summary"]
    assert all(label and not any(c.isspace() for c in label) for label in fields["labels"])
    # Hostile values may show as text (escaped), but a link only ever leads to Sentry.
    hosts = {urlsplit(target).hostname or "" for target in LINK_TARGET.findall(fields["description"])}
    assert all(host == "sentry.io" or host.endswith(".sentry.io") for host in hosts), hosts
    json.dumps(fields)  # what goes to Jira serialises


any_text = st.text(st.characters(exclude_categories=()), max_size=300)


@given(
    title=any_text,
    culprit=any_text,
    short_id=any_text,
    project=any_text,
    level=st.sampled_from(["error", "fatal", "warning", "info"]) | any_text,
    platform=any_text,
)
def test_any_text_in_an_issue_routes_and_renders(
    policy: Any, title: str, culprit: str, short_id: str, project: str, level: str, platform: str
) -> None:
    payload = load_fixture("sentry/issue_created.json")
    payload["data"]["issue"].update(
        title=title,
        culprit=culprit,
        shortId=short_id,
        level=level,
        platform=platform,
        project={"slug": project, "name": project, "id": "1"},
    )
    # Through JSON and back, as it arrives: `"\ud800"` and friends included.
    event = sentry_webhooks.parse_event("issue", compact_json(payload))
    assert event.issue is not None
    decision = decide(event.issue, policy, lambda: {})
    target = decision.target or TicketTarget(jira_project="OPS", issue_type="Bug", labels=("sentry",))
    fields = render_ticket(event.issue, target, sentry_url="https://sentry.io", org="acme")
    assert 0 < len(fields["summary"]) <= SUMMARY_LIMIT
    json.dumps(fields, ensure_ascii=False).encode("utf-8")  # every string is well-formed


@given(case=mutated("jira", JIRA_FIXTURES))
def test_mutated_jira_payloads_parse_or_raise_payload_error(case: tuple[str, Any]) -> None:
    _, payload = case
    try:
        event = jira_webhooks.parse_event(payload)
    except PayloadError:
        return
    assert isinstance(event.webhook_event, str) and len(event.webhook_event) <= 100
    assert len(event.changelog) <= jira_webhooks.MAX_CHANGELOG_ITEMS


# ------------------------------------------------------------------ through the real worker


def sentry_body(action: str, data: Any, **extra: Any) -> dict[str, Any]:
    return {
        "action": action,
        "installation": {"uuid": INSTALLATION_UUID},
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
        "data": data,
        **extra,
    }


def test_hostile_deliveries_end_recorded_and_the_worker_lives_on(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    """Signed, so they pass the door: every one ends done, ignored or dead (with a letter), none is
    left half-done, and the same worker then handles an ordinary delivery."""
    fake_sentry.webhooks.enabled = False
    fake_jira.webhooks.enabled = False
    web_url = stack["web"].url
    worker: SyncerProcess = stack["worker"]
    big = fake_sentry.issue(fake_sentry.file_issue(project="billing-api", title="to be inflated")["id"])
    big.update(title="T" * 300_000, culprit="C\u0000" * 30_000, metadata=nested(700, "deep"))
    deep = fake_sentry.issue(fake_sentry.file_issue(project="billing-api", title="deep")["id"])
    deep.update(title="surrogate \ud800 and NUL \u0000", permalink="https://evil.example/x")
    sentry_cases: list[tuple[str, dict[str, Any], str]] = [
        ("installation", sentry_body("created", {"installation": {}}), DeliveryState.DONE),
        ("issue", sentry_body("exploded", {"issue": big}), DeliveryState.IGNORED),
        ("issue", sentry_body("\ud800", {}), DeliveryState.IGNORED),
        ("issue", sentry_body("created", {}), DeliveryState.DEAD),
        ("issue", sentry_body("created", {"issue": {"id": {"nested": 1}}}), DeliveryState.DEAD),
        ("issue", sentry_body("created", {"issue": {"id": "12abc"}}), DeliveryState.DEAD),
        ("issue", sentry_body("created", {"issue": "4506"}), DeliveryState.DEAD),
        ("issue", sentry_body("created", {"issue": big}), DeliveryState.DONE),
        ("issue", sentry_body("created", {"issue": deep}), DeliveryState.DONE),
        ("event_alert", sentry_body("triggered", {"event": {"issue_id": None}}), DeliveryState.DEAD),
        ("event_alert", sentry_body("triggered", {"event": {"issue_id": "999999999"}}), DeliveryState.DEAD),
        ("issue", sentry_body("resolved", {"issue": {**deep, "id": "888888888"}}), DeliveryState.IGNORED),
    ]
    jira_cases: list[tuple[dict[str, Any], str]] = [
        ({"webhookEvent": "jira:worklog_updated", "worklog": {}}, DeliveryState.IGNORED),
        ({"webhookEvent": "jira:issue_updated", "issue": "OPS-1"}, DeliveryState.DEAD),
        (
            {
                "webhookEvent": "jira:issue_updated",
                "issue": {
                    "id": "10999999",
                    "key": "OPS-999999",
                    "fields": {"status": 7, "labels": "x", "project": []},
                },
                "changelog": {"items": [{"field": "status"}] * 10_000},
            },
            DeliveryState.IGNORED,
        ),
        ({"webhookEvent": 12}, DeliveryState.DEAD),
    ]
    expected: dict[int, str] = {}
    for resource, payload, state in sentry_cases:
        answer = post_sentry(web_url, payload, resource=resource)
        assert answer.status_code == 202, answer.text
        expected[answer.json()["delivery"]] = state
    for payload, state in jira_cases:
        answer = post_jira(web_url, json.dumps(payload).encode())
        assert answer.status_code == 202, answer.text
        expected[answer.json()["delivery"]] = state

    def finished() -> list[Delivery] | None:
        rows = all_deliveries(engine)
        return rows if rows and all(r.state not in DeliveryState.UNFINISHED for r in rows) else None

    try:
        rows = wait_for(finished, 90, what="every hostile delivery to be recorded")
    except AssertionError:
        states = [
            (r.id, r.resource, r.action[:20], r.state, r.attempts, r.last_error)
            for r in all_deliveries(engine)
        ]
        raise AssertionError(f"{states}\n{worker.output()[-4000:]}") from None
    assert {r.id: r.state for r in rows} == expected, {r.id: (r.state, r.outcome, r.last_error) for r in rows}
    with Session(engine) as session:
        letters = {d.delivery_id: d for d in session.exec(select(DeadLetter)).all()}
        links = list(session.exec(select(Link)).all())
    dead = {r.id for r in rows if r.state == DeliveryState.DEAD}
    assert set(letters) == dead
    assert all(letter.error and letter.payload for letter in letters.values())
    assert [link.state for link in links] == [LinkState.ACTIVE, LinkState.ACTIVE]  # no claim left pending
    assert all(link.remote_link_done and link.sentry_link_done for link in links)
    (inflated,) = [t for t in fake_jira.issues() if f"sentry-{big['id']}" in t["labels"]]
    (hostile,) = [t for t in fake_jira.issues() if f"sentry-{deep['id']}" in t["labels"]]
    assert len(inflated["summary"]) <= SUMMARY_LIMIT
    assert "evil.example" not in hostile["description"]
    assert worker.proc is not None and worker.proc.poll() is None, worker.output()[-3000:]
    # ... and it still does ordinary work.
    fake_sentry.webhooks.enabled = True
    issue = fake_sentry.file_issue(project="billing-api", title="business as usual")
    wait_for(
        lambda: any(f"sentry-{issue['id']}" in t["labels"] for t in fake_jira.issues()),
        30,
        what="an ordinary ticket after the hostile batch",
    )


def test_a_stored_payload_edited_into_garbage_is_a_dead_letter_not_a_loop(
    stack: dict[str, Any], engine: Engine
) -> None:
    """A row that is not JSON any more (edited by hand, a broken restore) is buried with its error."""
    answer = post_sentry(stack["web"].url, {"action": "exploded", "data": {}}, resource="issue")
    delivery_id = answer.json()["delivery"]
    wait_for(lambda: _state(engine, delivery_id) == DeliveryState.IGNORED, 30, what="the first pass")
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        row.payload, row.state = "{not json", DeliveryState.RECEIVED
        session.add(row)
        session.commit()
    from syncer.worker import app as tasks  # configured for the session's broker by the `web` fixture

    tasks.enqueue(delivery_id)
    wait_for(lambda: _state(engine, delivery_id) == DeliveryState.DEAD, 30, what="the dead letter")


def _state(engine: Engine, delivery_id: int) -> str | None:
    with Session(engine) as session:
        row = session.get(Delivery, delivery_id)
        return row.state if row else None
