"""The console's routes: who may see what, each page, each action.

Pages are plain GETs; actions are POSTed forms that answer with a redirect to the page they change
(so a reload never repeats them), carrying a fixed note to show (`?note=`), never free text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import redis
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from syncer import logs
from syncer.core import triage
from syncer.policy import Policy, load_policy
from syncer.settings import Settings
from syncer.store import deadletters, links
from syncer.web.console import charts, overview
from syncer.web.console.access import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Access,
    Role,
    Visitor,
    csrf_ok,
    new_csrf_value,
)
from syncer.web.console.describe import cause_of, payload_summary

log = logs.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_FORM_BYTES = 16 * 1024

# What an action's redirect may ask the page to say.
NOTES = {
    "retried": "Dead letter queued again: its delivery is back in the inbox.",
    "dropped": "Dead letter dropped.",
    "gone": "That dead letter is not open any more (someone else acted on it).",
    "unlinked": "Unlinked: the issue may get a new ticket from its next event.",
    "link-queued": "Link queued: it shows here within seconds, unless the worker refuses it (its log "
                   "says why: the issue already linked, no such ticket).",
    "link-bad": "Give a Sentry issue id (digits) and a Jira key such as OPS-12.",
    "link-failed": "The broker did not take the link; try again, or use `syncer links link`.",
    "not-linked": "That issue has no live link any more.",
    "reconcile": "A reconcile run was queued; its result shows here when it ends.",
    "reconcile-failed": "The broker did not take the reconcile run; try again, or run `syncer reconcile`.",
    "signed-out": "Signed out.",
}

# Security headers on every console answer: nothing from another site, no framing, no caching of
# pages that show the deployment's state, no referrer leaking search text.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


Figures = Callable[[Engine, timedelta, "str | None"], triage.Report]


@dataclass(frozen=True)
class Actions:
    """What the console reaches beyond the store, handed in by its entry point (`syncer web`): hand
    a delivery to the broker (a retried dead letter), start a reconcile run on a worker, ask the
    broker whether it answers, and work out the triage figures (`syncer report`'s own function,
    which lives with the orchestration this tier does not import)."""

    enqueue: Callable[[int], None]
    start_reconcile: Callable[[], None] | None = None
    broker_check: Callable[[], None] | None = None
    figures: Figures | None = None
    link_by_hand: Callable[[str, str, str], None] | None = None  # (sentry id, Jira key, cause)


@dataclass
class Page:
    """What every template gets."""

    visitor: Visitor | None
    csrf: str
    section: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("syncer.web.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = ago
    env.filters["utc"] = utc
    env.filters["cause"] = cause_of
    env.filters["summary"] = payload_summary
    return env


def _moment(value: datetime | float | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def utc(value: datetime | float | None) -> str:
    moment = _moment(value)
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def ago(value: datetime | float | None, now: float | None = None) -> str:
    moment = _moment(value)
    if moment is None:
        return "never"
    seconds = max(0.0, (now if now is not None else time.time()) - moment.timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def mount(app: FastAPI, settings: Settings, engine: Engine, actions: Actions,
          redis_client: redis.Redis | None) -> None:
    """Add the console's routes to `app`, when the console is configured (raises ConfigError on a
    configuration it cannot use); otherwise nothing, and `/console` answers 404."""
    access = Access.from_settings(settings)
    if not access.enabled:
        return
    policy_cache: dict[str, Policy] = {}

    def policy() -> Policy:
        if "policy" not in policy_cache:
            policy_cache["policy"] = load_policy(settings.config)
        return policy_cache["policy"]

    def visitor_of(request: Request) -> Visitor | None:
        return access.visitor({k.lower(): v for k, v in request.headers.items()}, dict(request.cookies))

    def render(request: Request, template: str, page: Page, status: int = 200) -> HTMLResponse:
        body = _templates().get_template(template).render(
            page=page, settings=settings, links_base=links_base, **page.extra
        )
        response = HTMLResponse(body, status_code=status, headers=HEADERS)
        if request.cookies.get(CSRF_COOKIE) != page.csrf:
            _set_cookie(response, CSRF_COOKIE, page.csrf, max_age=None)
        return response

    def page(request: Request, visitor: Visitor | None, section: str, **extra: Any) -> Page:
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_value()
        note = NOTES.get(request.query_params.get("note", ""), "")
        return Page(visitor, csrf, section, note, extra)

    def refused(request: Request, visitor: Visitor | None) -> Response:
        """Anonymous: nothing but the way to sign in. Signed in without the role: a plain 403."""
        if visitor is None and access.has_login and request.method == "GET":
            target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
            return RedirectResponse(f"/console/login?next={target}", status_code=303, headers=HEADERS)
        status, reason = (403, "operators only") if visitor is not None else (403, "not signed in")
        return render(request, "refused.html", page(request, visitor, "", reason=reason), status=status)

    links_base = _LinksBase(settings)

    Handler = Callable[[Request, Visitor], Awaitable[Response]]

    def viewing(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            visitor = visitor_of(request)
            if visitor is None:
                return refused(request, None)
            return await handler(request, visitor)

        return wrapped

    def acting(handler: Callable[[Request, Visitor, dict[str, str]], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
        """An operator's POST: signed in, an operator, and the form's CSRF value right."""

        async def wrapped(request: Request) -> Response:
            visitor = visitor_of(request)
            if visitor is None or not visitor.operator:
                return refused(request, visitor)
            form = await _form(request) or {}
            if not csrf_ok(visitor, request.cookies.get(CSRF_COOKIE), form.get("csrf"),
                                           request.headers.get("sec-fetch-site")):
                return render(request, "refused.html",
                              page(request, visitor, "", reason="the form was not this console's own "
                                   "(reload the page and try again)"), status=403)
            return await handler(request, visitor, form)

        return wrapped

    # --- signing in and out ---------------------------------------------------------------------

    async def login_form(request: Request) -> Response:
        if not access.has_login:
            return refused(request, visitor_of(request))
        return render(request, "login.html", page(request, visitor_of(request), "login",
                                                  next=_safe_next(request.query_params.get("next"))))

    async def login(request: Request) -> Response:
        if not access.has_login:
            return refused(request, None)
        form = await _form(request) or {}
        target = _safe_next(form.get("next"))
        anonymous = Visitor("", Role.VIEWER)
        if not csrf_ok(anonymous, request.cookies.get(CSRF_COOKIE), form.get("csrf"),
                       request.headers.get("sec-fetch-site")):
            return render(request, "login.html", page(request, None, "login", next=target,
                          error="The form expired: try again."), status=403)
        role = access.role_of_token(form.get("token", ""))
        if role is None:
            log.warning("console: a sign-in with a wrong token")
            return render(request, "login.html", page(request, None, "login", next=target,
                          error="That token is not right."), status=401)
        response = RedirectResponse(target, status_code=303, headers=HEADERS)
        _set_cookie(response, SESSION_COOKIE, access.session_value(role), max_age=SESSION_SECONDS)
        # A fresh CSRF value for the new session: one planted before sign-in must not outlive it.
        _set_cookie(response, CSRF_COOKIE, new_csrf_value(), max_age=None)
        log.info("console: signed in as %s", role.name.lower())
        return response

    async def logout(request: Request) -> Response:
        visitor = visitor_of(request)
        form = await _form(request) or {}
        if visitor is None or not csrf_ok(visitor, request.cookies.get(CSRF_COOKIE), form.get("csrf"),
                                          request.headers.get("sec-fetch-site")):
            return refused(request, visitor)
        response = RedirectResponse("/console/login?note=signed-out" if access.has_login else "/console",
                                    status_code=303, headers=HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/console", secure=True, httponly=True, samesite="strict")
        return response

    # --- pages ------------------------------------------------------------------------------------

    async def overview_page(request: Request, visitor: Visitor) -> Response:
        seen = await run_in_threadpool(overview.gather, settings, engine, redis_client, actions.broker_check)
        return render(request, "overview.html", page(request, visitor, "overview", o=seen))

    async def routes_page(request: Request, visitor: Visitor) -> Response:
        report = None
        if actions.figures is not None:
            report = await run_in_threadpool(actions.figures, engine, timedelta(days=7), None)
        table = overview.routes(policy(), report)
        windows = [label for label, _ in triage.ROUTE_WINDOWS] if report else []
        share = ""
        if report is not None:
            shares = ", ".join(f"{'-' if v is None else f'{v:.0%}'} in {w}"
                               for v, w in zip(report.no_owner_share, windows, strict=True))
            share = f"No owner (reached [defaults]): {shares}."
        return render(request, "routes.html", page(request, visitor, "routes", table=table,
                                                   windows=windows, share=share))

    async def teams_page(request: Request, visitor: Visitor) -> Response:
        if actions.figures is None:
            return render(request, "teams.html", page(request, visitor, "teams", report=None))
        raw_since = request.query_params.get("since", "28d")
        try:
            since = triage.parse_since(raw_since)
        except ValueError as exc:
            return render(request, "teams.html", page(request, visitor, "teams", report=None,
                                                     error=str(exc), since=raw_since[:20]), status=400)
        team = request.query_params.get("team") or None
        if team is not None and team not in policy().teams:
            team = None
        report = await run_in_threadpool(actions.figures, engine, since, team)
        charts_by_team = {
            figures.team: charts.weekly_bars(figures.weeks, title=f"{triage.team_name(figures.team)}: "
                                             "tickets made and resolved per week")
            for figures in report.teams
        }
        return render(request, "teams.html", page(
            request, visitor, "teams", report=report, charts=charts_by_team, since=raw_since,
            team=team, teams=sorted(policy().teams), markdown=triage.markdown(report),
            duration=triage.duration_text, team_name=triage.team_name,
            buckets=[label for label, _ in triage.AGE_BUCKETS],
        ))

    async def links_page(request: Request, visitor: Visitor) -> Response:
        query = request.query_params.get("q", "")[:200]
        found = await run_in_threadpool(links.search, engine, query)
        return render(request, "links.html", page(request, visitor, "links", q=query, found=found))

    async def link_page(request: Request, visitor: Visitor) -> Response:
        raw = request.path_params["link_id"]
        link = await run_in_threadpool(links.load, engine, int(raw)) if str(raw).isdigit() else None
        if link is None:
            return render(request, "missing.html", page(request, visitor, "links", what="link"), status=404)
        every, trail = await run_in_threadpool(links.history, engine, link.sentry_issue_id)
        return render(request, "link.html", page(request, visitor, "links", link=link, every=every,
                                                 trail=list(reversed(trail))))

    async def letters_page(request: Request, visitor: Visitor) -> Response:
        letters = await run_in_threadpool(deadletters.open_letters, engine, limit=200)
        return render(request, "dead_letters.html", page(request, visitor, "dead-letters", letters=letters))

    # --- actions ----------------------------------------------------------------------------------

    def letter_id(request: Request) -> int | None:
        raw = str(request.path_params["letter_id"])
        return int(raw) if raw.isdigit() else None

    async def retry_letter(request: Request, visitor: Visitor, _form: dict[str, str]) -> Response:
        number = letter_id(request)
        try:
            if number is None:
                raise LookupError("no such dead letter")
            # What `syncer dead-letters retry` does: the delivery back in the inbox, then the broker.
            delivery = await run_in_threadpool(deadletters.retry, engine, number, actions.enqueue)
        except LookupError:
            return _back("/console/dead-letters", "gone")
        log.info("console: %s retried dead letter %s (delivery %s)", visitor.name, number, delivery)
        return _back("/console/dead-letters", "retried")

    async def drop_letter(request: Request, visitor: Visitor, _form: dict[str, str]) -> Response:
        number = letter_id(request)
        try:
            if number is None:
                raise LookupError("no such dead letter")
            await run_in_threadpool(deadletters.drop, engine, number)
        except LookupError:
            return _back("/console/dead-letters", "gone")
        log.info("console: %s dropped dead letter %s", visitor.name, number)
        return _back("/console/dead-letters", "dropped")

    async def unlink(request: Request, visitor: Visitor, _form: dict[str, str]) -> Response:
        raw = str(request.path_params["link_id"])
        link = await run_in_threadpool(links.load, engine, int(raw)) if raw.isdigit() else None
        if link is None:
            return _back("/console/links", "not-linked")
        # What `syncer links unlink` does, with the person as the cause.
        done = await run_in_threadpool(
            lambda: links.unlink(engine, link.sentry_issue_id, cause=f"console:{visitor.name}"[:200],
                                 audit=[("syncer", "unlinked", "in the console")])
        )
        return _back(f"/console/links/{link.id}", "unlinked" if done else "not-linked")

    async def link(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
        sentry_id, key = form.get("sentry_id", "").strip(), form.get("jira_key", "").strip().upper()
        if not (sentry_id.isdigit() and len(sentry_id) <= 20 and links.looks_like_jira_key(key)):
            return _back("/console/links", "link-bad")
        if actions.link_by_hand is None:
            return _back("/console/links", "link-failed")
        try:
            # Linking reads both sites (sync code): a worker does it, as `syncer links link` would.
            await run_in_threadpool(actions.link_by_hand, sentry_id, key, f"console:{visitor.name}"[:200])
        except Exception as exc:
            log.warning("console: could not queue a link: %s", type(exc).__name__)
            return _back("/console/links", "link-failed")
        log.info("console: %s asked to link sentry issue %s to %s", visitor.name, sentry_id, key)
        return RedirectResponse(f"/console/links?q={sentry_id}&note=link-queued", status_code=303,
                                headers=HEADERS)

    async def reconcile(request: Request, visitor: Visitor, _form: dict[str, str]) -> Response:
        if actions.start_reconcile is None:
            return _back("/console", "reconcile-failed")
        try:
            await run_in_threadpool(actions.start_reconcile)
        except Exception as exc:
            log.warning("console: could not queue a reconcile run: %s", type(exc).__name__)
            return _back("/console", "reconcile-failed")
        log.info("console: %s queued a reconcile run", visitor.name)
        return _back("/console", "reconcile")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("console.css", "console.js"):
            return Response(status_code=404)
        return FileResponse(STATIC / name, headers={**HEADERS, "Cache-Control": "max-age=300"})

    add = app.add_route
    add("/console", viewing(overview_page), methods=["GET"], include_in_schema=False)
    add("/console/login", login_form, methods=["GET"], include_in_schema=False)
    add("/console/login", login, methods=["POST"], include_in_schema=False)
    add("/console/logout", logout, methods=["POST"], include_in_schema=False)
    add("/console/routes", viewing(routes_page), methods=["GET"], include_in_schema=False)
    add("/console/teams", viewing(teams_page), methods=["GET"], include_in_schema=False)
    add("/console/links", viewing(links_page), methods=["GET"], include_in_schema=False)
    add("/console/links/new", acting(link), methods=["POST"], include_in_schema=False)
    add("/console/links/{link_id}", viewing(link_page), methods=["GET"], include_in_schema=False)
    add("/console/links/{link_id}/unlink", acting(unlink), methods=["POST"], include_in_schema=False)
    add("/console/dead-letters", viewing(letters_page), methods=["GET"], include_in_schema=False)
    add("/console/dead-letters/{letter_id}/retry", acting(retry_letter), methods=["POST"],
        include_in_schema=False)
    add("/console/dead-letters/{letter_id}/drop", acting(drop_letter), methods=["POST"],
        include_in_schema=False)
    add("/console/reconcile", acting(reconcile), methods=["POST"], include_in_schema=False)
    add("/console/static/{name}", static, methods=["GET"], include_in_schema=False)


class _LinksBase:
    """Where a person opens an issue or a ticket in its own site."""

    def __init__(self, settings: Settings) -> None:
        self._sentry = settings.sentry_url.rstrip("/")
        self._org = settings.sentry_org or ""
        self._jira = (settings.jira_url or "").rstrip("/")

    def sentry(self, issue_id: str) -> str:
        return f"{self._sentry}/organizations/{quote(self._org)}/issues/{quote(issue_id)}/"

    def jira(self, key: str) -> str:
        return f"{self._jira}/browse/{quote(key)}" if self._jira else ""


def _set_cookie(response: Response, name: str, value: str, *, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/console", secure=True, httponly=True,
                        samesite="strict")


def _back(path: str, note: str) -> Response:
    return RedirectResponse(f"{path}?note={note}", status_code=303, headers=HEADERS)


def _safe_next(raw: str | None) -> str:
    """Only a console page of this site: a login must not become a redirect to anywhere."""
    if raw and raw.startswith("/console") and "//" not in raw and "\\" not in raw:
        return raw
    return "/console"


async def _form(request: Request) -> dict[str, str] | None:
    """An url-encoded form body (what the console's forms send), first value of each name; None
    when it is too large or not a form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in parsed.items() if values}
