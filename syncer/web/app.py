"""The webhook receiver: verify, record durably, answer 202, then enqueue. Nothing else.

A 202 is a promise: the delivery is in the database. Enqueueing happens after the answer; if the
broker is down then, the sweeper hands the stored delivery out once it is back. If the database is
down we answer 503 so that the sender retries. Storing and publishing are batched across concurrent
requests by `syncer.web.intake` (group commit, pipelined publish): see docs/benchmarks.md for why.

Of the body, intake reads only what the row needs, through the edge (`receive` of
`syncer.sentry.webhooks` and `syncer.jira.webhooks`): the event's name, and whether the edge's table
of events says it will be ignored (then no task runs for it). The worker parses the event.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from structlog.contextvars import bind_contextvars

from syncer import logs, metrics
from syncer.errors import BodyTooLarge, PayloadError, WrongFormat
from syncer.jira import webhooks as jira_webhooks
from syncer.payload import MAX_BODY_BYTES, Envelope
from syncer.sentry import webhooks as sentry_webhooks
from syncer.settings import Settings
from syncer.slack import webhooks as slack_webhooks
from syncer.store import deliveries, health, installations
from syncer.web import console, sentry_ui
from syncer.web.intake import DeliveryWriter, Enqueue, Publisher, PublishMany, one_by_one

log = logs.get_logger(__name__)

BrokerCheck = Callable[[], None]


_SENTRY_HEADERS = frozenset(
    {b"content-length", b"sentry-hook-signature", b"sentry-hook-timestamp", b"sentry-hook-resource"}
)
_JIRA_HEADERS = frozenset({b"content-length", b"x-hub-signature", b"x-atlassian-webhook-identifier"})
_SLACK_HEADERS = frozenset(
    {b"content-length", b"content-type", b"x-slack-signature", b"x-slack-request-timestamp"}
)


def _headers(scope: Any, names: frozenset[bytes]) -> dict[bytes, bytes]:
    """The first value of each of `names` (ASGI servers give header names in lower case), as
    Starlette's `request.headers.get` finds it, in one pass instead of one per header."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in names and name not in found:
            found[name] = value
    return found


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def _read_body(request: Request, declared_length: bytes | None, limit: int) -> bytes:
    declared = _text(declared_length)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a sender that lies about Content-Length or streams chunked
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """When the server starts, everything imported and built so far (Celery, kombu, SQLAlchemy,
    pydantic: ~145,000 objects) goes to the collector's permanent generation. Requests allocate
    enough for a full collection every few seconds under load, and each full collection walked all
    of those objects: ~90 ms with the event loop stopped, ~14 us a request on average
    (docs/benchmarks.md). Objects made later are collected as before."""
    gc.collect()
    gc.freeze()
    yield


def _installation(settings: Settings, engine: Engine) -> installations.State | None:
    """The installation external-issue links go through: the configured one, else the latest."""
    return installations.state(engine, settings.sentry_installation_uuid)


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _accepted(stored: deliveries.Stored) -> Response:
    """202 with `{"delivery": id, "duplicate": bool}`: the bytes JSONResponse renders for that dict."""
    body = b'{"delivery":%d,"duplicate":%s}' % (stored.delivery_id, b"true" if stored.duplicate else b"false")
    return Response(body, status_code=202, media_type="application/json")


def create_app(
    settings: Settings,
    engine: Engine,
    enqueue: Enqueue,
    broker_check: BrokerCheck,
    counters: metrics.WorkerCounters | None = None,
    enqueue_many: PublishMany | None = None,
    start_reconcile: Callable[[], None] | None = None,
    triage_figures: console.Figures | None = None,
    queue_link: Callable[[str, str, str], None] | None = None,
) -> FastAPI:
    """`enqueue` publishes one delivery id; `enqueue_many`, when given, publishes a batch of them
    (worker.publish_batch) and is what the publisher thread uses. `start_reconcile` queues a
    reconcile run (the console's button); `triage_figures` works out `syncer report`'s figures
    (the console's routes and triage pages); `queue_link` queues a link by hand (sentry id, Jira
    key, cause) for a worker."""
    app = FastAPI(title="syncer", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    sentry_secret = (
        settings.sentry_client_secret.get_secret_value() if settings.sentry_client_secret else None
    )
    jira_secret = settings.jira_webhook_secret.get_secret_value() if settings.jira_webhook_secret else None
    slack_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None

    publisher = Publisher(enqueue_many or one_by_one(enqueue))
    writer = DeliveryWriter(engine, on_stored=publisher.submit)

    counted: dict[tuple[str, str], Any] = {}  # metric children, looked up once (labels() takes a lock)

    def count(source: str, result: str) -> None:
        child = counted.get((source, result))
        if child is None:
            child = counted[(source, result)] = metrics.WEBHOOKS.labels(source, result)
        child.inc()

    store_seconds = {source: metrics.INTAKE_SECONDS.labels(source) for source in ("sentry", "jira", "slack")}

    # A line per stored delivery at DEBUG only: at INFO it would cost intake CPU on every webhook.
    trace = logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
    # Slack's event ids are unique for ever (its retries repeat them), so the key alone decides.
    retried_within = {"sentry": sentry_webhooks.RETRIED_WITHIN, "jira": jira_webhooks.RETRIED_WITHIN,
                      "slack": None}

    async def accept(source: str, key: str, envelope: Envelope, body: bytes) -> Response:
        started = time.perf_counter()
        try:
            stored = await writer.store(deliveries.Incoming(
                source, key, envelope.resource, envelope.action, body, envelope.ignored,
                retried_within[source],
            ), envelope.lane)
        except SQLAlchemyError as exc:
            count(source, "db_unavailable")
            log.error("cannot store %s delivery: %s", source, type(exc).__name__, source=source,
                      resource=envelope.resource, action=envelope.action)
            return _problem(503, "cannot store the delivery right now; retry later")
        store_seconds[source].observe(time.perf_counter() - started)
        count(source, "duplicate" if stored.duplicate else "accepted")
        # This request's task: what it logs from here is about this delivery (worker lines carry the
        # same delivery_id).
        bind_contextvars(delivery_id=stored.delivery_id)
        if trace:
            log.debug("%s delivery %s stored", source, stored.delivery_id, source=source,
                      resource=envelope.resource, action=envelope.action, duplicate=stored.duplicate)
        # Not duplicate: the writer has handed the id to the publisher, which enqueues it after the
        # commit, off this path.
        return _accepted(stored)

    # The two webhook routes are plain Starlette routes in this FastAPI app: they take the raw request
    # and answer themselves, so FastAPI's per-request dependency solving and endpoint wrapping would do
    # nothing for them but cost CPU, which intake is short of under load (docs/benchmarks.md). Same
    # paths, methods, answers and errors (a wrong method still gets FastAPI's JSON 405, a trailing
    # slash its redirect: tests/test_intake.py); not in an OpenAPI schema, which this app does not serve.
    async def sentry_webhook(request: Request) -> Response:
        wanted = _headers(request.scope, _SENTRY_HEADERS)
        try:
            body = await _read_body(request, wanted.get(b"content-length"), MAX_BODY_BYTES)
        except BodyTooLarge:
            count("sentry", "too_large")
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        signature = _text(wanted.get(b"sentry-hook-signature"))
        if not sentry_secret or not sentry_webhooks.verify_signature(sentry_secret, body, signature):
            count("sentry", "bad_signature")
            return _problem(401, "missing or invalid Sentry-Hook-Signature")
        stamp = _text(wanted.get(b"sentry-hook-timestamp"))
        if not sentry_webhooks.timestamp_ok(stamp, time.time(), settings.sentry_timestamp_window_seconds):
            count("sentry", "stale")
            if not stamp:
                return _problem(
                    401,
                    "missing Sentry-Hook-Timestamp: Sentry sends it with every delivery (behind a proxy "
                    "that strips it, set SYNCER_SENTRY_TIMESTAMP_WINDOW_SECONDS=0)",
                )
            return _problem(401, "Sentry-Hook-Timestamp outside the accepted window (replay?)")
        resource = _text(wanted.get(b"sentry-hook-resource")) or ""
        try:
            envelope = sentry_webhooks.receive(resource, body)
        except WrongFormat as wrong:
            count("sentry", "wrong_format")
            return _problem(422, str(wrong))
        except PayloadError:
            count("sentry", "bad_json")
            return _problem(400, "body is not a JSON object in UTF-8")
        return await accept("sentry", sentry_webhooks.delivery_key(resource, body), envelope, body)

    async def jira_webhook(request: Request) -> Response:
        wanted = _headers(request.scope, _JIRA_HEADERS)
        try:
            body = await _read_body(request, wanted.get(b"content-length"), MAX_BODY_BYTES)
        except BodyTooLarge:
            count("jira", "too_large")
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        if jira_secret:
            signature = _text(wanted.get(b"x-hub-signature"))
            ok = (
                jira_webhooks.verify_signature(jira_secret, body, signature)
                if signature
                else (jira_webhooks.verify_token(jira_secret, request.query_params.get("token")))
            )
        else:
            ok = settings.jira_webhook_unsigned
        if not ok:
            count("jira", "bad_signature")
            return _problem(401, "missing or invalid X-Hub-Signature (or ?token=)")
        try:
            envelope = jira_webhooks.receive(body)
        except WrongFormat as wrong:
            count("jira", "wrong_format")
            return _problem(422, str(wrong))
        except PayloadError:
            count("jira", "bad_json")
            return _problem(400, "body is not a JSON object in UTF-8")
        key = jira_webhooks.delivery_key(_text(wanted.get(b"x-atlassian-webhook-identifier")), body)
        return await accept("jira", key, envelope, body)

    async def slack_webhook(request: Request) -> Response:
        wanted = _headers(request.scope, _SLACK_HEADERS)
        if slack_secret is None:
            count("slack", "not_configured")
            return _problem(404, "Slack is not set up here (SYNCER_SLACK_SIGNING_SECRET is unset)")
        try:
            body = await _read_body(request, wanted.get(b"content-length"), MAX_BODY_BYTES)
        except BodyTooLarge:
            count("slack", "too_large")
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        if not slack_webhooks.verify(slack_secret, body, _text(wanted.get(b"x-slack-request-timestamp")),
                                     _text(wanted.get(b"x-slack-signature"))):
            count("slack", "bad_signature")
            return _problem(401, "missing or invalid X-Slack-Signature, or X-Slack-Request-Timestamp "
                                 "more than 5 minutes off")
        try:
            received = slack_webhooks.receive(_text(wanted.get(b"content-type")) or "", body)
        except PayloadError as exc:
            count("slack", "bad_json")
            return _problem(400, str(exc))
        if received.challenge is not None:
            # The Events API's URL verification: nothing to store, the challenge echoed.
            return Response(slack_webhooks.challenge_answer(received.challenge), status_code=200,
                            media_type="application/json")
        assert received.envelope is not None
        answer = await accept("slack", received.key, received.envelope, body)
        # Slack wants a 200 (any other status is a failure it retries); the body is not read.
        answer.status_code = 200 if answer.status_code == 202 else answer.status_code
        return answer

    app.add_route("/webhooks/sentry", sentry_webhook, methods=["POST"], include_in_schema=False)
    app.add_route("/webhooks/slack", slack_webhook, methods=["POST"], include_in_schema=False)
    for path, endpoint, methods in sentry_ui.routes(settings, engine, writer.store):
        app.add_route(path, endpoint, methods=methods, include_in_schema=False)
    app.add_route("/webhooks/jira", jira_webhook, methods=["POST"], include_in_schema=False)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    checks: dict[str, Callable[[], object]] = {
        "database": lambda: health.ping(engine),
        "broker": broker_check,
    }

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        # `?exclude=broker` leaves a check out, as kube-apiserver's own `/readyz?exclude=etcd` does:
        # intake answers 202 without the broker (the sweeper publishes later), so a readiness probe
        # that took every replica out of its Service while Redis is down would refuse what could be
        # kept (deploy/kubernetes/web.yaml).
        excluded = set(request.query_params.getlist("exclude"))
        if excluded - checks.keys():
            return _problem(400, f"exclude names a check: one of {', '.join(checks)}")
        failed: dict[str, str] = {}
        for name, check in checks.items():
            if name in excluded:
                continue
            try:
                await run_in_threadpool(check)
            except Exception as exc:
                failed[name] = type(exc).__name__
        if failed:
            return JSONResponse({"status": "unavailable", "failed": failed}, status_code=503)
        body: dict[str, Any] = {"status": "ready"}
        # Still ready (webhooks are taken), but an operator must hear that Sentry removed the
        # installation: its external-issue links have stopped.
        with contextlib.suppress(SQLAlchemyError):
            installation = await run_in_threadpool(_installation, settings, engine)
            if installation is not None and installation.deleted_at is not None:
                body["detail"] = {"sentry_installation": installation.describe()}
        return JSONResponse(body)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        body = await run_in_threadpool(metrics.render, engine, counters)
        return PlainTextResponse(body, media_type=metrics.CONTENT_TYPE)

    console.mount(app, settings, engine,
                  console.Actions(enqueue, start_reconcile=start_reconcile, broker_check=broker_check,
                                  figures=triage_figures, link_by_hand=queue_link),
                  counters.client if counters is not None else None)
    return app
