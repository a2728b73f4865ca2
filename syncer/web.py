"""The webhook receiver: verify, record durably, answer 202, then enqueue. Nothing else.

A 202 is a promise: the delivery is in the database. Enqueueing happens after the answer; if the
broker is down then, the sweeper hands the stored delivery out once it is back. If the database is
down we answer 503 so that the sender retries. Storing and publishing are batched across concurrent
requests by `syncer.intake` (group commit, pipelined publish): see docs/benchmarks.md for why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from syncer import inbox, metrics
from syncer.intake import DeliveryWriter, Publisher, PublishMany, one_by_one
from syncer.jira import webhooks as jira_webhooks
from syncer.sentry import webhooks as sentry_webhooks
from syncer.settings import Settings
from syncer.sync import dispatch

log = logging.getLogger(__name__)

Enqueue = Callable[[int], None]
BrokerCheck = Callable[[], None]


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a sender that lies about Content-Length or streams chunked
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(
    settings: Settings,
    engine: Engine,
    enqueue: Enqueue,
    broker_check: BrokerCheck,
    counters: metrics.WorkerCounters | None = None,
    enqueue_many: PublishMany | None = None,
) -> FastAPI:
    """`enqueue` publishes one delivery id; `enqueue_many`, when given, publishes a batch of them
    (worker.publish_batch) and is what the publisher thread uses."""
    app = FastAPI(title="syncer", docs_url=None, redoc_url=None, openapi_url=None)
    sentry_secret = (
        settings.sentry_client_secret.get_secret_value() if settings.sentry_client_secret else None
    )
    jira_secret = settings.jira_webhook_secret.get_secret_value() if settings.jira_webhook_secret else None

    publisher = Publisher(enqueue_many or one_by_one(enqueue))
    writer = DeliveryWriter(engine, on_stored=publisher.submit)

    async def accept(source: str, key: str, resource: str, action: str, body: bytes) -> Response:
        started = time.perf_counter()
        try:
            ignored = dispatch.unhandled(source, resource, action) or ""
            stored = await writer.store(inbox.Incoming(source, key, resource, action, body, ignored))
        except SQLAlchemyError as exc:
            metrics.WEBHOOKS.labels(source, "db_unavailable").inc()
            log.error("cannot store %s delivery: %s", source, type(exc).__name__)
            return _problem(503, "cannot store the delivery right now; retry later")
        metrics.INTAKE_SECONDS.labels(source).observe(time.perf_counter() - started)
        if stored.duplicate:
            metrics.WEBHOOKS.labels(source, "duplicate").inc()
            return JSONResponse({"delivery": stored.delivery_id, "duplicate": True}, status_code=202)
        metrics.WEBHOOKS.labels(source, "accepted").inc()
        # The writer has handed the id to the publisher: it is enqueued after the commit, off this path.
        return JSONResponse({"delivery": stored.delivery_id, "duplicate": False}, status_code=202)

    @app.post("/webhooks/sentry")
    async def sentry_webhook(request: Request) -> Response:
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            metrics.WEBHOOKS.labels("sentry", "too_large").inc()
            return _problem(413, f"body over {settings.max_body_bytes} bytes")
        signature = request.headers.get("sentry-hook-signature")
        if not sentry_secret or not sentry_webhooks.verify_signature(sentry_secret, body, signature):
            metrics.WEBHOOKS.labels("sentry", "bad_signature").inc()
            return _problem(401, "missing or invalid Sentry-Hook-Signature")
        if not sentry_webhooks.timestamp_ok(
            request.headers.get("sentry-hook-timestamp"),
            time.time(),
            settings.sentry_timestamp_window_seconds,
        ):
            metrics.WEBHOOKS.labels("sentry", "stale").inc()
            return _problem(401, "Sentry-Hook-Timestamp outside the accepted window (replay?)")
        payload = _json_object(body)
        if payload is None:
            metrics.WEBHOOKS.labels("sentry", "bad_json").inc()
            return _problem(400, "body is not a JSON object in UTF-8")
        resource = request.headers.get("sentry-hook-resource", "")
        action = payload.get("action") if isinstance(payload.get("action"), str) else ""
        key = sentry_webhooks.delivery_key(resource, body)
        return await accept("sentry", key, resource, str(action), body)

    @app.post("/webhooks/jira")
    async def jira_webhook(request: Request) -> Response:
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            metrics.WEBHOOKS.labels("jira", "too_large").inc()
            return _problem(413, f"body over {settings.max_body_bytes} bytes")
        if jira_secret:
            signature = request.headers.get("x-hub-signature")
            ok = (
                jira_webhooks.verify_signature(jira_secret, body, signature)
                if signature
                else (jira_webhooks.verify_token(jira_secret, request.query_params.get("token")))
            )
        else:
            ok = settings.jira_webhook_unsigned
        if not ok:
            metrics.WEBHOOKS.labels("jira", "bad_signature").inc()
            return _problem(401, "missing or invalid X-Hub-Signature (or ?token=)")
        payload = _json_object(body)
        if payload is None:
            metrics.WEBHOOKS.labels("jira", "bad_json").inc()
            return _problem(400, "body is not a JSON object in UTF-8")
        resource = payload.get("webhookEvent") if isinstance(payload.get("webhookEvent"), str) else ""
        action = (
            payload.get("issue_event_type_name")
            if isinstance(payload.get("issue_event_type_name"), str)
            else ""
        )
        key = jira_webhooks.delivery_key(request.headers.get("x-atlassian-webhook-identifier"), body)
        return await accept("jira", key, str(resource), str(action), body)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        failed: dict[str, str] = {}
        try:
            await run_in_threadpool(_ping_db, engine)
        except Exception as exc:
            failed["database"] = type(exc).__name__
        try:
            await run_in_threadpool(broker_check)
        except Exception as exc:
            failed["broker"] = type(exc).__name__
        if failed:
            return JSONResponse({"status": "unavailable", "failed": failed}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        body = await run_in_threadpool(metrics.render, engine, counters)
        return PlainTextResponse(body, media_type=metrics.CONTENT_TYPE)

    return app


def _ping_db(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
