"""Web intake: signatures, limits, dedupe, storing before answering, and the broker being down."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from syncer.fakes.base import FakeServer, compact_json
from syncer.store.schema import DeliveryState
from tests.conftest import JIRA_WEBHOOK_SECRET, load_fixture, post_sentry, sign_sentry
from tests.harness import RedisServer, deliveries, free_port, start_beat, start_worker, wait_for


def enqueue_failures() -> float:
    from syncer import metrics

    return metrics.REGISTRY.get_sample_value("syncer_enqueue_failures_total") or 0.0


def post_jira(
    base: str,
    payload: Any,
    *,
    secret: str | None = JIRA_WEBHOOK_SECRET,
    identifier: str | None = "d1b7c6a2-0001",
    query: str = "",
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if identifier:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    return httpx.post(f"{base}/webhooks/jira{query}", content=body, headers=headers, timeout=10)


JIRA_UPDATE = {
    "timestamp": 1764201600000,
    "webhookEvent": "jira:issue_updated",
    "issue_event_type_name": "issue_generic",
    "user": {"accountId": "someone"},
    "issue": {
        "id": "10001",
        "key": "OPS-1",
        "fields": {"status": {"name": "Done", "statusCategory": {"key": "done"}}},
    },
    "changelog": {"items": [{"field": "status", "fromString": "To Do", "toString": "Done"}]},
}


def test_valid_sentry_delivery_is_stored_before_the_202(clean: None, web: FakeServer, engine: Engine) -> None:
    answer = post_sentry(web.url, load_fixture("sentry/issue_created.json"))
    assert answer.status_code == 202
    stored = deliveries(engine, "sentry")
    assert [d.id for d in stored] == [answer.json()["delivery"]]
    assert stored[0].source == "sentry" and stored[0].resource == "issue" and stored[0].action == "created"
    assert json.loads(stored[0].payload) == load_fixture("sentry/issue_created.json")


@pytest.mark.parametrize(
    ("headers", "tamper"),
    [
        ({"Sentry-Hook-Signature": "0" * 64}, False),  # wrong signature
        ({"Sentry-Hook-Signature": ""}, False),  # missing
        ({}, True),  # body changed after signing
    ],
    ids=["wrong", "missing", "tampered"],
)
def test_sentry_signature_rejected(
    clean: None, web: FakeServer, engine: Engine, headers: dict[str, str], tamper: bool
) -> None:
    body = compact_json(load_fixture("sentry/issue_created.json"))
    if tamper:
        good = post_sentry(web.url, body).request.headers["Sentry-Hook-Signature"]
        clean_tables_after = deliveries(engine, "sentry")
        assert len(clean_tables_after) == 1
        answer = httpx.post(
            f"{web.url}/webhooks/sentry",
            content=body.replace(b'"error"', b'"fatal"', 1),
            headers={
                "Sentry-Hook-Signature": good,
                "Sentry-Hook-Resource": "issue",
                "Sentry-Hook-Timestamp": str(int(time.time())),
            },
        )
        assert answer.status_code == 401
        assert len(deliveries(engine, "sentry")) == 1
        return
    answer = post_sentry(web.url, body, headers=headers)
    assert answer.status_code == 401
    assert deliveries(engine) == []


def test_sentry_signed_with_another_secret_is_rejected(clean: None, web: FakeServer, engine: Engine) -> None:
    answer = post_sentry(web.url, load_fixture("sentry/issue_created.json"), secret="not-the-secret")
    assert answer.status_code == 401
    assert deliveries(engine) == []


def test_sentry_replayed_old_timestamp_is_rejected(clean: None, web: FakeServer, engine: Engine) -> None:
    stale = str(int(time.time()) - 3600)
    answer = post_sentry(
        web.url, load_fixture("sentry/issue_created.json"), headers={"Sentry-Hook-Timestamp": stale}
    )
    assert answer.status_code == 401
    assert deliveries(engine) == []


def test_sentry_without_a_timestamp_is_rejected_while_the_window_is_on(
    clean: None, web: FakeServer, engine: Engine
) -> None:
    body = compact_json(load_fixture("sentry/issue_created.json"))
    headers = {"Content-Type": "application/json", "Sentry-Hook-Resource": "issue"}
    headers["Sentry-Hook-Signature"] = sign_sentry(body)

    answer = httpx.post(f"{web.url}/webhooks/sentry", content=body, headers=headers, timeout=10)

    assert answer.status_code == 401
    assert "missing Sentry-Hook-Timestamp" in answer.text
    assert "SYNCER_SENTRY_TIMESTAMP_WINDOW_SECONDS=0" in answer.text
    assert deliveries(engine) == []


def test_malformed_json_is_400(clean: None, web: FakeServer, engine: Engine) -> None:
    assert post_sentry(web.url, b'{"action": "created", ').status_code == 400
    assert post_sentry(web.url, b"[1, 2]").status_code == 400  # JSON, but not an object
    assert post_sentry(web.url, b'{"title": "\xff\xfe"}').status_code == 400  # not UTF-8
    assert post_jira(web.url, b"{nope").status_code == 400
    assert deliveries(engine) == []


def test_oversize_body_is_413(clean: None, web: FakeServer, engine: Engine) -> None:
    payload = load_fixture("sentry/issue_created.json")
    payload["data"]["issue"]["title"] = "x" * (1024 * 1024 + 1)
    assert post_sentry(web.url, payload).status_code == 413
    assert post_jira(web.url, {"pad": "y" * (1024 * 1024 + 1)}).status_code == 413
    assert deliveries(engine) == []


def test_duplicate_sentry_delivery_is_stored_once(clean: None, web: FakeServer, engine: Engine) -> None:
    payload = load_fixture("sentry/issue_created.json")
    # Sentry's retries carry a new Request-ID each time: the key comes from the content.
    answers = [post_sentry(web.url, payload) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    assert len({a.json()["delivery"] for a in answers}) == 1
    assert len(deliveries(engine, "sentry")) == 1


def test_jira_signature_token_and_dedupe(clean: None, web: FakeServer, engine: Engine) -> None:
    assert post_jira(web.url, JIRA_UPDATE, secret="wrong-secret").status_code == 401
    assert post_jira(web.url, JIRA_UPDATE, secret=None).status_code == 401  # missing
    tampered = json.dumps(JIRA_UPDATE).encode()
    signature = "sha256=" + hmac.new(JIRA_WEBHOOK_SECRET.encode(), tampered, hashlib.sha256).hexdigest()
    answer = httpx.post(
        f"{web.url}/webhooks/jira",
        content=tampered.replace(b"Done", b"Open", 1),
        headers={"X-Hub-Signature": signature},
    )
    assert answer.status_code == 401
    assert deliveries(engine) == []

    first = post_jira(web.url, JIRA_UPDATE, identifier="same-id")
    again = post_jira(web.url, JIRA_UPDATE, identifier="same-id")  # Jira's retry of the same delivery
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == {"delivery": first.json()["delivery"], "duplicate": True}
    # Server setups that cannot sign use ?token=<secret>.
    by_token = post_jira(
        web.url, JIRA_UPDATE, secret=None, identifier="other-id", query=f"?token={JIRA_WEBHOOK_SECRET}"
    )
    assert by_token.status_code == 202
    bad_token = post_jira(web.url, JIRA_UPDATE, secret=None, identifier="third-id", query="?token=guess")
    assert bad_token.status_code == 401
    stored = deliveries(engine)
    assert len(stored) == 2
    assert {d.resource for d in stored} == {"jira:issue_updated"}


def test_webhook_routes_answer_like_the_rest_of_the_app(clean: None, web: FakeServer, engine: Engine) -> None:
    """The webhook routes are plain Starlette routes (docs/benchmarks.md): their answers, and the app's
    answers around them (wrong method, trailing slash), are what FastAPI routes gave."""
    # The session's fakes may still be sending the echoes of an earlier test's changes to this web
    # app: count only what this test sent.
    answer = post_sentry(web.url, load_fixture("sentry/issue_created.json"))
    assert answer.status_code == 202
    assert answer.headers["content-type"] == "application/json"
    mine = answer.json()["delivery"]
    assert answer.content == b'{"delivery":%d,"duplicate":false}' % mine
    assert mine in {d.id for d in deliveries(engine, "sentry")}
    for path in ("/webhooks/sentry", "/webhooks/jira"):
        wrong = httpx.get(f"{web.url}{path}")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
        assert wrong.json() == {"detail": "Method Not Allowed"}
    slash = httpx.post(f"{web.url}/webhooks/sentry/", content=b"{}")
    assert slash.status_code == 307 and slash.headers["location"].endswith("/webhooks/sentry")
    assert httpx.get(f"{web.url}/openapi.json").status_code == 404
    assert not [d for d in deliveries(engine) if d.payload.strip() == "{}"]  # the 307 stored nothing


def test_health_ready_and_metrics(clean: None, web: FakeServer) -> None:
    assert httpx.get(f"{web.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{web.url}/readyz")
    assert ready.status_code == 200, ready.text
    post_sentry(web.url, load_fixture("sentry/issue_created.json"))
    text = httpx.get(f"{web.url}/metrics").text
    assert 'syncer_webhooks_total{result="accepted",source="sentry"}' in text
    assert "syncer_deliveries{" in text


def test_unhandled_event_is_recorded_as_ignored(stack: dict[str, Any], engine: Engine) -> None:
    payload = {"action": "created", "installation": {"uuid": "x"}, "data": {"comment_id": 1, "issue_id": 5}}
    answer = post_sentry(stack["web"].url, payload, resource="comment")
    assert answer.status_code == 202
    row = wait_for(
        lambda: next((d for d in deliveries(engine) if d.state == DeliveryState.IGNORED), None),
        what="the worker to record the delivery as ignored",
    )
    assert "comment" in row.outcome


def test_database_down_answers_503(environment: None) -> None:
    """A database that cannot store means 503, so the sender retries; never a 202 we can't keep."""
    from syncer.settings import current_settings
    from syncer.store.engine import make_engine
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    settings = current_settings()
    dead = make_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    server = FakeServer(create_app(settings, dead, worker.enqueue, worker.broker_check)).start()
    try:
        answer = post_sentry(server.url, load_fixture("sentry/issue_created.json"))
        assert answer.status_code == 503
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert "database" in ready.json()["failed"]
        # Leaving the broker out does not leave the database out.
        assert httpx.get(f"{server.url}/readyz?exclude=broker").status_code == 503
    finally:
        server.stop()


def test_readyz_can_leave_the_broker_out_for_a_probe_that_intake_needs_only_the_database(
    clean: None, environment: None, engine: Engine
) -> None:
    """Redis really stopped: `/readyz` says broker; `/readyz?exclude=broker` (what the Kubernetes
    readiness probe asks) stays 200, since intake still stores and answers 202 without it."""
    import redis

    from syncer.settings import Settings, current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    broker = RedisServer().start()
    settings = Settings(**{**current_settings().model_dump(), "broker_url": broker.url})
    ping = redis.Redis.from_url(broker.url, socket_connect_timeout=1).ping
    server = FakeServer(create_app(settings, engine, worker.publisher(settings), ping)).start()
    try:
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        broker.stop()
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert (ready.status_code, set(ready.json()["failed"])) == (503, {"broker"})
        assert httpx.get(f"{server.url}/readyz?exclude=broker", timeout=10).json() == {"status": "ready"}
        assert post_sentry(server.url, load_fixture("sentry/issue_created.json")).status_code == 202
        unknown = httpx.get(f"{server.url}/readyz?exclude=jira", timeout=10)
        assert unknown.status_code == 400 and "database, broker" in unknown.json()["detail"]
    finally:
        server.stop()
        broker.stop()


@pytest.mark.slow
def test_delivery_accepted_while_broker_down_is_processed_after_it_returns(
    clean: None, environment: None, engine: Engine, process_env: dict[str, str], tmp_path: Any
) -> None:
    """Real Redis stopped and started again: the 202 holds, the sweeper hands the delivery out."""
    from syncer.settings import Settings, current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    broker = RedisServer().start()
    env = {**process_env, "SYNCER_BROKER_URL": broker.url}
    settings = Settings(**{**current_settings().model_dump(), "broker_url": broker.url})
    own_worker = start_worker("broker-test-worker", env, tmp_path, concurrency=2)
    beat = start_beat(env, tmp_path)
    server = FakeServer(create_app(settings, engine, worker.publisher(settings), worker.broker_check)).start()
    try:
        broker.stop()
        refused = enqueue_failures()
        payload = {
            "action": "created",
            "installation": {"uuid": "x"},
            "data": {"comment_id": 2, "issue_id": 6},
        }
        started = time.monotonic()
        answer = post_sentry(server.url, payload, resource="comment")
        assert answer.status_code == 202
        assert time.monotonic() - started < 1.0  # Sentry gives up after about a second
        delivery_id = answer.json()["delivery"]
        # The web tier tried to hand it to the broker and could not: only the sweeper can move it now.
        wait_for(lambda: enqueue_failures() > refused, timeout=30, what="the publish to fail")
        assert {d.id: d.state for d in deliveries(engine)}[delivery_id] == DeliveryState.RECEIVED
        broker.start()
        wait_for(
            lambda: {d.id: d.state for d in deliveries(engine)}[delivery_id] == DeliveryState.IGNORED,
            timeout=90,
            what="the swept delivery to be processed once Redis is back",
        )
    finally:
        server.stop()
        beat.stop()
        own_worker.stop()
        broker.stop()
