"""A fake Sentry: the REST API our client calls and the integration-platform webhooks it sends.

It is a real HTTP server (see `base.FakeServer`), driven from Python:

    fake = start_fake_sentry(webhook_url=inbox.url)
    issue = fake.file_issue(project="billing-api", title="KeyError: 'plan'")   # -> `issue.created`
    fake.person_resolve(issue["id"])                                          # -> `issue.resolved`
    client = SentryClient(fake.url, fake.org, fake.token)                     # REST under /api/0/

State changes made through the API with the integration's token are echoed as webhooks whose actor is
`{"type": "application", "id": <app_id>, ...}`, exactly the echo syncer must recognise; Sentry's own
changes (new issues, regressions, escalations, alerts) carry the actor `{"id": "sentry", ...}` and a
person's changes `{"type": "user", "id": <int>, ...}`.

Fidelity notes, from Sentry's source (`api/helpers/group_index/update.py`, `sentry_apps/...`):
- Archiving sends two webhooks, `ignored` then `archived` (same data): `send_archived_alias`.
- Un-archiving (ignored -> unresolved) sends NO webhook; only resolved -> unresolved and escalations do:
  `webhook_on_unignore` turns that on for scenarios that want it.
- Unassigning sends no webhook (there is no `issue.unassigned` for integrations).
- Sentry re-sends `resolved` when an already resolved issue is resolved again; the fake does not, unless
  `resend_on_noop_resolve` is set (a PUT that changes nothing sends nothing).
- `GET .../issues/?group=1&group=2` ignores the query and is not paginated; `id=` selects issues only on
  PUT/DELETE (on GET it is ignored, as on the real server).
- `POST .../notes/` refuses the same text from the same user within an hour (400).
- The list's cursor has Sentry's `value:offset:is_prev` shape, but is opaque: here `value` is the sort
  key and `offset` the id of the last issue returned (keyset pagination, so 100,000 issues stay fast).

Real Sentry differs by plan and version; each difference is a switch (an attribute; `reset()` puts the
defaults back), defaulting to the newest SaaS with every feature unless noted:
- `global_views = False`: Team/Developer plans. A list, `group=` lookup or bulk PUT spanning more than
  one project (`project=-1`, none with several projects, several `project=`) answers 400 "You do not have
  the multi project stream feature enabled". The newest Sentry dropped the check.
- `default_search_window = True`: a list naming no `statsPeriod`/`start`+`end` covers issues seen in the
  last 90 days (real Sentry always does; off because older tests file issues first seen in 2025).
- `legacy_event_alerts = True` (or `send_legacy_event_alert()`): `event_alert` without `issue_id`,
  before January 2022 (getsentry/sentry#31222).
- `external_issue_upsert = False`: linking an issue a second time is a 500, before late 2024 (#79844).
- `unresolved_webhooks = False`: no `issue.unresolved` at all, before May 2024 (#69994).
- `issue_priority = False`: issues without `priority`, before 2024; a PUT of it is ignored.
- Construction only: `path_prefix` (self-hosted under a path), `organization_url` (SaaS: web links on
  the organisation's host, API on the region's).
Always on, as in every version: `project=` scoping (403 for a project not there), merge redirects
(`merge()`), the top-ten tags list, snoozes that count down (`record_events()`), installations
(`install()`, `uninstall()`), comment edits and deletes, and Sentry's own screens calling the
integration's UI components (`screens`: syncer.fakes.sentry_screens).
"""

from __future__ import annotations

import bisect
import gc
import hmac
import html
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncer.fakes.base import (
    CallLog,
    FakeServer,
    Fault,
    Misbehaviour,
    WebhookSender,
    compact_json,
    hmac_sha256_hex,
    json_body,
)
from syncer.fakes.sentry_model import (
    IGNORED_SUBSTATUSES,
    PRIORITIES,
    UNRESOLVED_SUBSTATUSES,
    UPDATE_STATUSES,
    Issue,
    Project,
    Reply,
    TagTable,
    Team,
    User,
    base36,
    iso,
    to_ms,
)
from syncer.fakes.sentry_screens import SentryScreens
from syncer.fakes.sentry_search import (
    DEFAULT_PERIOD,
    compile_query,
    keyset_page,
    search_window,
    seen_within,
)
from syncer.fakes.sentry_status import (
    Echoes,
    change_status,
    escalated_priority,
    set_status,
    snooze_expired,
    status_details,
)
from syncer.fakes.sentry_status import commit as commit_json
from syncer.fakes.sentry_tags import (
    TagSpec,
    merged_tags,
    tag_key_json,
    tag_table,
    tag_value_json,
    values_in_order,
)

SENTRY_ACTOR: dict[str, Any] = {"type": "application", "id": "sentry", "name": "Sentry"}
DEFAULT_APP_ID = "5d1f8a7e-2c4b-4e0f-9a3d-7b6c1e2f3a40"
DEFAULT_INSTALLATION_UUID = "a3c9e1b2-7f64-4d8a-b5e0-2f1d6c8b9e07"
FIRST_ISSUE_ID = 4_100_000_001
NOTE_DUPLICATE_WINDOW = 3600.0
MAX_PAGE = 100
BULK_MUTATION_LIMIT = 1000
NOT_FOUND = {"detail": "The requested resource does not exist"}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
MULTI_PROJECT_REFUSED = {"detail": "You do not have the multi project stream feature enabled"}


@dataclass
class _Update:
    status: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    substatus: str | None = None
    assign: bool = False
    target: tuple[str, int] | None = None
    merge: bool = False
    priority: str | None = None


class _RateLimitHeaders:
    """Outermost middleware: every API answer, injected faults included, carries Sentry's rate-limit
    headers; a header the answer already has (a fault's own `X-Sentry-Rate-Limit-Reset`) wins."""

    def __init__(self, app: ASGIApp, fake: FakeSentry) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(f"{self.fake.path_prefix}/api/"):
            await self.app(scope, receive, send)
            return
        headers, over = self.fake._count_request()
        scope["fake_sentry_over_limit"] = over

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in headers if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            self.fake._request_done()


class FakeSentry:
    """State, HTTP routes and webhook emission of one fake Sentry organisation with one installation
    of our internal integration. Every public method is thread-safe."""

    def __init__(
        self,
        *,
        org: str = "acme",
        token: str = "sentry-token",
        client_secret: str = "sentry-secret",
        app_id: str = DEFAULT_APP_ID,
        installation_uuid: str = DEFAULT_INSTALLATION_UUID,
        app_name: str = "syncer",
        webhook_url: str | None = None,
        port: int = 0,
        path_prefix: str = "",
        organization_url: str | None = None,
    ) -> None:
        """`path_prefix` serves everything under a path, as a self-hosted Sentry behind a proxy at
        https://host/sentry/ (`url` then ends with it; other paths answer a plain 404).
        `organization_url` is the web host of the organisation when it differs from the API's, as
        on SaaS (https://acme.sentry.io, with the API on the region: https://de.sentry.io): the
        permalinks and web_url in answers and webhooks use it, the API links keep `url`."""
        self.org = org
        self.path_prefix = f"/{path_prefix.strip('/')}" if path_prefix.strip("/") else ""
        self.token = token
        self.client_secret = client_secret
        self.app_id = app_id
        self.installation_uuid = installation_uuid
        self._first_installation_uuid = installation_uuid
        self.app_name = app_name
        self.app_slug = re.sub(r"[^a-z0-9]+", "-", app_name.lower()).strip("-") or "app"
        self.calls = CallLog()
        self.faults: list[Fault] = []
        self.webhooks = WebhookSender("fake-sentry")
        self.webhooks.url = webhook_url
        self._lock = threading.RLock()
        self._rate_lock = threading.Lock()
        self._outbox: deque[tuple[str, dict[str, Any]]] = deque(maxlen=10_000)
        # Sentry's own screens calling the integration (its UI components): syncer.fakes.sentry_screens.
        self.screens = SentryScreens(self)
        self._set_defaults()
        self._clear_state()
        routes = self._routes()
        self._misbehaviour = Misbehaviour(Starlette(routes=routes), self.calls, self.faults, threading.Lock())
        self._misbehaviour.fault_body = lambda fault: {"detail": f"Injected failure {fault.status}"}
        self.server = FakeServer(_RateLimitHeaders(self._misbehaviour, self), port)
        self.origin = self.server.url  # scheme://host:port, without the path prefix
        self.url = self.origin + self.path_prefix  # the base URL a client is configured with
        self.organization_url = organization_url.rstrip("/") if organization_url else None

    # ------------------------------------------------------------------ lifecycle and switches

    def _set_defaults(self) -> None:
        self.send_archived_alias = True
        self.webhook_on_unignore = False
        self.resend_on_noop_resolve = False
        self.enhanced_privacy = False  # True: no e-mail in webhook assignees
        self.rate_limit = 1000  # requests per `rate_window` seconds, shown in the headers
        self.rate_window = 1.0
        self.enforce_rate_limit = False  # True: answer 429 past the limit, like the real one
        self.concurrent_limit = 25
        # Real Sentry as plans and versions differ; each switch names the behaviour when flipped.
        self.global_views = True  # False: Team/Developer plans, no issue list spanning projects
        self.default_search_window = False  # True: a list naming no period covers 90 days only
        self.legacy_event_alerts = False  # True: event_alert bodies of before 2022, without issue_id
        self.external_issue_upsert = True  # False: before late 2024, linking an issue twice is a 500
        self.unresolved_webhooks = True  # False: before May 2024, no issue.unresolved webhooks
        self.issue_priority = True  # False: before 2024, issues have no priority (and PUT ignores it)

    def _clear_state(self) -> None:
        with self._lock:
            self._issues: dict[int, Issue] = {}
            self._by_short_id: dict[str, int] = {}
            self._date_keys: list[tuple[int, int]] = []  # (last_seen ms, id), ascending
            self._new_keys: list[tuple[int, int]] = []  # (first_seen ms, id), ascending
            self._projects: dict[str, Project] = {}
            self._next_issue_id = FIRST_ISSUE_ID
            self._next_note_id = 1
            self._next_external_id = 1
            self._redirects: dict[int, int] = {}  # merged-away id -> the id it was merged into
            self.installation_uuid = self._first_installation_uuid
            self._installed = True
            self._token_revoked = False
            self._users: dict[int, User] = {}
            self._teams: dict[int, Team] = {}
            for name, email in (("Alice Example", "alice@example.com"), ("Bob Example", "bob@example.com"),
                                ("Carol Example", "carol@example.com")):
                self._add_user(name, email)
            for slug in ("payments", "platform", "billing"):
                self._add_team(slug)
            # The integration acts through a proxy user; it shows up in notes and statusDetails.actor.
            self._proxy = User(9000, self.app_name, "", f"{self.app_slug}-{self.app_id}")
            self._outbox.clear()
        with self._rate_lock:
            self._rate_window_id = -1
            self._rate_count = 0
            self._inflight = 0

    def start(self) -> FakeSentry:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.webhooks.close()

    def reset(self) -> None:
        """Back to an empty organisation: no issues, no calls, no faults, default switches."""
        self._clear_state()
        self._set_defaults()
        self.calls.reset()
        self.faults.clear()
        self.screens.reset()
        self.latency = 0.0
        self.webhooks.enabled = True
        self.webhooks.discard_pending()
        self.webhooks.drain(timeout=5.0)  # the delivery in flight, if any
        self.webhooks.sent.clear()

    @property
    def latency(self) -> float:
        return self._misbehaviour.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._misbehaviour.latency = seconds

    # ------------------------------------------------------------------ state accessors

    def issue(self, issue_id: str | int) -> dict[str, Any]:
        """The issue as `GET /organizations/{org}/issues/{id}/` shows it; KeyError when unknown."""
        with self._lock:
            return self._render(self._get(issue_id))

    def issues(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render(i) for i in self._issues.values()]

    def issue_count(self) -> int:
        with self._lock:
            return len(self._issues)

    def notes(self, issue_id: str | int) -> list[dict[str, Any]]:
        """Notes (comments) on the issue, oldest first."""
        with self._lock:
            return [dict(n) for n in self._get(issue_id).notes]

    def external_issues(self, issue_id: str | int) -> list[dict[str, Any]]:
        """External-issue links of the issue, as the external-issues endpoint answered them."""
        with self._lock:
            return [dict(e) for e in self._get(issue_id).external.values()]

    def set_tags(self, issue_id: str | int, tags: TagSpec) -> None:
        """Replace the issue's tags. Per key: one value, a list (most frequent first), or a mapping
        value -> times seen (to give an issue many values, or a rare one beyond the top ten)."""
        with self._lock:
            issue = self._get(issue_id)
            issue.tags = tag_table(tags, issue.count, issue.first_seen, issue.last_seen)

    def emitted(self) -> list[tuple[str, dict[str, Any]]]:
        """(resource, payload) of every webhook the fake emitted (even when delivery is off), oldest first."""
        with self._lock:
            return list(self._outbox)

    def add_user(self, name: str, email: str) -> int:
        with self._lock:
            return self._add_user(name, email).id

    def add_team(self, slug: str) -> int:
        with self._lock:
            return self._add_team(slug).id

    # ------------------------------------------------------------------ things that happen in Sentry

    def file_issue(
        self,
        project: str = "billing-api",
        title: str = "ZeroDivisionError: division by zero",
        culprit: str = "billing.invoices in compute_total",
        level: str = "error",
        platform: str = "python",
        count: int = 1,
        user_count: int = 1,
        tags: TagSpec | None = None,
        assigned_to: str | None = None,
        first_seen: datetime | float | str | None = None,
        priority: str | None = None,
        release: str | None = None,
    ) -> dict[str, Any]:
        """A new issue: `issue.created` (actor Sentry, with url/web_url/project_url); when ownership
        rules assign it (`assigned_to`), an `issue.assigned` from Sentry follows, as on the real one.
        `priority` (low/medium/high) overrides the one Sentry derives from the level. `release`: the
        version its first event names (the issue's `firstRelease`, in the issue's details only)."""
        if priority is not None and priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        with self._lock:
            issue = self._new_issue(project=project, title=title, culprit=culprit, level=level,
                                    platform=platform, count=count, user_count=user_count, tags=tags,
                                    first_seen=first_seen)
            issue.priority = priority or issue.priority
            issue.first_release = issue.last_release = release
            self._index(issue)
            self._issue_hook(issue, "created", SENTRY_ACTOR, with_urls=True)
            if assigned_to:
                for action, extra in self._assign(issue, self._owner(assigned_to, create=True)):
                    self._issue_hook(issue, action, SENTRY_ACTOR, extra)
            return self._render(issue)

    def seed_issues(self, n: int, **fields: Any) -> list[str]:
        """Create `n` issues at once WITHOUT webhooks (benchmarks, reconciliation scenarios). Takes
        `file_issue`'s arguments plus `status`, `substatus` and `last_seen`; `title` may hold `{n}`."""
        status = fields.pop("status", "unresolved")
        substatus = fields.pop("substatus", None)
        last_seen = fields.pop("last_seen", None)
        assigned_to = fields.pop("assigned_to", None)
        title = fields.pop("title", "RuntimeError: seeded failure #{n}")
        ids: list[str] = []
        # The collector's full passes over 100,000 fresh objects cost as much as creating them.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._seed(n, ids, title, status, substatus, last_seen, assigned_to, fields)
        finally:
            if collecting:
                gc.enable()
        return ids

    def _seed(
        self, n: int, ids: list[str], title: str, status: str, substatus: str | None,
        last_seen: Any, assigned_to: str | None, fields: dict[str, Any],
    ) -> None:
        with self._lock:
            target = self._owner(assigned_to, create=True) if assigned_to else None
            now = time.time()
            # One tag table for all: tables are replaced whole (set_tags), never edited in place.
            level = fields.get("level", "error")
            tags = fields.get("tags") or {"environment": ["production"], "level": [level]}
            now_ms = int(now * 1000)
            shared = tag_table(tags, fields.get("count", 1), now_ms, now_ms)
            for k in range(n):
                numbered = title.replace("{n}", str(k))
                issue = self._new_issue(title=numbered, now=now, shared_tags=shared, **fields)
                if last_seen is not None:
                    issue.last_seen = max(issue.first_seen, to_ms(last_seen, now))
                issue.status = status
                default_substatus = {"unresolved": "new", "ignored": "archived_forever"}.get(status)
                issue.substatus = substatus or default_substatus
                issue.assignee = target
                self._issues[issue.id] = issue
                self._by_short_id[issue.short_id] = issue.id
                self._date_keys.append((issue.last_seen, issue.id))
                self._new_keys.append((issue.first_seen, issue.id))
                ids.append(str(issue.id))
            self._date_keys.sort()
            self._new_keys.sort()

    def regress(self, issue_id: str | int, substatus: str = "regressed",
                release: str | None = None) -> dict[str, Any]:
        """A new event on a resolved issue: unresolved again, `issue.unresolved` from Sentry.
        `release`: the version the new event names (the issue's `lastRelease` from then on)."""
        with self._lock:
            issue = self._get(issue_id)
            if release is not None:
                issue.last_release = release
            self._new_event(issue)
            self._reopen(issue, substatus)
            return self._render(issue)

    def escalate(self, issue_id: str | int) -> dict[str, Any]:
        """An archived-until-escalating issue escalates: unresolved/escalating, `issue.unresolved`,
        and its priority goes up a level unless a person set it (issues/priority.py
        auto_update_priority: low -> medium, else high)."""
        return self.regress(issue_id, substatus="escalating")

    def record_events(self, issue_id: str | int, n: int = 1, *, new_users: int = 0) -> dict[str, Any]:
        """`n` new events (`new_users` more users). On a resolved issue that is a regression. On an
        issue archived until a condition is met, Sentry checks the condition (post_process.py
        process_snoozes): counts reached -> unresolved/escalating with `issue.unresolved`; an
        `ignoreUntil` passed -> unresolved/ongoing with no webhook (manage_issue_states ONGOING)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        with self._lock:
            issue = self._get(issue_id)
            for _ in range(n):
                self._new_event(issue)
            issue.user_count += new_users
            if issue.status == "resolved":
                self._reopen(issue, "regressed")
            elif issue.snooze is not None:
                expired = snooze_expired(issue)
                if expired == "count":
                    self._reopen(issue, "escalating")
                elif expired == "until":
                    set_status(issue, "unresolved", "ongoing")
            return self._render(issue)

    def become_ongoing(self, issue_id: str | int) -> dict[str, Any]:
        """Sentry's daily task moves issues that stayed new, regressed or escalating for 7 days to
        ongoing (issues/ongoing.py bulk_transition_group_to_ongoing): no webhook, since the issue
        was unresolved already."""
        with self._lock:
            issue = self._get(issue_id)
            if issue.status != "unresolved":
                raise ValueError(f"issue {issue_id} is {issue.status}, not unresolved")
            issue.substatus = "ongoing"
            return self._render(issue)

    def person_resolve(
        self, issue_id: str | int, *, by: str = "alice@example.com", in_next_release: bool = False,
        in_release: str | None = None, in_commit: str | None = None, repository: str = "acme/billing",
    ) -> dict[str, Any]:
        """Resolve now, in the next release, in a release (`in_release`, a version) or in a commit
        (`in_commit`, a sha in `repository`): `issue.resolved` with the matching resolution_type."""
        details: dict[str, Any] = {}
        if in_release is not None:
            details["inRelease"] = in_release
        if in_commit is not None:
            details["inCommit"] = {"commit": in_commit, "repository": repository}
        status = "resolvedInNextRelease" if in_next_release else "resolved"
        return self._person_update(issue_id, by, _Update(status=status, details=details))

    def resolve_by_commit(
        self, issue_id: str | int, commit: str = "8f2a1c0", *, repository: str = "acme/billing",
        author: str | None = None,
    ) -> dict[str, Any]:
        """A commit whose message says "Fixes <short id>" resolves the issue (receivers/releases.py
        resolved_with_commit): `issue.resolved` with resolution_type `with_commit`, the commit's
        author as actor when Sentry knows them, else Sentry."""
        with self._lock:
            issue = self._get(issue_id)
            actor = self._person(author).actor() if author else SENTRY_ACTOR
            set_status(issue, "resolved", None, {"inCommit": commit_json(commit, repository)})
            self._issue_hook(issue, "resolved", actor, {"resolution_type": "with_commit"})
            return self._render(issue)

    def person_set_priority(
        self, issue_id: str | int, priority: str, *, by: str = "alice@example.com"
    ) -> dict[str, Any]:
        """A person sets the priority (low/medium/high), which locks it against automatic changes.
        No webhook: Sentry has none for a priority change (getsentry/sentry#105591 asks for one)."""
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        return self._person_update(issue_id, by, _Update(priority=priority))

    def person_unresolve(self, issue_id: str | int, *, by: str = "alice@example.com") -> dict[str, Any]:
        return self._person_update(issue_id, by, _Update(status="unresolved"))

    def person_archive(
        self, issue_id: str | int, substatus: str = "archived_forever", *, by: str = "alice@example.com",
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Archive (ignore): `issue.ignored`, then `issue.archived` (see `send_archived_alias`).
        `details` are the condition of `archived_until_condition_met`, named as in statusDetails:
        ignoreCount, ignoreWindow (minutes), ignoreUserCount, ignoreUserWindow, ignoreDuration
        (minutes), ignoreUntil (ISO); without them, 100 events."""
        if substatus not in IGNORED_SUBSTATUSES:
            raise ValueError(f"unknown archive substatus {substatus!r}")
        if details is not None and substatus != "archived_until_condition_met":
            raise ValueError("only archived_until_condition_met takes details")
        if substatus == "archived_until_escalating":
            details = {"untilEscalating": True}
        elif substatus == "archived_until_condition_met":
            details = dict(details or {"ignoreCount": 100})
        update = _Update(status="ignored", details=dict(details or {}), substatus=substatus)
        return self._person_update(issue_id, by, update)

    def person_assign(
        self, issue_id: str | int, owner: str | None, *, by: str = "alice@example.com"
    ) -> dict[str, Any]:
        """Assign to `user:<id|email|name>`, `team:<id|slug>` (or `#slug`); None/"" unassigns (no webhook)."""
        with self._lock:
            target = self._owner(owner, create=True)
        return self._person_update(issue_id, by, _Update(assign=True, target=target))

    def person_comment(
        self, issue_id: str | int, text: str, *, by: str = "alice@example.com"
    ) -> dict[str, Any]:
        """A person writes a note on the issue: `comment.created`."""
        with self._lock:
            return self._add_note(self._get(issue_id), text, self._person(by), check_duplicate=False)

    def person_edit_comment(
        self, issue_id: str | int, note_id: str | int, text: str, *, by: str = "alice@example.com"
    ) -> dict[str, Any]:
        """The author edits their note: `comment.updated` with the new text."""
        with self._lock:
            return self._person_changes_note(issue_id, note_id, text, by)

    def person_delete_comment(
        self, issue_id: str | int, note_id: str | int, *, by: str = "alice@example.com"
    ) -> None:
        """The author deletes their note: `comment.deleted` with the text it had."""
        with self._lock:
            self._person_changes_note(issue_id, note_id, None, by)

    def person_unlink_external_issue(self, issue_id: str | int) -> None:
        """A person removes the integration's link on the issue's page. No webhook: Sentry only
        deletes the PlatformExternalIssue (GroupExternalIssueDetailsEndpoint.delete); the issue's
        `annotations` and external-issue list stop showing it."""
        with self._lock:
            self._get(issue_id).external.pop(self.app_slug, None)

    def person_delete_issue(self, issue_id: str | int) -> None:
        """A person deletes the issue. No webhook: the issue resource's actions are created,
        resolved, assigned, archived and unresolved (docs: integration-platform/webhooks/issues);
        every read of the id then answers 404, and lists leave it out."""
        with self._lock:
            issue = self._get(issue_id, follow_merge=False)
            self._unindex(issue)
            del self._issues[issue.id]
            self._by_short_id.pop(issue.short_id, None)

    def trigger_alert(
        self, issue_id: str | int, rule: str = "Send a notification for high priority issues", *,
        legacy: bool | None = None, release: str | None = None,
    ) -> dict[str, Any]:
        """An event of the issue fires an issue-alert rule whose action is our integration:
        `event_alert.triggered` with `data.event` (issue_id, issue_url, web_url, ...) and the rule.
        `release`: the version the event names (its `release` and `sentry:release` tag, as the
        stored event has them; the issue's `lastRelease` from then on).
        `legacy` (default: the `legacy_event_alerts` switch) sends the body of Sentry before January
        2022, which has no `issue_id`: getsentry/sentry#31222 added it to `_webhook_event_data`, so
        older self-hosted versions name the issue only in `issue_url` (.../api/0/issues/<id>/) and
        `web_url`."""
        with self._lock:
            issue = self._get(issue_id)
            if release is not None:
                issue.last_release = release
            self._new_event(issue)
            event_id = uuid.uuid4().hex
            slug = issue.project.slug
            tags = [[key, values[0].value] for key, values in issue.tags.items() if values]
            if issue.last_release:
                tags.append(["sentry:release", issue.last_release])
            event = {
                "event_id": event_id,
                "issue_id": str(issue.id),
                "issue_url": f"{self.url}/api/0/issues/{issue.id}/",
                "url": f"{self.url}/api/0/projects/{self.org}/{slug}/events/{event_id}/",
                "web_url": self._web(f"/organizations/{self.org}/issues/{issue.id}/events/{event_id}/"),
                "project": issue.project.id,
                "title": issue.title,
                "culprit": issue.culprit,
                "level": issue.level,
                "platform": issue.platform,
                "logger": issue.logger,
                "type": "error",
                "metadata": dict(issue.metadata),
                "message": "",
                "datetime": iso(issue.last_seen),
                "timestamp": issue.last_seen / 1000,
                "tags": tags,
                "location": issue.culprit,
            }
            if issue.last_release:
                event["release"] = issue.last_release
            if self.legacy_event_alerts if legacy is None else legacy:
                del event["issue_id"]
            data: dict[str, Any] = {"event": event, "triggered_rule": rule}
            settings = self.screens.alert_rules.get(rule)
            if settings is not None:
                # A rule whose action is the integration with settings (alert-rule-action): Sentry's
                # notify_sentry_app adds them as issue_alert (sentry_apps/tasks/sentry_apps.py).
                data["issue_alert"] = {"id": abs(hash(rule)) % 10_000, "title": rule, "sentry_app_id": 1,
                                       "settings": [dict(item) for item in settings]}
            self._emit("event_alert", "triggered", data, SENTRY_ACTOR)
            return event

    def install(
        self, *, by: str = "alice@example.com", installation_uuid: str | None = None
    ) -> dict[str, Any]:
        """A person installs the integration (again): `installation.created`, signed like every
        webhook, with the installation as Sentry serializes it. `installation_uuid` gives the new
        installation another uuid (a reinstall is a new installation on the real server)."""
        with self._lock:
            if installation_uuid is not None:
                self.installation_uuid = installation_uuid
            self._installed, self._token_revoked = True, False
            body = self._installation_body("installed")
            self._emit("installation", "created", {"installation": body}, self._person(by).actor())
            return body

    def uninstall(self, *, by: str = "alice@example.com", revoke_token: bool = False) -> dict[str, Any]:
        """A person uninstalls the integration: `installation.deleted` (status pending_deletion, as
        installation_details.py marks it before notifying), then no more webhooks; the
        external-issue endpoints answer 404 for the installation and the other endpoints 403.
        `revoke_token`: the token is gone too (an internal integration deleted outright), so every
        call answers 401."""
        with self._lock:
            body = self._installation_body("pending_deletion")
            self._emit("installation", "deleted", {"installation": body}, self._person(by).actor())
            self._installed = False
            self._token_revoked = revoke_token
            return body

    def _installation_body(self, status: str) -> dict[str, Any]:
        # SentryAppInstallationSerializer (sentry_apps/api/serializers/sentry_app_installation.py);
        # `code` only for apps installed through an OAuth grant, which an internal integration is not.
        return {"app": {"uuid": self.app_id, "slug": self.app_slug, "sentryAppId": 1},
                "organization": {"slug": self.org, "id": 1}, "uuid": self.installation_uuid, "status": status}

    def merge(self, source_ids: Sequence[str | int], target_id: str | int) -> dict[str, Any]:
        """A person merges issues into `target_id` (same project). Reads of a merged-away id answer
        the target (a different `id` than asked: GroupEndpoint.convert_args serves the redirect's
        data rather than redirecting); `group=` and bulk `id=` no longer find it. Sentry sends no
        webhook for a merge: receivers/sentry_apps.py connects no merge signal."""
        with self._lock:
            target = self._get(target_id, follow_merge=False)
            sources = [self._get(i, follow_merge=False) for i in dict.fromkeys(source_ids)]
            sources = [source for source in sources if source is not target]
            try:
                self._merge(sources, target)
            except Reply as refused:
                raise ValueError(refused.body["detail"]) from None
            return self._render(target)

    def send_legacy_event_alert(
        self, issue_id: str | int, rule: str = "Send a notification for high priority issues"
    ) -> dict[str, Any]:
        """`event_alert.triggered` as self-hosted Sentry before January 2022 sends it (no issue_id)."""
        return self.trigger_alert(issue_id, rule, legacy=True)

    # ------------------------------------------------------------------ internals: state

    def _add_user(self, name: str, email: str) -> User:
        user = User(len(self._users) + 1, name, email, email.split("@")[0] or name)
        self._users[user.id] = user
        return user

    def _add_team(self, slug: str) -> Team:
        team = Team(len(self._teams) + 1, slug)
        self._teams[team.id] = team
        return team

    def _get(self, issue_id: str | int, *, follow_merge: bool = True) -> Issue:
        """The issue; a merged-away id leads to the issue it was merged into, as Sentry's
        `get_group_with_redirect` does for every issue endpoint (GroupRedirect)."""
        try:
            wanted = int(issue_id)
        except (ValueError, TypeError):
            raise KeyError(issue_id) from None
        while follow_merge and wanted in self._redirects:
            wanted = self._redirects[wanted]
        return self._issues[wanted]

    def add_project(self, slug: str, platform: str = "python") -> None:
        """A project with no issues yet (an organisation's other projects, for multi-project gates)."""
        with self._lock:
            self._project(slug, platform)

    def _project(self, slug: str, platform: str) -> Project:
        project = self._projects.get(slug)
        if project is None:
            project = Project(len(self._projects) + 1, slug, slug, platform)
            self._projects[slug] = project
        return project

    def _new_issue(
        self,
        *,
        project: str = "billing-api",
        title: str = "ZeroDivisionError: division by zero",
        culprit: str = "billing.invoices in compute_total",
        level: str = "error",
        platform: str = "python",
        count: int = 1,
        user_count: int = 1,
        tags: TagSpec | None = None,
        first_seen: datetime | float | str | None = None,
        now: float | None = None,
        shared_tags: TagTable | None = None,
    ) -> Issue:
        now = time.time() if now is None else now
        proj = self._project(project, platform)
        proj.short_counter += 1
        issue_id = self._next_issue_id
        self._next_issue_id += 1
        first = to_ms(first_seen, now)
        kind, sep, value = title.partition(": ")
        metadata = {"type": kind, "value": value} if sep else {"title": title}
        metadata["filename"] = culprit.split(" in ")[0].replace(".", "/") + ".py" if culprit else ""
        issue = Issue(
            id=issue_id,
            short_id=f"{proj.slug.upper()}-{base36(proj.short_counter)}",
            project=proj,
            title=title,
            culprit=culprit,
            level=level,
            platform=platform,
            logger="",
            metadata=metadata,
            status="unresolved",
            substatus="new",
            status_details={},
            first_seen=first,
            last_seen=max(first, int(now * 1000)) if first_seen is None else first,
            count=count,
            user_count=user_count,
            priority={"fatal": "high", "error": "high", "warning": "medium"}.get(level, "low"),
            is_unhandled=False,
        )
        if shared_tags is not None:
            issue.tags = shared_tags
        else:
            default: TagSpec = {"environment": ["production"], "level": [level]}
            issue.tags = tag_table(tags if tags is not None else default, count, issue.first_seen,
                                         issue.last_seen)
        return issue

    def _index(self, issue: Issue) -> None:
        self._issues[issue.id] = issue
        self._by_short_id[issue.short_id] = issue.id
        bisect.insort(self._date_keys, (issue.last_seen, issue.id))
        bisect.insort(self._new_keys, (issue.first_seen, issue.id))

    def _unindex(self, issue: Issue) -> None:
        for keys, key in ((self._date_keys, (issue.last_seen, issue.id)),
                          (self._new_keys, (issue.first_seen, issue.id))):
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]

    def _new_event(self, issue: Issue) -> None:
        self._unindex(issue)
        issue.last_seen = max(issue.last_seen + 1, int(time.time() * 1000))
        issue.count += 1
        bisect.insort(self._date_keys, (issue.last_seen, issue.id))
        bisect.insort(self._new_keys, (issue.first_seen, issue.id))

    def _merge(self, sources: Sequence[Issue], target: Issue) -> None:
        """Sentry's merge task (tasks/merge.py): the target takes the sources' events (counts, first
        and last seen, tag values), notes and an assignee it lacks; the sources' external-issue links
        go with them (PlatformExternalIssue is not among the merged models); each source id then
        redirects to the target (GroupRedirect) and is gone from lists and group= lookups."""
        if any(source.project is not target.project for source in sources):
            raise Reply(400, {"detail": "Merging across multiple projects is not supported"})
        self._unindex(target)
        for source in sources:
            self._unindex(source)
            del self._issues[source.id]
            self._by_short_id.pop(source.short_id, None)
            self._redirects[source.id] = target.id
            target.first_seen = min(target.first_seen, source.first_seen)
            target.last_seen = max(target.last_seen, source.last_seen)
            target.count += source.count
            target.user_count += source.user_count
            target.notes = sorted(target.notes + source.notes, key=lambda note: note["_at"])
            if target.assignee is None:
                target.assignee = source.assignee
            target.tags = merged_tags(target.tags, source.tags)
        self._index(target)

    def _person(self, who: str) -> User:
        target = self._owner(who if ":" in who else f"user:{who}", create=True)
        assert target is not None
        return self._users[target[1]]

    def _known_owner(self, owner: str) -> tuple[str, int] | None:
        return self._owner(owner, create=False)

    def _owner(self, owner: str | None, *, create: bool) -> tuple[str, int] | None:
        """`user:<id|email|username>`, `team:<id|slug>`, `#slug`, or a bare e-mail/username."""
        if not owner:
            return None
        kind, sep, ref = owner.partition(":")
        if not sep:
            kind, ref = ("team", owner[1:]) if owner.startswith("#") else ("user", owner)
        if kind == "team":
            for team in self._teams.values():
                if ref in (str(team.id), team.slug):
                    return ("team", team.id)
            if create and not ref.isdigit():
                return ("team", self._add_team(ref).id)
        elif kind == "user":
            for user in self._users.values():
                if ref in (str(user.id), user.email, user.username, user.name):
                    return ("user", user.id)
            if create and not ref.isdigit():
                email = ref if "@" in ref else f"{ref}@example.com"
                return ("user", self._add_user(ref.split("@")[0].title(), email).id)
        if create:
            raise ValueError(f"cannot resolve owner {owner!r}")
        return None

    def _assigned_to(self, target: tuple[str, int] | None) -> dict[str, Any] | None:
        if target is None:
            return None
        if target[0] == "team":
            team = self._teams[target[1]]
            return {"type": "team", "id": str(team.id), "name": team.slug}
        user = self._users[target[1]]
        return {"type": "user", "id": str(user.id), "name": user.name, "email": user.email}

    def _assignee_hook_data(self, target: tuple[str, int]) -> dict[str, Any]:
        if target[0] == "team":
            team = self._teams[target[1]]
            return {"type": "team", "name": team.slug, "id": team.id}
        user = self._users[target[1]]
        data: dict[str, Any] = {"type": "user", "name": user.name, "id": user.id}
        if not self.enhanced_privacy:
            data["email"] = user.email
        return data

    # ------------------------------------------------------------------ internals: changes

    def _reopen(self, issue: Issue, substatus: str) -> None:
        """Sentry reopens the issue itself (a regression, an escalation): `issue.unresolved`."""
        set_status(issue, "unresolved", substatus)
        if substatus == "escalating":
            issue.priority = escalated_priority(issue)
        self._issue_hook(issue, "unresolved", SENTRY_ACTOR)

    def _assign(self, issue: Issue, target: tuple[str, int] | None) -> list[tuple[str, dict[str, Any]]]:
        if target == issue.assignee:
            return []
        issue.assignee = target
        if target is None:
            return []
        return [("assigned", {"assignee": self._assignee_hook_data(target)})]

    def _apply(self, issue: Issue, update: _Update, actor: dict[str, Any], actor_user: User) -> None:
        hooks: list[tuple[str, dict[str, Any]]] = []
        if update.priority is not None:
            # update.py handle_priority: set, and locked against automatic changes; no webhook.
            issue.priority, issue.priority_locked_at = update.priority, int(time.time() * 1000)
        if update.status is not None:
            echoes = Echoes(self.send_archived_alias, self.webhook_on_unignore, self.resend_on_noop_resolve)
            hooks += change_status(issue, update.status, update.details, update.substatus,
                                   actor_user.serialize(), echoes)
        if update.assign:
            hooks += self._assign(issue, update.target)
        for action, extra in hooks:
            self._issue_hook(issue, action, actor, extra)

    def _person_update(self, issue_id: str | int, by: str, update: _Update) -> dict[str, Any]:
        with self._lock:
            issue = self._get(issue_id)
            user = self._person(by)
            self._apply(issue, update, user.actor(), user)
            return self._render(issue)

    def _app_actor(self) -> dict[str, Any]:
        return {"type": "application", "id": self.app_id, "name": self.app_name}

    def _add_note(self, issue: Issue, text: str, user: User, *, check_duplicate: bool) -> dict[str, Any]:
        now = time.time()
        if check_duplicate:
            for note in issue.notes:
                if (note["user"] or {}).get("id") == str(user.id) and note["data"]["text"] == text \
                        and now - note["_at"] < NOTE_DUPLICATE_WINDOW:
                    raise Reply(400, {"detail": "You have already posted that comment."})
        note_id = self._next_note_id
        self._next_note_id += 1
        created = iso(int(now * 1000))
        note = {"id": str(note_id), "user": user.serialize(), "type": "note", "data": {"text": text},
                "dateCreated": created, "_at": now}
        issue.notes.append(note)
        self._comment_hook(issue, note, "created", user)
        return self._public_note(note)

    def _comment_hook(self, issue: Issue, note: Mapping[str, Any], action: str, user: User) -> None:
        # tasks/sentry_apps.py build_comment_webhook; the timestamp is the note's own (note.datetime),
        # also on updated/deleted. A note our token wrote comes back with our app as the actor.
        actor = self._app_actor() if user is self._proxy else user.actor()
        data = {"comment_id": int(note["id"]), "issue_id": issue.id, "project_slug": issue.project.slug,
                "timestamp": note["dateCreated"], "comment": note["data"]["text"]}
        self._emit("comment", action, data, actor)

    @staticmethod
    def _own_note(issue: Issue, note_id: str | int, user: User) -> dict[str, Any] | None:
        """The note, when `user` wrote it: Sentry lets only the author edit or delete a note
        (group_notes_details.py filters on user_id), anyone else gets a 404."""
        for note in issue.notes:
            if note["id"] == str(note_id) and (note["user"] or {}).get("id") == str(user.id):
                return note
        return None

    def _person_changes_note(
        self, issue_id: str | int, note_id: str | int, text: str | None, by: str
    ) -> dict[str, Any]:
        issue, user = self._get(issue_id), self._person(by)
        note = self._own_note(issue, note_id, user)
        if note is None:
            raise ValueError(f"{by} wrote no note {note_id} on issue {issue_id}")
        self._change_note(issue, note, text, user)
        return self._public_note(note)

    def _change_note(self, issue: Issue, note: dict[str, Any], text: str | None, user: User) -> None:
        """Edit (`text`) or delete (None) a note: `comment.updated` / `comment.deleted`."""
        if text is None:
            issue.notes.remove(note)
            self._comment_hook(issue, note, "deleted", user)
        else:
            note["data"] = {**note["data"], "text": text}
            self._comment_hook(issue, note, "updated", user)

    @staticmethod
    def _public_note(note: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in note.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ internals: rendering, webhooks

    def _permalink(self, issue: Issue) -> str:
        return self._web(f"/organizations/{self.org}/issues/{issue.id}/")

    def _web(self, path: str) -> str:
        """A page of Sentry's web UI. On SaaS customer domains the organisation has a host of its own
        and the path drops its /organizations/<slug> part (getsentry/sentry `utils/http.py
        customer_domain_path`); the API stays on the region's host (`url`)."""
        if self.organization_url is None:
            return f"{self.url}{path}"
        return self.organization_url + re.sub(r"^/organizations/[^/]+", "", path)

    def _render(self, issue: Issue) -> dict[str, Any]:
        rendered = self._serialize(issue)
        if not self.issue_priority:
            del rendered["priority"], rendered["priorityLockedAt"]
        return rendered

    def _serialize(self, issue: Issue) -> dict[str, Any]:
        project = issue.project
        return {
            "id": str(issue.id),
            "shareId": None,
            "shortId": issue.short_id,
            "title": issue.title,
            "culprit": issue.culprit,
            "permalink": self._permalink(issue),
            "logger": issue.logger or None,
            "level": issue.level,
            "status": issue.status,
            "statusDetails": status_details(issue),
            "substatus": issue.substatus,
            "isPublic": False,
            "platform": issue.platform,
            "priority": issue.priority,
            "priorityLockedAt": iso(issue.priority_locked_at) if issue.priority_locked_at else None,
            "project": {"id": str(project.id), "name": project.name, "slug": project.slug,
                        "platform": project.platform},
            "type": "error",
            "issueType": "error",
            "issueCategory": "error",
            "metadata": dict(issue.metadata),
            "numComments": len(issue.notes),
            "assignedTo": self._assigned_to(issue.assignee),
            "isBookmarked": False,
            "isSubscribed": False,
            "subscriptionDetails": None,
            "hasSeen": False,
            "annotations": [
                {"displayName": e["displayName"], "url": e["webUrl"]} for e in issue.external.values()
            ],
            "isUnhandled": issue.is_unhandled,
            "count": str(issue.count),
            "userCount": issue.user_count,
            "firstSeen": iso(issue.first_seen),
            "lastSeen": iso(issue.last_seen),
        }

    def _issue_hook(
        self, issue: Issue, action: str, actor: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None, *, with_urls: bool = False,
    ) -> None:
        rendered = self._render(issue)
        if with_urls:
            rendered["url"] = f"{self.url}/api/0/organizations/{self.org}/issues/{issue.id}/"
            rendered["web_url"] = self._permalink(issue)
            project_page = f"/organizations/{self.org}/issues/?project={issue.project.id}"
            rendered["project_url"] = self._web(project_page)
        if action == "unresolved" and not self.unresolved_webhooks:
            return  # before getsentry/sentry#69994 (May 2024) there was no issue.unresolved at all
        data = dict(extra or {})
        data["issue"] = rendered
        self._emit("issue", action, data, actor)

    def _emit(self, resource: str, action: str, data: dict[str, Any], actor: Mapping[str, Any]) -> None:
        if not self._installed:
            return  # webhooks go to installed apps only (receivers/sentry_apps.py installations_to_notify)
        # Sentry's key order: action, installation, data, actor (AppPlatformEvent.body).
        payload = {"action": action, "installation": {"uuid": self.installation_uuid}, "data": data,
                   "actor": dict(actor)}
        body = compact_json(payload)
        self._outbox.append((resource, payload))

        def headers() -> dict[str, str]:
            # A new Request-ID and timestamp on every attempt, as Sentry's retried task builds them anew.
            return {
                "Content-Type": "application/json",
                "Request-ID": uuid.uuid4().hex,
                "Sentry-Hook-Resource": resource,
                "Sentry-Hook-Timestamp": str(int(time.time())),
                "Sentry-Hook-Signature": hmac_sha256_hex(self.client_secret, body),
            }

        self.webhooks.send(headers(), body, refresh=headers)

    # ------------------------------------------------------------------ internals: rate limits

    def _count_request(self) -> tuple[list[tuple[bytes, bytes]], bool]:
        now = time.time()
        window = int(now // self.rate_window)
        with self._rate_lock:
            if window != self._rate_window_id:
                self._rate_window_id, self._rate_count = window, 0
            self._rate_count += 1
            self._inflight += 1
            count, inflight = self._rate_count, self._inflight
        reset = int((window + 1) * self.rate_window)
        headers = [
            (b"x-sentry-rate-limit-limit", str(self.rate_limit).encode()),
            (b"x-sentry-rate-limit-remaining", str(max(0, self.rate_limit - count)).encode()),
            (b"x-sentry-rate-limit-reset", str(reset).encode()),
            (b"x-sentry-rate-limit-concurrentlimit", str(self.concurrent_limit).encode()),
            (b"x-sentry-rate-limit-concurrentremaining",
             str(max(0, self.concurrent_limit - inflight)).encode()),
        ]
        return headers, count > self.rate_limit

    def _request_done(self) -> None:
        with self._rate_lock:
            self._inflight -= 1

    # ------------------------------------------------------------------ HTTP

    def _routes(self) -> list[Route]:
        """Every route under `path_prefix` + /api/0/. Issue routes answer on both the organisation's
        path and the older organisation-less /issues/{id}/ one, as the real server does."""
        issue_routes: list[tuple[str, str, Callable[[Request], Any]]] = [
            ("GET", "", self._get_issue),
            ("PUT", "", self._put_issue),
            ("GET", "tags/", self._tags),
            ("GET", "tags/{key}/values/", self._tag_values),
            ("GET", "notes/", self._list_notes),
            ("POST", "notes/", self._post_note),
            ("PUT", "notes/{note_id}/", self._put_note),
            ("DELETE", "notes/{note_id}/", self._delete_note),
            ("GET", "external-issues/", self._list_external_issues),
        ]
        table: list[tuple[str, str, Callable[[Request], Any]]] = [
            ("GET", "organizations/{org}/", self._get_organization),
            ("GET", "organizations/{org}/issues/", self._list_issues),
            ("GET", "organizations/{org}/projects/", self._list_projects),
            ("PUT", "organizations/{org}/issues/", self._bulk_update),
            ("POST", "sentry-app-installations/{uuid}/external-issues/", self._post_external_issue),
            ("DELETE", "sentry-app-installations/{uuid}/external-issues/{external_id}/",
             self._delete_external_issue),
        ]
        for base in ("organizations/{org}/issues/{issue_id}/", "issues/{issue_id}/"):
            table += [(method, base + tail, handler) for method, tail, handler in issue_routes]
        api = f"{self.path_prefix}/api/0/"
        return [Route(api + path, self._endpoint(handler), methods=[method])
                for method, path, handler in table]

    def _endpoint(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                self._authenticate(request)
                if self.enforce_rate_limit and request.scope.get("fake_sentry_over_limit"):
                    raise Reply(429, {"detail": "You are attempting to use this endpoint too frequently. "
                                                 f"Limit is {self.rate_limit} requests in "
                                                 f"{self.rate_window:g} seconds"})
                org = request.path_params.get("org")
                if org is not None and org != self.org:
                    raise Reply(404, NOT_FOUND)
                if not self._installed and "uuid" not in request.path_params:
                    # The proxy user of an app no longer installed has no access to the organisation:
                    # access.py `_from_sentry_app` answers NoAccess, so permission checks fail.
                    raise Reply(403, FORBIDDEN)
                response: Response = await handler(request)
                return response
            except Reply as reply:
                return reply.response()

        return endpoint

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise Reply(401, {"detail": "Authentication credentials were not provided."})
        scheme, _, value = header.partition(" ")
        matches = hmac.compare_digest(value.strip().encode(), self.token.encode())
        if scheme.lower() != "bearer" or not matches or self._token_revoked:
            raise Reply(401, {"detail": "Invalid token"})

    def _issue_from_path(self, request: Request) -> Issue:
        try:
            return self._get(request.path_params["issue_id"])
        except KeyError:
            raise Reply(404, NOT_FOUND) from None

    async def _read_json(self, request: Request) -> Any:
        data = await json_body(request)
        if data is None:
            raise Reply(400, {"detail": "JSON parse error - Expecting value: line 1 column 1 (char 0)"})
        return data

    async def _get_organization(self, request: Request) -> Response:
        # OrganizationSerializer: `links` since regions (2023); `features` (names without the
        # "organizations:" prefix) only with include_feature_flags in newer versions.
        body: dict[str, Any] = {
            "id": "1", "slug": self.org, "name": self.org.title(),
            "status": {"id": "active", "name": "active"},
            "links": {"organizationUrl": self.organization_url or self.url, "regionUrl": self.url},
        }
        if request.query_params.get("include_feature_flags", "0") not in ("0", ""):
            body["features"] = ["global-views"] if self.global_views else []
        return JSONResponse(body)

    async def _list_projects(self, request: Request) -> Response:
        # OrganizationProjectsEndpoint: the projects the caller can see (the integration's proxy user
        # sees all), paginated by 100; a fake organisation fits in one page.
        with self._lock:
            body = [{"id": str(p.id), "slug": p.slug, "name": p.name, "platform": p.platform,
                     "hasAccess": True, "isMember": True} for p in self._projects.values()]
        return JSONResponse(body, headers={"Link": self._last_page_link(request)})

    async def _get_issue(self, request: Request) -> Response:
        # The details endpoint (api/endpoints/group_details.py) adds the first and last release,
        # which neither lists nor webhooks carry; `collapse=release` leaves them out.
        collapsed = "release" in request.query_params.getlist("collapse")
        with self._lock:
            issue = self._issue_from_path(request)
            rendered = self._render(issue)
            if not collapsed:
                rendered["firstRelease"] = _release_json(issue.first_release, issue.first_seen)
                rendered["lastRelease"] = _release_json(issue.last_release, issue.last_seen)
            return JSONResponse(rendered)

    def _parse_update(self, data: Any) -> _Update:
        if not isinstance(data, Mapping):
            raise Reply(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        update = _Update()
        status = data.get("status")
        if status is not None:
            if status not in UPDATE_STATUSES:
                raise Reply(400, {"status": [f'"{status}" is not a valid choice.']})
            update.status = "ignored" if status == "muted" else str(status)
        details = data.get("statusDetails", {})
        if details is None:
            details = {}
        if not isinstance(details, Mapping):
            raise Reply(400, {"statusDetails": ["Expected a dictionary of items."]})
        update.details = dict(details)
        substatus = data.get("substatus")
        if substatus is not None:
            if substatus not in IGNORED_SUBSTATUSES | UNRESOLVED_SUBSTATUSES:
                raise Reply(400, {"substatus": [f'"{substatus}" is not a valid choice.']})
            update.substatus = str(substatus)
        if "assignedTo" in data:
            owner = data["assignedTo"]
            if owner is not None and not isinstance(owner, str):
                raise Reply(400, {"assignedTo": ["Unknown actor input"]})
            update.assign = True
            update.target = self._owner(owner, create=False)
            if owner and update.target is None:
                raise Reply(400, {"assignedTo": ["Unknown actor input"]})
        if "priority" in data and self.issue_priority:  # older versions ignore the unknown field
            if data["priority"] not in PRIORITIES:
                raise Reply(400, {"priority": [f'"{data["priority"]}" is not a valid choice.']})
            update.priority = str(data["priority"])
        if "merge" in data:
            if not isinstance(data["merge"], (bool, int)):
                raise Reply(400, {"merge": ["Must be a valid boolean."]})
            update.merge = bool(data["merge"])
        return update

    async def _put_issue(self, request: Request) -> Response:
        data = await self._read_json(request)
        with self._lock:
            issue = self._issue_from_path(request)
            update = self._parse_update(data)
            self._apply(issue, update, self._app_actor(), self._proxy)
            return JSONResponse(self._render(issue))

    async def _bulk_update(self, request: Request) -> Response:
        data = await self._read_json(request)
        raw_ids = request.query_params.getlist("id")
        with self._lock:
            # The bulk PUT checks the projects it spans like the list (organization_group_index.py put).
            projects = self._projects_in_scope(request)
            update = self._parse_update(data)
            if raw_ids:
                # Ids outside the projects, or merged away, are skipped: "If any ids are out of
                # scope this operation will succeed without any data mutation" (group_index/update.py).
                targets = self._issues_by_ids(raw_ids, projects)
            else:
                # No date window here: the bulk change searches without date_from/date_to.
                targets, _, _ = self._search(request.query_params, projects=projects, window=None,
                                             limit=BULK_MUTATION_LIMIT, cursor=None)
            if not targets:
                return Response(status_code=204)
            for issue in targets:
                self._apply(issue, update, self._app_actor(), self._proxy)
            # A delta, not the issues (update.py update_groups/prepare_response): the fields asked for,
            # with the status details and inbox Sentry settled on; the single-issue PUT re-reads and
            # answers the whole issue instead (group_details.py put).
            result: dict[str, Any] = {}
            if update.status is not None:
                last = self._render(targets[-1])
                result.update(status=last["status"], statusDetails=last["statusDetails"])
                if update.status != "unresolved":
                    result["inbox"] = None
            if update.substatus is not None:
                result["substatus"] = update.substatus
            if update.priority is not None:
                result["priority"] = update.priority
            if update.assign:
                result["assignedTo"] = self._assigned_to(update.target)
            if update.merge and len(targets) > 1:
                # issues/merge.py handle_merge: the issue seen most often (then the highest id) survives.
                parent, *children = sorted(targets, key=lambda i: (i.count, i.id), reverse=True)
                self._merge(children, parent)
                result["merge"] = {"parent": str(parent.id), "children": [str(c.id) for c in children]}
            return JSONResponse(result)

    async def _list_issues(self, request: Request) -> Response:
        # In the order of getsentry/sentry organization_group_index.py `get`: the date range, the
        # projects (and the multi-project gate), a short-id direct hit, `group=`, then the search.
        params = request.query_params
        window = search_window(params, default=DEFAULT_PERIOD if self.default_search_window else None)
        with self._lock:
            projects = self._projects_in_scope(request)
            if not projects:
                return JSONResponse([])
            query = params.get("query", "is:unresolved").strip()
            # "we ignore date range for both short id and event ids"
            direct = self._by_short_id.get(query.upper()) if query else None
            if direct is not None:
                hit = [self._render(self._issues[direct])]
                return JSONResponse(hit, headers={"X-Sentry-Direct-Hit": "1"})
            group_ids = params.getlist("group")
            if group_ids:
                # "If group ids specified, just ignore any query components": no window, no paging;
                # only the projects in scope, and a merged-away id is simply not there.
                found = self._issues_by_ids(group_ids, projects)
                return JSONResponse([self._render(i) for i in found])
            try:
                limit = min(MAX_PAGE, max(1, int(params.get("limit", MAX_PAGE))))
            except ValueError:
                raise Reply(400, {"detail": "Invalid limit"}) from None
            cursor = params.get("cursor")
            found, prev_link, next_link = self._search(params, projects=projects, window=window,
                                                       limit=limit, cursor=cursor)
            body = [self._render(i) for i in found]
        link = ", ".join(
            [self._link(request, "previous", *prev_link), self._link(request, "next", *next_link)]
        )
        return JSONResponse(body, headers={"Link": link})

    def _last_page_link(self, request: Request) -> str:
        """The Link header of a list that fits in one page."""
        return ", ".join([self._link(request, "previous", "0:0:1", False),
                          self._link(request, "next", "0:100:0", False)])

    def _link(self, request: Request, rel: str, cursor: str, has_results: bool) -> str:
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "cursor"])
        # request.url.path holds the path prefix already: build on the origin, not on `url`.
        base = f"{self.origin}{request.url.path}?{query}" if query else f"{self.origin}{request.url.path}?"
        results = "true" if has_results else "false"
        return f'<{base}&cursor={cursor}>; rel="{rel}"; results="{results}"; cursor="{cursor}"'

    def _projects_in_scope(self, request: Request) -> list[Project]:
        """The projects a list or bulk change spans, as getsentry/sentry `OrganizationEndpoint.get_projects`
        picks them: the `project=` ids given, or all of them for `-1` or none (an integration's
        proxy user is a member of every team: `access.py _from_sentry_app`). Without multi-project
        views, more than one is refused (`organizations:global-views`, organization_group_index.py)."""
        try:
            ids = {int(p) for p in request.query_params.getlist("project")}
        except ValueError:
            raise Reply(400, {"detail": "Invalid project parameter. Values must be numbers."}) from None
        projects = list(self._projects.values())
        if ids and -1 not in ids:
            projects = [p for p in projects if p.id in ids]
            if len(projects) != len(ids):  # _validate_fetched_projects: a project we cannot see
                raise Reply(403, FORBIDDEN)
        if len(projects) > 1 and not self.global_views:
            raise Reply(400, MULTI_PROJECT_REFUSED)
        return projects

    def _issues_by_ids(self, raw_ids: Sequence[str], projects: Sequence[Project]) -> list[Issue]:
        try:
            wanted = [int(i) for i in raw_ids]
        except ValueError:
            raise Reply(400, {"detail": "Group ids must be integers"}) from None
        in_scope = {p.id for p in projects}
        found = (self._issues.get(i) for i in dict.fromkeys(wanted))
        return [issue for issue in found if issue is not None and issue.project.id in in_scope]

    def _search(
        self, params: QueryParams, *, projects: Sequence[Project], window: tuple[int, int] | None,
        limit: int, cursor: str | None,
    ) -> tuple[list[Issue], tuple[str, bool], tuple[str, bool]]:
        """One page of the issue search, newest first: (issues, (prev cursor, has results), (next ...))."""
        checks = [compile_query(params.get("query", "is:unresolved"), self._known_owner)]
        if len(projects) < len(self._projects):
            in_scope = {p.id for p in projects}
            checks.append(lambda issue: issue.project.id in in_scope)
        if window is not None:
            checks.append(seen_within(window))

        def predicate(issue: Issue) -> bool:
            return all(check(issue) for check in checks)

        sort = params.get("sort", "date")
        if sort == "date":
            keys = self._date_keys
        elif sort == "new":
            keys = self._new_keys
        elif sort in ("freq", "user", "priority", "trends"):
            attr = "user_count" if sort == "user" else "count"
            keys = sorted((getattr(i, attr), i.id) for i in self._issues.values())
        else:
            raise Reply(400, {"detail": f"Invalid sort: {sort}"})
        return keyset_page(keys, self._issues, predicate, sort, limit=limit, cursor=cursor)

    # ------------------------------------------------------------------ tags, notes, external issues

    async def _tags(self, request: Request) -> Response:
        # GroupTagsEndpoint: the top 10 values of each key, 9 when keys are named ("for the tag
        # distribution bars"), or `limit`. A rarer value is only in .../tags/{key}/values/.
        wanted = set(request.query_params.getlist("key"))
        try:
            top = int(request.query_params.get("limit", 9 if wanted else 10))
        except ValueError:
            raise Reply(400, {"detail": "Invalid limit"}) from None
        with self._lock:
            issue = self._issue_from_path(request)
            body = [
                tag_key_json(key, values, top)
                for key, values in sorted(issue.tags.items())
                if not wanted or key in wanted
            ]
        return JSONResponse(body)

    async def _tag_values(self, request: Request) -> Response:
        key = request.path_params["key"]
        with self._lock:
            issue = self._issue_from_path(request)
            if key not in issue.tags:
                raise Reply(404, NOT_FOUND)
            ordered = values_in_order(issue.tags[key], request.query_params.get("sort"))
        # An offset paginator's cursor, `<per page>:<page>:<is_prev>` (api/paginator.py OffsetPaginator).
        params = request.query_params
        try:
            per_page = min(MAX_PAGE, max(1, int(params.get("per_page", MAX_PAGE))))
            page = int(params["cursor"].split(":")[1]) if params.get("cursor") else 0
        except (ValueError, IndexError):
            raise Reply(400, {"detail": "Invalid cursor parameter."}) from None
        body = [tag_value_json(key, v) for v in ordered[page * per_page:(page + 1) * per_page]]
        more = len(ordered) > (page + 1) * per_page
        link = ", ".join([self._link(request, "previous", f"{per_page}:{max(page - 1, 0)}:1", page > 0),
                          self._link(request, "next", f"{per_page}:{page + 1}:0", more)])
        return JSONResponse(body, headers={"Link": link})

    async def _list_notes(self, request: Request) -> Response:
        with self._lock:
            issue = self._issue_from_path(request)
            body = [self._public_note(n) for n in reversed(issue.notes)]
        return JSONResponse(body)

    async def _note_text(self, request: Request) -> str:
        data = await self._read_json(request)
        text = data.get("text") if isinstance(data, Mapping) else None
        if not isinstance(text, str) or not text.strip():
            raise Reply(400, {"text": ["This field is required."]})
        return text

    def _our_note(self, request: Request) -> tuple[Issue, dict[str, Any]]:
        issue = self._issue_from_path(request)
        note = self._own_note(issue, request.path_params["note_id"], self._proxy)
        if note is None:
            raise Reply(404, NOT_FOUND)
        return issue, note

    async def _post_note(self, request: Request) -> Response:
        text = await self._note_text(request)
        with self._lock:
            issue = self._issue_from_path(request)
            note = self._add_note(issue, text, self._proxy, check_duplicate=True)
        return JSONResponse(note, status_code=201)

    def _check_installation(self, request: Request) -> None:
        # SentryAppInstallationBaseEndpoint.convert_args (sentry_apps/api/bases/sentryapps.py): an
        # unknown or deleted installation is a 404, before any permission check.
        if request.path_params["uuid"] != self.installation_uuid or not self._installed:
            raise Reply(404, {"detail": "Could not find given sentry app installation"})

    async def _put_note(self, request: Request) -> Response:
        text = await self._note_text(request)
        with self._lock:
            issue, note = self._our_note(request)
            self._change_note(issue, note, text, self._proxy)
            return JSONResponse(self._public_note(note))

    async def _delete_note(self, request: Request) -> Response:
        with self._lock:
            issue, note = self._our_note(request)
            self._change_note(issue, note, None, self._proxy)
        return Response(status_code=204)

    async def _post_external_issue(self, request: Request) -> Response:
        self._check_installation(request)
        data = await self._read_json(request)
        if not isinstance(data, Mapping):
            raise Reply(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        raw_id = data.get("issueId")
        with self._lock:
            try:
                if isinstance(raw_id, bool):
                    raise KeyError(raw_id)
                # Group.objects.get(id=issueId): no merge redirect here, unlike the issue endpoints.
                issue = self._get(raw_id, follow_merge=False)  # type: ignore[arg-type]
            except KeyError:
                raise Reply(404, {"detail": "Could not find issue from given groupId"}) from None
            errors: dict[str, list[str]] = {}
            web_url = data.get("webUrl")
            if not isinstance(web_url, str) or not web_url:
                errors["webUrl"] = ["This field is required."]
            elif urlsplit(web_url).scheme not in ("http", "https") or not urlsplit(web_url).netloc:
                errors["webUrl"] = ["Enter a valid URL."]
            for name in ("project", "identifier"):
                value = data.get(name)
                if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value):
                    errors[name] = ["This field is required."]
            if errors:
                raise Reply(400, errors)
            # update_or_create keyed on (issue, app): re-posting replaces the one link of this app.
            # Before getsentry/sentry#79844 (late 2024) it was a plain create, and the unique
            # (group, service_type) constraint made a second post an unhandled IntegrityError: a 500
            # with Sentry's body for unhandled errors (api/base.py handle_exception).
            existing = issue.external.get(self.app_slug)
            if existing is not None and not self.external_issue_upsert:
                raise Reply(500, {"detail": "Internal Error", "errorId": uuid.uuid4().hex})
            if existing is None:
                external_id = str(self._next_external_id)
                self._next_external_id += 1
            else:
                external_id = existing["id"]
            link = {
                "id": external_id,
                "issueId": str(issue.id),
                "serviceType": self.app_slug,
                "displayName": f"{html.escape(str(data['project']))}#{html.escape(str(data['identifier']))}",
                "webUrl": web_url,
            }
            issue.external[self.app_slug] = link
        return JSONResponse(link)

    async def _delete_external_issue(self, request: Request) -> Response:
        # installation_external_issue_details.py: only this app's links (service_type = its slug);
        # anything else is a bare 404.
        self._check_installation(request)
        external_id = request.path_params["external_id"]
        with self._lock:
            for issue in self._issues.values():
                link = issue.external.get(self.app_slug)
                if link is not None and link["id"] == external_id:
                    del issue.external[self.app_slug]
                    return Response(status_code=204)
        raise Reply(404)

    async def _list_external_issues(self, request: Request) -> Response:
        # GroupExternalIssuesEndpoint: every integration's links on the issue, paginated by id.
        with self._lock:
            issue = self._issue_from_path(request)
            body = sorted((dict(link) for link in issue.external.values()), key=lambda link: int(link["id"]))
        return JSONResponse(body, headers={"Link": self._last_page_link(request)})


def _release_json(version: str | None, at_ms: int) -> dict[str, Any] | None:
    """A release as group details shows one (GroupReleaseWithStatsSerializer's leading fields)."""
    if version is None:
        return None
    return {"version": version, "shortVersion": version, "ref": None, "url": None,
            "dateCreated": iso(at_ms), "dateReleased": None, "firstEvent": iso(at_ms),
            "lastEvent": iso(at_ms)}


def start_fake_sentry(
    *,
    org: str = "acme",
    token: str = "sentry-token",
    client_secret: str = "sentry-secret",
    app_id: str = DEFAULT_APP_ID,
    installation_uuid: str = DEFAULT_INSTALLATION_UUID,
    webhook_url: str | None = None,
    app_name: str = "syncer",
    port: int = 0,
    path_prefix: str = "",
    organization_url: str | None = None,
) -> FakeSentry:
    """Start a fake Sentry on 127.0.0.1 (`port=0`: any free port); `.url` is its base URL. See
    `FakeSentry` for `path_prefix` (self-hosted under a path) and `organization_url` (SaaS regions)."""
    return FakeSentry(
        org=org, token=token, client_secret=client_secret, app_id=app_id,
        installation_uuid=installation_uuid, app_name=app_name, webhook_url=webhook_url, port=port,
        path_prefix=path_prefix, organization_url=organization_url,
    ).start()


__all__ = ["SENTRY_ACTOR", "FakeSentry", "Fault", "start_fake_sentry"]
