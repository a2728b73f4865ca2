"""The endpoints behind Sentry's own screens (the schema of `syncer sentry-app schema`).

Every request is verified by `Sentry-App-Signature` (the body's HMAC with the client secret; a
select's GET is signed over the empty string: getsentry/sentry `select_requester._build_headers`).

- Select options (teams, assignees) come from the policy, cached per process: Sentry waits about a
  second for them. The one that reaches Jira is the link form's ticket search, on a short timeout
  of its own; when it runs out the answer says so.
- A create or link form is stored in the inbox as a delivery (`issue-link.create|link`) and the
  worker files it like a webhook (syncer.sync.forms), through the same claim; this endpoint waits
  for that delivery's outcome and answers `{webUrl, project, identifier}` (Sentry waits up to
  `safe_urlopen`'s 30 s for it; we wait SYNCER_UI_WAIT_SECONDS).
- The alert-rule action's settings are checked against the policy when the rule is saved; a 400
  `{"message"}` is what Sentry shows the person.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from syncer import logs
from syncer.core import choices
from syncer.core.routing import likely_team
from syncer.errors import PayloadError, SyncerError
from syncer.jira.client import TICKET_KEY, JiraClient
from syncer.payload import MAX_BODY_BYTES, decode_object
from syncer.policy import Policy, load_policy
from syncer.sentry import ui
from syncer.sentry.webhooks import delivery_key, verify_signature
from syncer.settings import Settings
from syncer.store import deliveries, links
from syncer.store.schema import DeliveryState, LinkState

log = logs.get_logger(__name__)

Store = Callable[[deliveries.Incoming], Awaitable[deliveries.Stored]]
Endpoint = Callable[[Request], Awaitable[Response]]

POLL_SECONDS = 0.1
_ERROR_KIND = re.compile(r"^[A-Za-z]+(?:Error|Refused): ")


def _message(status: int, text: str) -> JSONResponse:
    # Sentry shows `message` of a 4xx/5xx answer to the person (integrator_error_message).
    return JSONResponse({"message": text}, status_code=status)


def routes(settings: Settings, engine: Engine, store: Store) -> list[tuple[str, Endpoint, list[str]]]:
    secret = settings.sentry_client_secret.get_secret_value() if settings.sentry_client_secret else ""

    @cache
    def policy() -> Policy:
        return load_policy(settings.config)

    @cache
    def jira() -> JiraClient:
        # Its own client: the ticket search must give up well inside Sentry's second.
        if not settings.jira_url:
            raise SyncerError("SYNCER_JIRA_URL is not set")
        return JiraClient(
            settings.jira_url, email=settings.jira_email,
            token=settings.jira_token.get_secret_value() if settings.jira_token else None,
            pat=settings.jira_pat.get_secret_value() if settings.jira_pat else None,
            timeout=(min(settings.http_connect_timeout, settings.ui_search_timeout_seconds),
                     settings.ui_search_timeout_seconds),
        )

    def signed(request: Request, body: bytes) -> bool:
        return verify_signature(secret, body, request.headers.get(ui.SIGNATURE_HEADER))

    async def read(request: Request) -> bytes | None:
        body = await request.body()
        return body if len(body) <= MAX_BODY_BYTES else None

    @cache
    def team_options(project_slug: str) -> list[dict[str, Any]]:
        pol = policy()
        picked = likely_team(pol, project_slug) if project_slug else None
        names = sorted(pol.teams)
        if picked in names:
            names.remove(picked)
            names.insert(0, picked)
        return [
            {"label": f"{name} (routing's pick)" if name == picked else name, "value": name,
             **({"default": True} if name == picked else {})}
            for name in names
        ]

    @cache
    def assignee_options(team: str) -> list[dict[str, Any]]:
        pol = policy()
        first = (pol.teams[team].assignee if team in pol.teams else None) or pol.defaults.assignee
        people = [first] if first else []
        people += sorted(email for email in pol.people if email != first)
        options = [{"label": f"{who} (the team's)" if who == first else who, "value": who,
                    **({"default": True} if who == first else {})} for who in people]
        return [{"label": "As the team says (or unassigned)", "value": "route"}, *options]

    async def teams(request: Request) -> Response:
        if not signed(request, b""):
            return _message(401, "missing or invalid Sentry-App-Signature")
        slug = request.query_params.get("projectSlug", "")[:200]
        return JSONResponse(team_options(slug))

    async def assignees(request: Request) -> Response:
        if not signed(request, b""):
            return _message(401, "missing or invalid Sentry-App-Signature")
        return JSONResponse(assignee_options(_dependent(request.query_params.get("dependentData"))))

    async def tickets(request: Request) -> Response:
        if not signed(request, b""):
            return _message(401, "missing or invalid Sentry-App-Signature")
        query = request.query_params.get("query", "").strip()[:200]
        if not query:
            return JSONResponse([])
        started = time.monotonic()
        try:
            found = await asyncio.wait_for(run_in_threadpool(jira().search_text, query),
                                           timeout=settings.ui_search_timeout_seconds + 0.1)
        except (TimeoutError, SyncerError) as exc:
            waited = time.monotonic() - started
            log.warning("ticket search for Sentry's link form gave up after %.2fs: %s", waited,
                        type(exc).__name__)
            note = f"Jira did not answer within {settings.ui_search_timeout_seconds:g}s"
            options = [{"label": f"{note}: type the whole key (e.g. OPS-12)", "value": ""}]
            if TICKET_KEY.fullmatch(query.upper()):
                options.insert(0, {"label": f"{query.upper()} (not checked: {note})", "value": query.upper()})
            return JSONResponse(options)
        return JSONResponse([{"label": f"{key}: {summary}" if summary else key, "value": key}
                             for key, summary in found])

    async def verified(request: Request) -> bytes | Response:
        """The body of a request that Sentry signed, or the answer that refuses it."""
        body = await read(request)
        if body is None:
            return _message(413, f"body over {MAX_BODY_BYTES} bytes")
        if not signed(request, body):
            return _message(401, "missing or invalid Sentry-App-Signature")
        return body

    async def form(request: Request, action: str) -> Response:
        body = await verified(request)
        if isinstance(body, Response):
            return body
        try:
            parsed = ui.parse_form(action, body)
            if action == "create":
                choices.parse_choices(parsed.fields, policy())  # a wrong choice is said now, not later
        except (PayloadError, choices.ChoiceError) as exc:
            return _message(400, str(exc))
        # Stored as `{"action", "data": <Sentry's body>}` so the worker parses it like a webhook.
        stored_body = b'{"action":"%s","data":%s}' % (action.encode(), body)
        try:
            stored = await store(deliveries.Incoming(
                "sentry", delivery_key(f"{ui.RESOURCE}.{action}", body), ui.RESOURCE, action, stored_body,
                "", None,
            ))
        except SQLAlchemyError as exc:
            log.error("cannot store a Sentry form: %s", type(exc).__name__)
            return _message(503, "syncer cannot store the request right now; try again in a minute")
        return await answer(stored.delivery_id, parsed.issue_id)

    async def answer(delivery_id: int, issue_id: str) -> Response:
        deadline = time.monotonic() + settings.ui_wait_seconds
        while True:
            record = await run_in_threadpool(deliveries.load, engine, delivery_id)
            if record is not None and record.state not in DeliveryState.UNFINISHED:
                break
            if time.monotonic() > deadline:
                return _message(504, "Jira is slow: syncer keeps trying and the ticket will show on "
                                     "this issue once it is filed")
            await asyncio.sleep(POLL_SECONDS)
        link = await run_in_threadpool(links.live, engine, issue_id)
        if link is not None and link.state == LinkState.ACTIVE and link.jira_key:
            key = link.jira_key
            return JSONResponse({"webUrl": f"{settings.jira_url}/browse/{key}",
                                 "project": key.split("-")[0], "identifier": key})
        if record.state == DeliveryState.DEAD:
            # The dead letter's text names the error's kind first ("PermanentError: ..."): the
            # person in Sentry reads the reason only.
            reason = _ERROR_KIND.sub("", record.last_error or "") or "syncer could not file it"
            return _message(400, reason[:500])
        return _message(409, record.outcome[:500] or "no ticket was filed for this issue")

    async def create(request: Request) -> Response:
        return await form(request, "create")

    async def link(request: Request) -> Response:
        return await form(request, "link")

    async def alert_rule(request: Request) -> Response:
        body = await verified(request)
        if isinstance(body, Response):
            return body
        try:
            payload = decode_object(body)
            chosen = choices.parse_choices(choices.settings_values(payload.get("fields")), policy())
        except PayloadError:
            return _message(400, "the body is not Sentry's alert-rule settings")
        except choices.ChoiceError as exc:
            return _message(400, str(exc))
        return JSONResponse({"message": f"saved: {chosen.describe()}"})

    return [
        (ui.TEAMS, teams, ["GET"]),
        (ui.ASSIGNEES, assignees, ["GET"]),
        (ui.TICKETS, tickets, ["GET"]),
        (ui.CREATE, create, ["POST"]),
        (ui.LINK, link, ["POST"]),
        (ui.ALERT_RULE_ACTION, alert_rule, ["POST"]),
    ]


def _dependent(raw: str | None) -> str:
    """The team a dependent select names: Sentry sends the fields it depends on as JSON
    (`{"team": "payments"}`); a bare value is taken as the team."""
    if not raw:
        return ""
    try:
        data = json.loads(raw[:2000])
    except ValueError:
        return raw[:200]
    if isinstance(data, Mapping):
        value = data.get(choices.TEAM)
        return value[:200] if isinstance(value, str) else ""
    return data[:200] if isinstance(data, str) else ""
