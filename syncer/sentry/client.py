"""Our Sentry REST client (outbound): URL constants plus one-line methods over one `httpx.Client`.

It never retries: the caller (a Celery task) does, with backoff, on the errors this raises.
Every failure leaves as one of `syncer.errors` (transport exceptions by its table, `FAILURES`):

    answered non-2xx                  -> classify_http (429 waits per Retry-After, X-Sentry-Rate-Limit-Reset)
    could not connect (never sent)    -> TransientError
    sent, then timeout or lost answer -> AmbiguousError for writes (may have happened), else TransientError
    answer not JSON or not the shape  -> PermanentError
    malformed URL or id               -> PermanentError

The token lives only in the httpx client's default headers; messages name the method and path, never
headers (and any echo of the token in an error body is redacted).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from syncer.core.issue import SentryIssue
from syncer.errors import (
    PayloadError,
    PermanentError,
    TransientError,
    classify_failure,
    classify_http,
)
from syncer.payload import as_mapping
from syncer.ratelimit import Throttle
from syncer.sentry.parse import parse_issue

log = logging.getLogger(__name__)

SERVICE = "sentry"
BATCH_SIZE = 100  # Sentry's page size cap, and a URL length that stays well under proxies' limits
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Sentry refuses the same note text from the same user within an hour; after an ambiguous POST, a
# retry meeting this answer means the first attempt went through.
DUPLICATE_NOTE = "You have already posted that comment."

# getsentry/sentry src/sentry/issues/endpoints/organization_group_index.py (`get`; `put` likewise):
# without the `organizations:global-views` feature (Team and Developer plans) a list or `group=`
# lookup spanning more than one project answers 400 with this detail. One project per read works.
MULTI_PROJECT_REFUSED = "You do not have the multi project stream feature enabled"

_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def _segment(value: str | int, what: str) -> str:
    text = str(value)
    if not _SAFE_SEGMENT.fullmatch(text):
        raise PermanentError(f"{SERVICE}: {what} {text[:40]!r} is not a valid path segment")
    return text


def _issue_id(value: str | int) -> str:
    text = str(value)
    if not text.isdigit() or len(text) > 20:
        raise PermanentError(f"{SERVICE}: {text[:40]!r} is not a Sentry issue id")
    return text


def _has_rarer_values(entry: Mapping[str, Any], top: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a key of the tags list has values beyond the `top` ones shown."""
    unique = entry.get("uniqueValues")
    if isinstance(unique, int) and not isinstance(unique, bool):
        return unique > len(top)
    total = entry.get("totalValues")
    counts = [v.get("count") for v in top]
    if not isinstance(total, int) or not all(isinstance(c, int) for c in counts):
        return False
    return sum(c for c in counts if isinstance(c, int)) < total


def _iso(moment: datetime) -> str:
    """An absolute time as Sentry's `start`/`end` take it (api/utils.py get_date_range_from_params;
    search/utils.py parse_datetime_string drops the "Z" and reads UTC, in whole seconds or finer)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{aware.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def _throttle_hooks(throttle: Throttle) -> dict[str, list[Callable[..., Any]]]:
    def before(request: httpx.Request) -> None:
        throttle.before(request.method, str(request.url))

    def after(response: httpx.Response) -> None:
        request = response.request
        throttle.after(request.method, str(request.url), response.status_code, response.headers)

    return {"request": [before], "response": [after]}


class SentryClient:
    ISSUE = "organizations/{org}/issues/{issue_id}/"
    ISSUES = "organizations/{org}/issues/"
    PROJECTS = "organizations/{org}/projects/"
    ISSUE_TAGS = "organizations/{org}/issues/{issue_id}/tags/"
    ISSUE_TAG_VALUES = "organizations/{org}/issues/{issue_id}/tags/{key}/values/"
    ISSUE_NOTES = "organizations/{org}/issues/{issue_id}/notes/"
    EXTERNAL_ISSUES = "sentry-app-installations/{installation_uuid}/external-issues/"
    EXTERNAL_ISSUE = "sentry-app-installations/{installation_uuid}/external-issues/{external_id}/"
    # Organisation-less: the only form self-hosted versions older than the organisation-scoped
    # issue routes answer (GroupExternalIssuesEndpoint, api/endpoints/group_external_issues.py).
    ISSUE_EXTERNAL_ISSUES = "issues/{issue_id}/external-issues/"

    def __init__(
        self,
        base_url: str,
        org: str,
        token: str,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        """`base_url` is Sentry's address (`https://sentry.io`, a self-hosted URL, or a fake's `.url`);
        `/api/0/` is added unless it is already there. `throttle` (see `syncer.ratelimit`) is asked
        before every request, when given."""
        api = base_url.rstrip("/")
        if not api.endswith("/api/0"):
            api = f"{api}/api/0"
        self.base_url = base_url
        self.org = _segment(org, "organization")
        self.__token = token  # only to redact echoes of it
        self._http = httpx.Client(
            base_url=f"{api}/",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            event_hooks=_throttle_hooks(throttle) if throttle is not None else None,
        )
        self._requests = 0
        self._requests_lock = threading.Lock()
        # Learnt at the first read spanning projects: None until then, False on Team/Developer
        # plans (reads go one project at a time from then on). A run's own client learns once.
        self._multi_project: bool | None = None
        self._project_ids: dict[str, str] | None = None  # slug -> id, read once when needed

    def __repr__(self) -> str:
        return f"SentryClient({self.base_url!r}, org={self.org!r})"

    def __enter__(self) -> SentryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def requests_made(self) -> int:
        """Requests this client has sent (or tried to): what reconciliation reports as API calls."""
        return self._requests

    # ------------------------------------------------------------------ the API

    def get_issue(self, issue_id: str | int) -> SentryIssue:
        return self._issue(self._json("GET", self.ISSUE.format(org=self.org, issue_id=_issue_id(issue_id))))

    def find_issue(self, issue_id: str | int) -> SentryIssue | None:
        """The issue, or None when Sentry says there is none (deleted). A merged-away id answers the
        issue it was merged into, with that issue's id (GroupEndpoint follows GroupRedirect)."""
        try:
            return self.get_issue(issue_id)
        except PermanentError as error:
            if error.status == 404:
                return None
            raise

    def update_issue(
        self,
        issue_id: str | int,
        *,
        status: str | None = None,
        status_details: Mapping[str, Any] | None = None,
        assigned_to: str | None = None,
    ) -> SentryIssue:
        """`status`: resolved | resolvedInNextRelease | unresolved | ignored; `assigned_to`: `user:ID`,
        `team:ID`, or "" to unassign (None leaves the assignee alone)."""
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if status_details is not None:
            body["statusDetails"] = dict(status_details)
        if assigned_to is not None:
            body["assignedTo"] = assigned_to
        if not body:
            raise ValueError("update_issue needs status, status_details or assigned_to")
        path = self.ISSUE.format(org=self.org, issue_id=_issue_id(issue_id))
        return self._issue(self._json("PUT", path, json=body))

    @property
    def multi_project(self) -> bool | None:
        """Whether the organisation answers reads spanning projects; None before the first one."""
        return self._multi_project

    def issues_by_ids(
        self, ids: Sequence[str | int], *, projects: Mapping[str, str] | None = None
    ) -> list[SentryIssue]:
        """The issues that exist among `ids`, in the order asked. Sentry's `group=` lookup ignores the
        search query (so resolved and archived issues come back too); ids that are not numeric
        cannot exist and are skipped. `projects` (issue id -> project slug, as links store it) is
        what lets an organisation without multi-project reads be asked one project at a time:
        one request per project among the ids; an id whose project is not known there is left
        out (a direct read, `find_issue`, needs no project)."""
        wanted = list(dict.fromkeys(str(i) for i in ids if str(i).isdigit() and len(str(i)) <= 20))
        found: dict[str, SentryIssue] = {}
        for start in range(0, len(wanted), BATCH_SIZE):
            for issue in self._lookup(wanted[start : start + BATCH_SIZE], projects or {}):
                found[issue.id] = issue
        return [found[i] for i in wanted if i in found]

    def iter_issues(
        self, query: str, *, since: datetime, until: datetime | None = None, page_size: int = 100
    ) -> Iterator[SentryIssue]:
        """Every issue matching the search `query` (`""` for all) with events between `since` and
        `until` (now when None), newest first within a project, page by page. The range is always
        sent: a search naming none covers the last 90 days only (MAX_STATS_PERIOD)."""
        limit = max(1, min(page_size, BATCH_SIZE))
        # Whole seconds: the start rounded down and the end up, so the range never cuts its edges.
        end = (until or datetime.now(UTC)) + timedelta(seconds=1)
        params = [("query", query), ("limit", str(limit)), ("start", _iso(since)), ("end", _iso(end))]
        path = self.ISSUES.format(org=self.org)
        if self._multi_project is not False:
            pages = self._pages(path, [*params, ("project", "-1")])
            try:
                first = next(pages, None)
            except PermanentError as exc:
                if not self._refused_multi_project(exc):
                    raise
            else:
                self._multi_project = True
                if first is not None:
                    yield first
                yield from pages
                return
        for project_id in self._projects().values():
            yield from self._pages(path, [*params, ("project", project_id)])

    def issue_tags(self, issue_id: str | int) -> dict[str, list[str]]:
        """Tag key -> its most frequent values (Sentry's `topValues`, most frequent first)."""
        return self.issue_tag_listing(issue_id)[0]

    def issue_tag_listing(self, issue_id: str | int) -> tuple[dict[str, list[str]], set[str]]:
        """(tag key -> its most frequent values, the keys that have rarer values besides). The tags
        list shows only the top values of each key (issues/endpoints/group_tags.py: 10, or 9 when
        keys are named); TagKeySerializer (api/serializers/models/tag.py) gives `uniqueValues` (the
        number of distinct values) where known, and `totalValues` (events with the key) always."""
        raw = self._json("GET", self.ISSUE_TAGS.format(org=self.org, issue_id=_issue_id(issue_id)))
        if not isinstance(raw, list):
            raise PermanentError(f"{SERVICE} GET tags: answer is not a list")
        tags: dict[str, list[str]] = {}
        more: set[str] = set()
        for entry in raw:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
                continue
            top = entry.get("topValues")
            values = [v for v in (top if isinstance(top, list) else []) if isinstance(v, Mapping)]
            key = entry["key"]
            tags[key] = [v["value"] for v in values if isinstance(v.get("value"), str)]
            if _has_rarer_values(entry, values):
                more.add(key)
        return tags, more

    def issue_tag_values(self, issue_id: str | int, key: str) -> list[str]:
        """Every value of one tag key on the issue (`.../tags/{key}/values/`, 100 a page; Sentry
        stops at 1,000), most frequent first."""
        if not key or len(key) > 200:
            raise PermanentError(f"{SERVICE}: {key[:40]!r} is not a tag key")
        path = self.ISSUE_TAG_VALUES.format(
            org=self.org, issue_id=_issue_id(issue_id), key=quote(key, safe="")
        )
        return [
            item["value"]
            for item in self._list_pages(path, [("sort", "count"), ("per_page", str(BATCH_SIZE))])
            if isinstance(item, Mapping) and isinstance(item.get("value"), str)
        ]

    def post_note(self, issue_id: str | int, text: str) -> str:
        """A note; its id. A repeat of a note posted within the hour (Sentry refuses those) finds
        the earlier one's id among the issue's notes."""
        path = self.ISSUE_NOTES.format(org=self.org, issue_id=_issue_id(issue_id))
        try:
            answer = self._json("POST", path, json={"text": text})
        except PermanentError as exc:
            if exc.status == 400 and DUPLICATE_NOTE in str(exc):
                found = self.note_ids_containing(issue_id, text)
                if found:
                    return found[0]
            raise
        note_id = str(answer.get("id", "")) if isinstance(answer, Mapping) else ""
        if not note_id:
            raise TransientError("Sentry answered a note without its id")
        return note_id

    def note_ids_containing(self, issue_id: str | int, text: str) -> list[str]:
        """Ids of the issue's notes (its first page) whose text contains `text`."""
        raw = self._json("GET", self.ISSUE_NOTES.format(org=self.org, issue_id=_issue_id(issue_id)))
        items = raw if isinstance(raw, list) else []
        return [str(item.get("id")) for item in items if isinstance(item, Mapping)
                and text in str(as_mapping(item.get("data")).get("text", ""))]

    def edit_note(self, issue_id: str | int, note_id: str, text: str) -> None:
        path = self.ISSUE_NOTES.format(org=self.org, issue_id=_issue_id(issue_id))
        self._request("PUT", f"{path}{_segment(note_id, 'note')}/", json={"text": text})

    def delete_note(self, issue_id: str | int, note_id: str) -> None:
        """Gone already (404) counts as done."""
        path = self.ISSUE_NOTES.format(org=self.org, issue_id=_issue_id(issue_id))
        try:
            self._request("DELETE", f"{path}{_segment(note_id, 'note')}/")
        except PermanentError as exc:
            if exc.status != 404:
                raise

    def add_note(self, issue_id: str | int, text: str) -> None:
        """Post a note (a comment) on the issue. Repeating a note already posted within the hour is
        treated as done: that is what a retry after an ambiguous failure looks like."""
        path = self.ISSUE_NOTES.format(org=self.org, issue_id=_issue_id(issue_id))
        try:
            self._request("POST", path, json={"text": text})
        except PermanentError as exc:
            if exc.status == 400 and DUPLICATE_NOTE in str(exc):
                log.info("sentry note on issue %s was already posted", issue_id)
                return
            raise

    def link_external_issue(
        self, installation_uuid: str, issue_id: str | int, *, web_url: str, project: str, identifier: str
    ) -> None:
        """Show the Jira ticket on the Sentry issue. Sentry keeps one link per issue and integration:
        posting again replaces it since late 2024 (getsentry/sentry#79844 made the create an
        update_or_create). Before, a second post for the same issue breaks the unique constraint on
        PlatformExternalIssue (group, service_type) and answers 500; what the link then is decides:
        the same ticket (our earlier, ambiguous post went through) is done, another ticket of ours
        (a successor) is deleted and posted again. So this is safe to repeat on every version."""
        uuid = _segment(installation_uuid, "installation")
        path = self.EXTERNAL_ISSUES.format(installation_uuid=uuid)
        body = {"issueId": int(_issue_id(issue_id)), "webUrl": web_url, "project": project,
                "identifier": identifier}
        try:
            self._request("POST", path, json=body)
        except TransientError as refused:
            if refused.status != 500:
                raise
            found = self._existing_link(uuid, issue_id, web_url)
            if found == "this ticket":
                log.info("sentry external issue on issue %s was linked already", issue_id)
                return
            if found == "none":
                raise  # a 500 of another cause: retried as any 5xx
            self._request("POST", path, json=body)  # the successor's, now that the old one is gone

    def external_issue_urls(self, issue_id: str | int) -> list[str]:
        """The webUrl of every external issue on the issue, of every integration
        (GroupExternalIssuesEndpoint)."""
        raw = self._json("GET", self.ISSUE_EXTERNAL_ISSUES.format(issue_id=_issue_id(issue_id)))
        items = raw if isinstance(raw, list) else []
        return [str(item.get("webUrl", "")) for item in items if isinstance(item, Mapping)]

    def _existing_link(self, installation_uuid: str, issue_id: str | int, web_url: str) -> str:
        """After a 500 on the external-issue post, the issue's link of ours: "this ticket" (an earlier,
        ambiguous post went through), "deleted" (it named another ticket of ours, and is gone now),
        or "none". Ours: its webUrl is on the ticket's Jira (another integration's links are on
        other hosts, and Sentry answers 404 to deleting them anyway)."""
        raw = self._json("GET", self.ISSUE_EXTERNAL_ISSUES.format(issue_id=_issue_id(issue_id)))
        links = [item for item in raw if isinstance(item, Mapping)] if isinstance(raw, list) else []
        if any(link.get("webUrl") == web_url for link in links):
            return "this ticket"
        jira = web_url.rsplit("/", 1)[0] + "/"
        ours = [link for link in links if str(link.get("webUrl", "")).startswith(jira)]
        for link in ours:
            external_id = _segment(str(link.get("id", "")), "external issue")
            try:
                self._request("DELETE", self.EXTERNAL_ISSUE.format(installation_uuid=installation_uuid,
                                                                   external_id=external_id))
            except PermanentError as exc:
                if exc.status != 404:  # a 404: gone meanwhile, or not ours after all
                    raise
        return "deleted" if ours else "none"

    # ------------------------------------------------------------------ projects, one at a time

    def _lookup(self, ids: Sequence[str], projects: Mapping[str, str]) -> list[SentryIssue]:
        """One `group=` lookup across every project, or, where the organisation refuses that, one
        per project among `ids`."""
        if self._multi_project is not False:
            try:
                issues = self._group_read(ids, "-1")
            except PermanentError as exc:
                if not self._refused_multi_project(exc):
                    raise
            else:
                self._multi_project = True
                return issues
        return [
            issue
            for project_id, in_project in self._groups(ids, projects).items()
            for issue in self._group_read(in_project, project_id)
        ]

    def _group_read(self, ids: Sequence[str], project: str) -> list[SentryIssue]:
        params = [("group", issue_id) for issue_id in ids] + [("project", project)]
        return list(self._pages(self.ISSUES.format(org=self.org), params))

    def _refused_multi_project(self, exc: PermanentError) -> bool:
        if exc.status != 400 or MULTI_PROJECT_REFUSED not in str(exc):
            return False
        if self._multi_project is None:
            log.info("sentry: organization %s has no multi-project reads (Team or Developer plan): "
                     "reading one project at a time", self.org)
        self._multi_project = False
        return True

    def _groups(self, ids: Sequence[str], projects: Mapping[str, str]) -> dict[str, list[str]]:
        """Project id -> the ids among `ids` in it, by the slugs `projects` gives them."""
        project_ids = self._projects()
        grouped: dict[str, list[str]] = {}
        for issue_id in ids:
            project_id = project_ids.get(projects.get(issue_id, ""))
            if project_id is not None:
                grouped.setdefault(project_id, []).append(issue_id)
        return grouped

    def _projects(self) -> dict[str, str]:
        """The organisation's projects, slug -> id: read once per client (every page of them)."""
        if self._project_ids is None:
            found: dict[str, str] = {}
            for raw in self._list_pages(self.PROJECTS.format(org=self.org), []):
                slug = raw.get("slug") if isinstance(raw, Mapping) else None
                if isinstance(slug, str) and str(raw.get("id", "")).isdigit():
                    found[slug] = str(raw["id"])
            self._project_ids = found
        return self._project_ids

    # ------------------------------------------------------------------ plumbing

    def _pages(self, path: str, params: list[tuple[str, str]]) -> Iterator[SentryIssue]:
        for item in self._list_pages(path, params):
            yield self._issue(item)

    def _list_pages(self, path: str, params: list[tuple[str, str]]) -> Iterator[Any]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page_params = params + ([("cursor", cursor)] if cursor else [])
            response = self._request("GET", path, params=page_params)
            raw = self._decode(response, "GET", path)
            if not isinstance(raw, list):
                raise PermanentError(f"{SERVICE} GET {path}: answer is not a list")
            yield from raw
            # Sentry's `Link: <url>; rel="next"; results="true"; cursor="..."`. Follow only the
            # cursor, on our own URL: a Link pointing elsewhere must not get our token.
            following = response.links.get("next", {})
            cursor = following.get("cursor")
            if following.get("results") != "true" or not cursor:
                return
            if cursor in seen:
                raise PermanentError(f"{SERVICE} GET {path}: pagination cursor repeated")
            seen.add(cursor)

    def _json(self, method: str, path: str, *, json: Any = None) -> Any:
        return self._decode(self._request(method, path, json=json), method, path)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        with self._requests_lock:
            self._requests += 1
        try:
            query = httpx.QueryParams(tuple(params)) if params else None
            response = self._http.request(method, path, params=query, json=json)
        except Exception as exc:
            # Never sent, sent without a clear answer, or unsendable: `errors.FAILURES` says which.
            failure = classify_failure(exc, SERVICE, method, path)
            if failure is None:
                raise
            raise failure from exc
        log.debug("sentry %s %s -> %s", method, path, response.status_code)
        if not response.is_success:
            headers: Mapping[str, str] = response.headers
            if response.status_code != 429:
                # Sentry puts its rate-limit window's reset on every answer; it is a wait hint only
                # on a 429, and must not shorten the caller's backoff after a 5xx.
                headers = {k: v for k, v in headers.items() if k.lower() != "x-sentry-rate-limit-reset"}
            raise classify_http(SERVICE, method, response.status_code, headers,
                                f"{path}: {self._detail(response)}")
        return response

    def _decode(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise PermanentError(
                f"{SERVICE} {method} {path}: answer is not JSON", status=response.status_code
            ) from None

    def _detail(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except (ValueError, RecursionError):
            text = response.text[:200]
        else:
            detail = body.get("detail") if isinstance(body, Mapping) else None
            text = detail if isinstance(detail, str) else str(body)[:200]
        token = self.__token
        return text.replace(token, "[redacted]") if token else text

    @staticmethod
    def _issue(raw: Any) -> SentryIssue:
        try:
            return parse_issue(raw)
        except PayloadError as exc:
            raise PermanentError(f"{SERVICE}: unusable issue in answer: {exc}") from None
