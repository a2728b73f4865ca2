"""Our Jira client (REST v2): URL constants and one method per call, through a session of our own,
so that every failure is one of syncer's errors.

Why this shape:
- The session is the `jira` library's `ResilientSession` (the one its `JIRA` uses: Jira's error answers
  become `JIRAError`), built here with `max_retries=0` and a timeout: the library's own retries repeat
  every request, POST included, with blocking sleeps. Callers retry (TransientError.retry_after).
- Owning the session, we count its requests, pass them through the throttle, refuse redirects and
  settle proxy settings once, all with requests' public API; a requests session is not thread-safe,
  so there is one per thread, created lazily.
- Every call is a plain REST call: the library's `JIRA` helpers do more than they say
  (`add_remote_link` first lists application links, which needs an admin; `assign_issue` assigns
  the first prefix match of a user search), and its session is reachable only through internals.
- `JIRAError`'s text dumps request and response headers: messages here are built from the status and
  Jira's own `errorMessages`/`errors` only, so no token reaches a log. requests' own exceptions
  (timeouts, refused or dropped connections, redirects) are mapped by `syncer.errors.FAILURES`.

Cloud and Data Center differ in search, in how users are named and in user search: one
`syncer.jira.deployment.Deployment`, chosen once from serverInfo, says how.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
from jira.exceptions import JIRAError
from jira.resilientsession import ResilientSession
from requests.adapters import HTTPAdapter

from syncer.core.issue import JiraTicket
from syncer.errors import (
    WRITES,
    AmbiguousError,
    ConfigError,
    PayloadError,
    PermanentError,
    SyncerError,
    TransientError,
    classify_failure,
    classify_http,
)
from syncer.jira import createmeta
from syncer.jira.createmeta import CreateMeta, NoSuchIssueType
from syncer.jira.deployment import PAGE_SIZE, TICKET_FIELDS, Deployment, from_server_info
from syncer.jira.parse import parse_ticket
from syncer.jira.screens import ScreenField, ScreenRefused, fill, parse_screen
from syncer.jira.workflow import MAX_STEPS, Edge, Goal, NoTarget, Status, Targets, choose_targets, next_step
from syncer.ratelimit import Throttle

API = "/rest/api/2/"
SERVER_INFO = "serverInfo"
MYSELF = "myself"
ISSUES = "issue"
ISSUES_BULK = "issue/bulk"
BULK_CREATE_MAX = 50  # createIssues: "Creates upto 50 issues"
ISSUE = "issue/{key}"
TRANSITIONS = "issue/{key}/transitions"
PROJECT_STATUSES = "project/{key}/statuses"
COMMENTS = "issue/{key}/comment"
ASSIGNEE = "issue/{key}/assignee"
REMOTE_LINKS = "issue/{key}/remotelink"
USER_SEARCH = "user/search"
ASSIGNABLE_SEARCH = "user/assignable/search"
USER = "user"
# What the library's `JIRA` sends with every request (its DEFAULT_OPTIONS headers).
HEADERS = {"Cache-Control": "no-cache", "Content-Type": "application/json", "X-Atlassian-Token": "no-check"}

IDS_PER_QUERY = 100  # Jira's page cap for search: one query, one page
# Labels per `labels in (...)` search: a bulk create's worth, and a JQL far below any length limit.
LABELS_PER_QUERY = BULK_CREATE_MAX
MAX_PAGES = 1000  # a runaway paging guard: 100,000 tickets
WORKFLOW_CACHE_SECONDS = 600.0  # how long what was seen of a workflow is trusted, by default
# How long a create screen (create-meta) is trusted: a field an admin adds or makes required shows
# within this, and sooner after Jira refuses a create for its fields (the entry is dropped then).
CREATE_META_TTL_SECONDS = 900.0
CREATE_META_MAX_PAGES = 50  # a runaway paging guard: 2,500 fields or issue types

log = logging.getLogger(__name__)

_REF = re.compile(r"^(?:\d+|[A-Za-z][A-Za-z0-9_]*-\d+)$")
_UNKNOWN_PROJECT = re.compile(r"The value '([^']+)' does not exist for the field 'project'", re.IGNORECASE)
_UNKNOWN_ISSUE = re.compile(
    r"An issue with key '([^']+)' does not exist for field '(?:id|key|issue|issuekey)'", re.IGNORECASE
)


@dataclass(frozen=True)
class Transition:
    id: str
    name: str
    to_id: str
    to_name: str
    to_category: str  # new | indeterminate | done
    # The fields the transition's screen shows; None when Jira did not say (then only a resolution).
    screen: tuple[ScreenField, ...] | None = None

    def edge(self, source: str) -> Edge:
        return Edge(source, self.id, Status(self.to_id, self.to_name, self.to_category))


@dataclass(frozen=True)
class Moved:
    """A walk made: its last transition (whose target the ticket is in now), and when Jira made it,
    on its clock: the watermark its own webhook is judged by (None when Jira's answer had no usable
    `Date`). `steps`: every transition taken, in order, the last included."""

    transition: Transition
    at: datetime | None
    steps: tuple[Transition, ...] = ()

    @property
    def via(self) -> tuple[str, ...]:
        """The statuses passed through on the way."""
        return tuple(step.to_name for step in self.steps[:-1])


class NoWay(PermanentError):
    """The ticket's workflow does not lead to the status the policy names: a person must set another."""

    def __init__(self, message: str, project: str, walked: Moved | None = None) -> None:
        super().__init__(message, status=400)
        self.project = project
        self.walked = walked  # the steps taken before the way ran out, if any


# Why no account was taken for a person (AccountMatch.problem): the audit trail says it in words, the
# metrics by these names.
UNKNOWN = "unknown"
AMBIGUOUS = "ambiguous"
NOT_ASSIGNABLE = "not_assignable"
DEACTIVATED = "deactivated"
EMAIL_HIDDEN = "email_hidden"
PROBLEMS = (UNKNOWN, AMBIGUOUS, NOT_ASSIGNABLE, DEACTIVATED, EMAIL_HIDDEN)


@dataclass(frozen=True)
class AccountMatch:
    account_id: str | None  # accountId on Cloud, name on Server/DC; None when no single exact match
    reason: str
    problem: str = ""  # one of PROBLEMS when account_id is None


class _UnknownIssues(PermanentError):
    """Jira refused a JQL query because it names issues that do not exist (deleted, or never were)."""

    def __init__(self, message: str, refs: set[str]) -> None:
        super().__init__(message, status=400)
        self.refs = refs


class FieldsRefused(PermanentError):
    """A 400 naming the fields Jira refused (`errors`: field id -> Jira's words), e.g. an assignee who
    is inactive or lacks the project's Assignable User permission. Jira's create and edit answers put
    field-level validation failures in `errors`, keyed by field id (REST v2 "Create issue", 400:
    "Returned if the request: is missing required fields, contains invalid field values ...";
    https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issues/#api-rest-api-2-issue-post),
    as sites answer it: `{"errorMessages": [], "errors": {"assignee": "..."}}`
    (https://github.com/fourplusone/terraform-provider-jira/issues/33)."""

    def __init__(self, message: str, fields: Mapping[str, str]) -> None:
        super().__init__(message, status=400)
        self.fields = dict(fields)


TICKET_KEY = re.compile(r"[A-Z][A-Z0-9_]*-[1-9][0-9]{0,17}")
# Lucene's reserved characters in Jira's text search ("Search syntax for text fields").
_LUCENE_RESERVED = re.compile(r'[+\-&|!(){}\[\]^~*?\\:/"]')


def jql_quote(value: str) -> str:
    """A JQL string literal: double quotes, with backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _str(value: Any) -> str:
    """Jira's ids and names: text, or (some ids) numbers; anything else counts as missing."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _jira_messages(response: requests.Response | None) -> list[str]:
    """Jira's own words from an error answer: `errorMessages` and `errors` (field: message)."""
    if response is None:
        return []
    try:
        data = response.json()
    except ValueError:
        return []  # an HTML error page from a proxy: its text is not worth echoing
    return _messages_in(data)


def _field_errors(response: requests.Response | None) -> dict[str, str]:
    try:
        data = response.json() if response is not None else None
    except ValueError:
        return {}
    errors = data.get("errors") if isinstance(data, Mapping) else None
    if not isinstance(errors, Mapping):
        return {}
    return {str(name): message for name, message in errors.items() if isinstance(message, str)}


def _messages_in(data: Any) -> list[str]:
    if not isinstance(data, Mapping):
        return []
    messages = [m for m in data.get("errorMessages") or [] if isinstance(m, str)]
    errors = data.get("errors")
    if isinstance(errors, Mapping):
        messages += [f"{name}: {message}" for name, message in errors.items() if isinstance(message, str)]
    if isinstance(data.get("message"), str):
        messages.append(data["message"])
    return messages


class _ThrottledAdapter(HTTPAdapter):
    """requests' transport with the throttle in front: it sees each request as it leaves."""

    def __init__(self, throttle: Throttle) -> None:
        super().__init__()
        self._throttle = throttle

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        method, url = request.method or "GET", request.url or ""
        self._throttle.before(method, url)
        response = super().send(request, *args, **kwargs)
        self._throttle.after(method, url, response.status_code, response.headers)
        return response


class JiraClient:
    def __init__(
        self,
        url: str,
        *,
        email: str | None = None,
        token: str | None = None,
        pat: str | None = None,
        timeout: float | tuple[float, float] = (5.0, 20.0),
        throttle: Throttle | None = None,
        workflow_cache_seconds: float = WORKFLOW_CACHE_SECONDS,
    ) -> None:
        """`throttle` (see `syncer.ratelimit`) is asked before every request to Jira, when given;
        `workflow_cache_seconds`: how long transitions and statuses read are used without asking again."""
        if not pat and not (email and token):
            raise ConfigError("Jira credentials: set an e-mail and API token (Cloud) or a PAT (Server/DC)")
        self._url = url.rstrip("/")
        self._email = email
        self._token = token
        self._pat = pat
        self._timeout = timeout
        self._throttle = throttle
        self._local = threading.local()
        # Threads connect one at a time, so that only the first asks serverInfo (a burst of new
        # threads used to ask it once each: a dozen calls at a worker's start, bench/e2e.py).
        self._connecting = threading.Lock()
        self._bot_id: str | None = None
        # From the first connection's serverInfo: the same for every thread.
        self._deployment: Deployment | None = None
        self._requests = 0
        self._requests_lock = threading.Lock()
        # Transitions available from a status, per (project key, issue type id, status id): the same for
        # every ticket there, so a transition costs only its POST. Process-local, short-lived, and
        # dropped when Jira refuses a transition chosen from it.
        self._transitions_seen: dict[tuple[str, str, str], tuple[float, list[Transition]]] = {}
        # A project's statuses per issue type id: which names its workflows have.
        self._statuses_seen: dict[str, tuple[float, dict[str, list[Status]]]] = {}
        self._transitions_lock = threading.Lock()
        self._workflow_ttl = workflow_cache_seconds
        # Create screens per (project key, issue type name folded): read once per TTL, not per ticket.
        self._create_meta_seen: dict[tuple[str, str], tuple[float, CreateMeta]] = {}
        self._create_meta_locks: dict[tuple[str, str], threading.Lock] = {}
        self._create_meta_lock = threading.Lock()

    @property
    def requests_made(self) -> int:
        """Requests answered by Jira through this client: what reconciliation reports as API calls."""
        return self._requests

    def _count_request(self, *_args: Any, **_kwargs: Any) -> None:
        with self._requests_lock:
            self._requests += 1

    # -- plumbing ------------------------------------------------------------------------------------

    def _new_session(self) -> ResilientSession:
        session = ResilientSession(timeout=self._timeout, max_retries=0)
        session.headers.update(HEADERS)
        if self._pat:
            session.headers["Authorization"] = f"Bearer {self._pat}"
        else:
            session.auth = (self._email or "", self._token or "")
        session.hooks["response"].append(self._count_request)
        # Requests go to the configured Jira only: a redirect (to another host, or anywhere) is not
        # followed but refused, so no answer can send our calls somewhere else.
        session.max_redirects = 0
        if self._throttle is not None:
            # Every request passes the throttle on its way out.
            session.mount(f"{self._url}/", _ThrottledAdapter(self._throttle))
        # requests re-reads the proxy and CA-bundle variables from the environment on EVERY request
        # (~5% of a ticket's CPU in bench/e2e.py); settle them once per session, with requests' own
        # rules, and stop it looking again.
        settled = session.merge_environment_settings(self._url, {}, None, None, None)
        session.proxies, session.verify = settled["proxies"], settled["verify"]
        session.trust_env = False
        return session

    def _session(self) -> ResilientSession:
        """This thread's session; the first in the process learns the deployment from serverInfo."""
        session: ResilientSession | None = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
            with self._connecting:
                if self._deployment is None:
                    info = self._send(session, "GET", SERVER_INFO, what="serverInfo")
                    if not isinstance(info, Mapping):
                        raise self._no_usable_answer("GET", "serverInfo", [])
                    self._deployment = from_server_info(info)
            self._local.session = session
        return session

    @property
    def _style(self) -> Deployment:
        self._session()
        assert self._deployment is not None
        return self._deployment

    def _scrub(self, text: str) -> str:
        # A proxy or server that echoes our Authorization header back shows the Basic form too.
        basic = (
            base64.b64encode(f"{self._email}:{self._token}".encode()).decode()
            if self._email and self._token
            else None
        )
        for secret in (self._token, self._pat, basic):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, method: str, what: str, error: JIRAError) -> SyncerError:
        status = error.status_code
        response = error.response if isinstance(error.response, requests.Response) else None
        messages = _jira_messages(response)
        if status is None or status < 400:
            return self._no_usable_answer(method, what, messages)
        detail = self._scrub(f"{what}: {'; '.join(messages)}" if messages else what)
        if status == 400 and messages:
            refs = {m.group(1) for m in map(_UNKNOWN_ISSUE.search, messages) if m}
            if refs:
                return _UnknownIssues(f"Jira {method} answered 400: {detail}", refs)
            fields = {name: self._scrub(words) for name, words in _field_errors(response).items()}
            if fields:
                return FieldsRefused(f"Jira {method} answered 400: {detail}", fields)
        if status == 401:
            detail = f"{detail} ({self._credentials_hint()})"
        headers = dict(response.headers) if response is not None else {}
        return classify_http("Jira", method, status, headers, detail)

    def _credentials_hint(self) -> str:
        """What to set when Jira refuses our credentials: Cloud takes an e-mail and API token as Basic
        auth and has no personal access tokens; Data Center takes a PAT as `Authorization: Bearer`
        ("Using Personal Access Tokens", confluence.atlassian.com/enterprise/using-personal-access-
        tokens-1026032365.html), and many sites turn basic auth off. The first call (serverInfo) is the
        one refused, so which deployment it is is not known yet: the hint names both."""
        if self._pat:
            return ("a personal access token works on Jira Data Center only: check that SYNCER_JIRA_PAT "
                    "is the bot's and has not expired; on Jira Cloud set SYNCER_JIRA_EMAIL and "
                    "SYNCER_JIRA_TOKEN")
        return ("check SYNCER_JIRA_EMAIL and SYNCER_JIRA_TOKEN (an API token of that account); on Jira Data "
                "Center set SYNCER_JIRA_PAT instead")

    def _no_usable_answer(self, method: str, what: str, messages: list[str]) -> TransientError:
        """An empty or malformed success: as uncertain as a lost connection."""
        detail = self._scrub(f"{what}: {'; '.join(messages)}" if messages else what)
        text = f"Jira {method} gave no usable answer: {detail}"
        return AmbiguousError(text) if method in WRITES else TransientError(text)

    @contextmanager
    def _translated(self, method: str, what: str) -> Iterator[None]:
        """Turn the library's and requests' exceptions into syncer's taxonomy (`errors.FAILURES`)."""
        try:
            yield
        except JIRAError as error:
            # `from None`: a chained JIRAError would print its headers in every traceback.
            raise self._error(method, what, error) from None
        except Exception as error:
            failure = classify_failure(error, "Jira", method, what)
            if failure is None:
                raise
            raise failure from error

    def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                 body: Any = None, what: str | None = None) -> Any:
        """One REST call through this thread's session; the parsed JSON, or None."""
        return self._send(self._session(), method, path, params=params, body=body,
                          what=what or path.split("?")[0])

    def _send(self, session: ResilientSession, method: str, path: str, *, what: str,
              params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        response = self._answer(session, method, path, what=what, params=params, body=body)
        with self._translated(method, what):
            return response.json() if response.content else None

    def _answer(self, session: ResilientSession, method: str, path: str, *, what: str,
                params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        with self._translated(method, what):
            # The session raises JIRAError for any non-2xx answer.
            return session.request(
                method, f"{self._url}{API}{path}", params=params,
                data=json.dumps(body) if body is not None else None,
            )

    @staticmethod
    def _ref(id_or_key: str) -> str:
        if not isinstance(id_or_key, str) or not _REF.match(id_or_key):
            raise PermanentError(f"{id_or_key!r} is not a Jira issue id or key")
        return quote(id_or_key, safe="")

    # -- who and where -------------------------------------------------------------------------------

    @property
    def deployment(self) -> str:
        """"Cloud" or "Server" (Data Center reports itself as Server)."""
        return self._style.name

    def user_ref(self, account_id: str | None) -> dict[str, str | None]:
        """A user as Jira takes one in an issue's `assignee` field: accountId on Cloud, name on DC."""
        return self._style.user_ref(account_id)

    def bot_account_id(self) -> str:
        """Our own account (accountId on Cloud, name on Server): how we recognise our own echoes."""
        if self._bot_id is None:
            me = self._request("GET", MYSELF)
            self._bot_id = _str(me.get(self._style.user_id_field)) if isinstance(me, Mapping) else ""
        return self._bot_id

    # -- tickets -------------------------------------------------------------------------------------

    def create_issue(self, fields: Mapping[str, Any]) -> tuple[str, str]:
        """Create a ticket; (id, key). AmbiguousError means it may exist: look before creating again."""
        answer = self._request("POST", ISSUES, body={"fields": self._create_fields(fields)},
                               what="create issue")
        if not isinstance(answer, Mapping) or "key" not in answer:
            # A success without the new ticket's key: as uncertain as a lost answer.
            raise self._no_usable_answer("POST", "create issue", _messages_in(answer))
        return _str(answer.get("id")), _str(answer.get("key"))

    def create_issues(self, many: Sequence[Mapping[str, Any]]) -> list[tuple[str, str] | SyncerError]:
        """Create up to BULK_CREATE_MAX tickets in one call (Jira's createIssues, `POST /issue/bulk`
        with `issueUpdates`); per ticket, in the order given, (id, key) or the error a single create
        of it would have raised (FieldsRefused, PermanentError, ...). The whole call failing raises
        as `create_issue` does: AmbiguousError (a timeout, a 5xx) means any of them may exist.

        Atlassian's REST v2 "Bulk create issue" (developer.atlassian.com/cloud/jira/platform/rest/v2/
        api-group-issues/#api-rest-api-2-issue-bulk-post) answers CreatedIssues: `issues` (id, key,
        self) and `errors`, each a BulkOperationErrorResult (`status`, `elementErrors`: an
        ErrorCollection of errorMessages and field `errors`, `failedElementNumber`: the request's
        index); 201 when any was created, 400 when none was, with the same body. The created issues
        carry nothing that names their request (JRACLOUD-81005 asks for it): they come in request
        order, the failed elements left out, so that order is how they are matched."""
        if not many:
            return []
        if len(many) > BULK_CREATE_MAX:
            raise ValueError(f"a bulk create takes at most {BULK_CREATE_MAX} tickets, not {len(many)}")
        updates = [{"fields": self._create_fields(fields)} for fields in many]
        session = self._session()
        try:
            with self._translated("POST", "bulk create issues"):
                try:
                    response = session.request("POST", f"{self._url}{API}{ISSUES_BULK}",
                                               data=json.dumps({"issueUpdates": updates}))
                    answer = response.json() if response.content else None
                except JIRAError as error:
                    # None created: the per-item errors are in the 400's body, as in a 201's.
                    refused = error.response if isinstance(error.response, requests.Response) else None
                    if error.status_code != 400 or refused is None:
                        raise
                    answer = refused.json()
                    if not isinstance(answer, Mapping) or not answer.get("errors"):
                        raise  # refused as a whole (no issueUpdates, over the limit): nothing created
        except (ValueError, TypeError):
            raise self._no_usable_answer("POST", "bulk create issues", []) from None
        return self._bulk_results(answer, len(many))

    def _bulk_results(self, answer: Any, count: int) -> list[tuple[str, str] | SyncerError]:
        if not isinstance(answer, Mapping):
            raise self._no_usable_answer("POST", "bulk create issues", [])
        failed: dict[int, SyncerError] = {}
        for raw in answer.get("errors") or []:
            number = raw.get("failedElementNumber") if isinstance(raw, Mapping) else None
            if isinstance(number, int) and 0 <= number < count:
                failed[number] = self._bulk_item_error(raw)
        created = [raw for raw in answer.get("issues") or []
                   if isinstance(raw, Mapping) and _str(raw.get("key"))]
        results: list[tuple[str, str] | SyncerError] = []
        made = iter(created)
        if len(created) != count - len(failed):
            # Not one answer per request: which ticket is whose cannot be told from this answer.
            unsure = AmbiguousError(f"Jira POST {ISSUES_BULK} answered {len(created)} created and "
                                    f"{len(failed)} refused for {count} requested")
            return [failed.get(n, unsure) for n in range(count)]
        for number in range(count):
            if number in failed:
                results.append(failed[number])
            else:
                raw = next(made)
                results.append((_str(raw.get("id")), _str(raw.get("key"))))
        return results

    def _bulk_item_error(self, raw: Mapping[str, Any]) -> SyncerError:
        """One element's refusal, as a create of it alone would have raised it."""
        element = raw.get("elementErrors") if isinstance(raw.get("elementErrors"), Mapping) else {}
        assert isinstance(element, Mapping)
        status = raw.get("status") if isinstance(raw.get("status"), int) else element.get("status")
        status = status if isinstance(status, int) and status >= 400 else 400
        messages = _messages_in(element)
        what = "create issue (in a bulk create)"
        detail = self._scrub(f"{what}: {'; '.join(messages)}" if messages else what)
        errors = element.get("errors")
        fields = ({str(k): self._scrub(v) for k, v in errors.items() if isinstance(v, str)}
                  if isinstance(errors, Mapping) else {})
        if status == 400 and fields:
            return FieldsRefused(f"Jira POST answered 400: {detail}", fields)
        return classify_http("Jira", "POST", status, {}, detail)

    @staticmethod
    def _create_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        # Dicts, not names: given a bare name the library spends extra GETs looking up the id.
        if isinstance(fields.get("project"), str):
            fields["project"] = {"key": fields["project"]}
        if isinstance(fields.get("issuetype"), str):
            fields["issuetype"] = {"name": fields["issuetype"]}
        return fields

    # -- create screens ------------------------------------------------------------------------------

    def create_meta(self, project: str, issue_type: str) -> CreateMeta:
        """The create screen of `issue_type` (a name, matched without regard to case) in `project`:
        its fields, their schemas and allowed values (`syncer.jira.createmeta`). Cached for
        CREATE_META_TTL_SECONDS; one thread reads it while the others wait. NoSuchIssueType when the
        project offers no such type."""
        key = (project, issue_type.casefold())
        cached = self._cached_create_meta(key)
        if cached is not None:
            return cached
        with self._create_meta_lock:
            lock = self._create_meta_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._cached_create_meta(key)
            if cached is not None:
                return cached
            meta = self._read_create_meta(project, issue_type)
            with self._create_meta_lock:
                self._create_meta_seen[key] = (time.monotonic() + CREATE_META_TTL_SECONDS, meta)
            return meta

    def forget_create_meta(self, project: str, issue_type: str) -> None:
        """Jira refused a create for its fields: the screen may have changed, read it afresh next time."""
        with self._create_meta_lock:
            self._create_meta_seen.pop((project, issue_type.casefold()), None)

    def _cached_create_meta(self, key: tuple[str, str]) -> CreateMeta | None:
        with self._create_meta_lock:
            seen = self._create_meta_seen.get(key)
            if seen is None or seen[0] <= time.monotonic():
                return None
            return seen[1]

    def _read_create_meta(self, project: str, issue_type: str) -> CreateMeta:
        ref = quote(project, safe="")
        pages = self._create_meta_pages(createmeta.ISSUE_TYPES.format(project=ref), "issueTypes")
        types = [t for raw in pages if (t := createmeta.parse_issue_type(raw)) is not None]
        wanted = issue_type.casefold()
        chosen = next((t for t in types if t[1].casefold() == wanted), None)
        if chosen is None:
            raise NoSuchIssueType(project, issue_type, [name for _, name in types])
        type_id, type_name = chosen
        path = createmeta.FIELDS.format(project=ref, type_id=quote(type_id, safe=""))
        fields = [f for raw in self._create_meta_pages(path, "fields")
                  if (f := createmeta.parse_field(raw)) is not None]
        return CreateMeta(project=project, issue_type=type_name, issue_type_id=type_id, fields=tuple(fields))

    def _create_meta_pages(self, path: str, cloud_key: str) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for _ in range(CREATE_META_MAX_PAGES):
            start = len(found)
            answer = self._request("GET", path, what="create-meta",
                                   params={"startAt": start, "maxResults": createmeta.PAGE_SIZE})
            page = createmeta.page_items(answer, cloud_key)
            found += page
            if createmeta.is_last_page(answer, start, len(page)):
                break
        return found

    def project_is_team_managed(self, project: str) -> bool:
        """Whether the project is team-managed ("next-gen"): Project's `style` is "next-gen" and
        `simplified` true (Atlassian's Jira OpenAPI description, Project: "style: The type of the
        project", one of classic, next-gen; "simplified: Whether the project is simplified")."""
        answer = self._request("GET", f"project/{quote(project, safe='')}", what="project")
        if not isinstance(answer, Mapping):
            return False
        return answer.get("style") == "next-gen" or answer.get("simplified") is True

    def get_ticket(self, id_or_key: str) -> JiraTicket | None:
        """The ticket, or None when Jira says it does not exist (deleted, or no permission)."""
        ref = self._ref(id_or_key)
        try:
            raw = self._request("GET", ISSUE.format(key=ref), params={"fields": ",".join(TICKET_FIELDS)},
                                what="issue")
        except PermanentError as error:
            if error.status == 404:
                return None
            raise
        return self._ticket(raw)

    @staticmethod
    def _ticket(raw: Any) -> JiraTicket:
        try:
            return parse_ticket(raw)
        except PayloadError as error:
            raise PermanentError(f"Jira answered an issue we cannot read: {error}") from None

    def find_by_label(self, label: str) -> list[JiraTicket]:
        """Tickets carrying `label`. On Cloud a ticket created seconds ago may not be found yet."""
        return self._search(f"labels = {jql_quote(label)}")

    def find_by_labels(self, labels: Sequence[str]) -> dict[str, list[JiraTicket]]:
        """Tickets carrying each of `labels`, in one search per LABELS_PER_QUERY (`labels in (...)`),
        so that many new issues cost one search, not one each."""
        wanted = list(dict.fromkeys(labels))
        found: dict[str, list[JiraTicket]] = {label: [] for label in wanted}
        for start in range(0, len(wanted), LABELS_PER_QUERY):
            chunk = wanted[start:start + LABELS_PER_QUERY]
            for ticket in self._search(f"labels in ({', '.join(map(jql_quote, chunk))})"):
                for label in ticket.labels:
                    if label in found:
                        found[label].append(ticket)
        return found

    def updated_within(self, projects: Sequence[str], minutes: int) -> list[JiraTicket]:
        """Tickets in `projects` updated in the last `minutes` by Jira's own clock. A relative date
        ("-15m", "relative to the current time", Atlassian's "JQL Date Time Formats"), not a literal:
        Jira reads a literal date in the searching account's time zone, to the minute
        (JRACLOUD-74279 asks for another way), which no UTC timestamp of ours can be made to match."""
        remaining = sorted(set(projects))
        while remaining and minutes >= 1:
            scope = ", ".join(jql_quote(p) for p in remaining)
            try:
                return self._search(f'project in ({scope}) AND updated >= "-{int(minutes)}m" ORDER BY id')
            except PermanentError as error:
                # A project the policy names that Jira does not know (or hides from us) fails the
                # whole query; the others are asked again without it.
                unknown = set(_UNKNOWN_PROJECT.findall(str(error))) if error.status == 400 else set()
                left = [p for p in remaining if p not in unknown]
                if len(left) == len(remaining):
                    raise
                # Not a fault to retry: the policy names a project no ticket can be filed in.
                log.warning("Jira knows no project %s (or hides it from us): the change search leaves it "
                            "out; check the policy's jira_project values", ", ".join(sorted(unknown)))
                remaining = left
        return []

    def search_text(self, query: str, *, limit: int = 20) -> list[tuple[str, str]]:
        """(key, summary) of up to `limit` tickets whose key is `query`, or whose text has its words,
        newest first: what a person types to find a ticket. Lucene's reserved characters become
        spaces (Jira refuses them unescaped in `text ~`), and the rest is quoted for JQL."""
        query = query.strip()[:200]
        if TICKET_KEY.fullmatch(query.upper()):
            ticket = self.get_ticket(query.upper())
            return [(ticket.key, "")] if ticket is not None else []
        words = _LUCENE_RESERVED.sub(" ", query).strip()
        if not words:
            return []
        style = self._style
        body = style.first_page(f"text ~ {jql_quote(words)} ORDER BY updated DESC")
        body.update(fields=["summary"], maxResults=limit)
        answer = self._request("POST", style.search_path, body=body)
        issues = answer.get("issues") if isinstance(answer, Mapping) else None
        found: list[tuple[str, str]] = []
        for raw in issues if isinstance(issues, list) else []:
            if isinstance(raw, Mapping) and _str(raw.get("key")):
                fields = raw.get("fields")
                summary = fields.get("summary") if isinstance(fields, Mapping) else None
                found.append((_str(raw.get("key")), summary if isinstance(summary, str) else ""))
        return found[:limit]

    def tickets_by_ids(self, ids: Sequence[str], *, missing: set[str] | None = None) -> list[JiraTicket]:
        """Current state of many tickets by id (ids survive moves between projects; keys do not).
        Ids of deleted tickets are left out of the answer. `missing`, when given, receives the ids Jira
        itself said do not exist (its 400 names them): deleted (or hidden from us), unlike an id the
        search merely did not return (Cloud's search lags behind new tickets)."""
        wanted = list(dict.fromkeys(ids))
        for issue_id in wanted:
            if not isinstance(issue_id, str) or not issue_id.isdigit():
                raise PermanentError(f"{issue_id!r} is not a Jira issue id")
        tickets: list[JiraTicket] = []
        for start in range(0, len(wanted), IDS_PER_QUERY):
            tickets += self._tickets_in(wanted[start:start + IDS_PER_QUERY], missing)
        return tickets

    def _tickets_in(self, ids: list[str], missing: set[str] | None = None) -> list[JiraTicket]:
        # Jira refuses a whole query that names a deleted issue; drop the ones it names and ask again.
        remaining = ids
        while remaining:
            try:
                return self._search(f"id in ({', '.join(remaining)})", missing)
            except _UnknownIssues as error:
                left = [i for i in remaining if i not in error.refs]
                if len(left) == len(remaining):
                    raise PermanentError(str(error), status=400) from None
                if missing is not None:
                    missing.update(i for i in remaining if i in error.refs)
                remaining = left
        return []

    def _search(self, jql: str, missing: set[str] | None = None) -> list[JiraTicket]:
        """The tickets `jql` finds. `missing`, when given, receives the issues Jira's warnings name as
        nonexistent: Data Center's search (validateQuery false) answers 200 and says so in
        `warningMessages` ("Any warnings related to the JQL query", SearchResults in Atlassian's REST v2
        description) where Cloud's answers the 400 `_tickets_in` reads."""
        style = self._style
        body = style.first_page(jql)
        tickets: list[JiraTicket] = []
        for _ in range(MAX_PAGES):
            answer = self._request("POST", style.search_path, body=body)
            if not isinstance(answer, Mapping):
                raise TransientError(
                    f"Jira POST {style.search_path} answered something that is not a search result"
                )
            warnings = answer.get("warningMessages")
            if missing is not None and isinstance(warnings, list):
                found = (_UNKNOWN_ISSUE.search(w) for w in warnings if isinstance(w, str))
                missing.update(m.group(1) for m in found if m)
            issues = answer.get("issues")
            page = [raw for raw in issues if isinstance(raw, Mapping)] if isinstance(issues, list) else []
            tickets += [self._ticket(raw) for raw in page]
            if not style.next_page(body, answer, page):
                break
        return tickets

    # -- workflow ------------------------------------------------------------------------------------

    @staticmethod
    def _transition(raw: Any) -> Transition | None:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("to"), Mapping):
            return None
        to = raw["to"]
        category = to.get("statusCategory") if isinstance(to.get("statusCategory"), Mapping) else {}
        return Transition(
            id=_str(raw.get("id")), name=_str(raw.get("name")), to_id=_str(to.get("id")),
            to_name=_str(to.get("name")), to_category=_str(category.get("key")),
            screen=parse_screen(raw.get("fields")),
        )

    def _parse_transitions(self, raw: Any) -> list[Transition]:
        found = [self._transition(t) for t in raw] if isinstance(raw, list) else []
        return [t for t in found if t is not None]

    def transitions(self, key: str) -> list[Transition]:
        """The transitions Jira offers from the ticket's status now, each with its screen's fields."""
        answer = self._request("GET", TRANSITIONS.format(key=self._ref(key)),
                               params={"expand": "transitions.fields"}, what="transitions")
        return self._parse_transitions(answer.get("transitions") if isinstance(answer, Mapping) else None)

    def project_statuses(self, project: str, issue_type: str) -> list[Status] | None:
        """The statuses the project's workflow has for an issue type, by its id or name (`GET
        /project/{key}/statuses`, Browse permission; "the valid statuses for a project ... grouped by
        issue type"), cached like transitions; None when Jira does not say."""
        now = time.monotonic()
        with self._transitions_lock:
            seen = self._statuses_seen.get(project)
        if seen is None or seen[0] <= now:
            try:
                answer = self._request("GET", PROJECT_STATUSES.format(key=quote(project, safe="")),
                                       what="project statuses")
            except PermanentError as error:
                if error.status in (403, 404):
                    return None  # the names decide, as they did before statuses were read
                raise
            by_type: dict[str, list[Status]] = {}
            for entry in answer if isinstance(answer, list) else []:
                if isinstance(entry, Mapping):
                    statuses = _statuses(entry.get("statuses"))
                    by_type[_str(entry.get("id"))] = statuses
                    by_type.setdefault(f"name:{_str(entry.get('name')).casefold()}", statuses)
            seen = (now + self._workflow_ttl, by_type)
            with self._transitions_lock:
                self._statuses_seen[project] = seen
        return seen[1].get(issue_type) or seen[1].get(f"name:{issue_type.casefold()}")

    def transition_to(self, key: str, status_name: str, *, resolution: str | None = None,
                      comment: str | None = None, current: JiraTicket | None = None) -> bool:
        """Move the ticket to the status named `status_name` (case-insensitive). False when it is
        already there. See `move_to`."""
        moved = self.move_to(key, status_name, resolution=resolution, comment=comment, current=current)
        return moved is not None

    def move_to(self, key: str, goal: str | Goal, *, resolution: str | None = None,
                field_values: Mapping[str, Any] | None = None, comment: str | None = None,
                current: JiraTicket | None = None) -> Moved | None:
        """Walk the ticket to `goal`'s status (by name, case-insensitive; or, when the workflow has no
        such status, one of its fallback category), one transition at a time along the shortest way
        known (`syncer.jira.workflow`); the steps taken, the last of which leads there, and when Jira
        made the last, on its clock. None when it is there already.

        Each step's screen is filled from `field_values` (by field name or id, later entries winning)
        and, into a done status, `resolution` (`syncer.jira.screens`); `comment` goes with the last.
        Every step starts from where the ticket is: a walk cut short (a crash, a failed call) goes on
        from there when asked again, and repeats nothing.

        `current`: the ticket as the caller just read it. With it, transitions known for its project,
        issue type and status are used without asking Jira; a walk of more than one step starts from a
        fresh read, and a transition Jira refuses from known ones (400: the ticket moved, the workflow
        changed) has them forgotten and the step read afresh. A goal the workflow cannot reach is a
        `NoWay`, a screen the policy cannot fill a `ScreenRefused`: both permanent, both say what to set;
        a NoWay found from what was cached is first tried once more with everything read afresh."""
        goal = goal if isinstance(goal, Goal) else Goal(goal)
        try:
            return self._walk(key, goal, resolution, field_values or {}, comment, current)
        except NoWay as missing:
            self._forget_project(missing.project)  # the workflow may have changed since we looked
            walked = missing.walked
        again = self._walk(key, goal, resolution, field_values or {}, comment, None)
        if walked is None:
            return again
        if again is None:  # the steps already taken led to where the fresh statuses say to go
            return walked
        return Moved(again.transition, again.at, walked.steps + again.steps)

    def _walk(self, key: str, goal: Goal, resolution: str | None, values: Mapping[str, Any],
              comment: str | None, current: JiraTicket | None) -> Moved | None:
        ref = self._ref(key)
        known = self._known_transitions(current) if current is not None else None
        if current is not None and known is not None:
            ticket, available, fresh = current, known, False
        else:
            ticket, available = self._read_for_move(ref)
            fresh = True
        if ticket.status.casefold() == goal.status.casefold():
            return None
        # A transition straight to the name says the workflow has it: no need to ask which statuses
        # it has (a close in a simple workflow stays one POST).
        wanted = goal.status.casefold()
        direct = any(t.to_name.casefold() == wanted for t in available)
        statuses = None if direct else self.project_statuses(ticket.project_key, ticket.issue_type_id)
        try:
            targets = choose_targets(goal, statuses)
        except NoTarget as missing:
            raise NoWay(self._no_target(key, ticket, goal, missing.statuses), ticket.project_key) from None
        if targets.accepts(_status_of(ticket)):
            return None
        steps: list[Transition] = []
        last_at: datetime | None = None
        origin = ticket.status
        learnt: dict[str, list[Transition]] = {}  # this walk's reads, however short the cache
        graph: dict[str, list[Edge]] = {}
        while len(steps) < MAX_STEPS:
            learnt[ticket.status_id] = available
            graph = self._map(ticket, learnt)
            step = next_step(ticket.status_id, graph, targets)
            if step is None or (not step[1] and not fresh and not steps):
                if fresh:
                    raise self._no_way(key, origin, ticket, goal, targets, steps, graph, last_at)
                # A known way of several steps, or none: the cache may be behind the workflow.
                ticket, available = self._read_for_move(ref)
                fresh = True
                continue
            edge, last = step
            # The first step of a way leaves from the ticket's status: one of `available`.
            chosen = next(t for t in available if t.id == edge.transition_id and t.to_id == edge.to.id)
            try:
                fields = fill(chosen.screen, values, resolution=resolution,
                              into_done=chosen.to_category == "done", user_ref=self._style.user_ref,
                              where=f"{key}: the transition {chosen.name!r} ({ticket.status!r} -> "
                                    f"{chosen.to_name!r})",
                              hint=_fields_hint(ticket.project_key))
                at = self._post_transition(ref, chosen, fields, comment if last else None)
            except PermanentError as error:
                if error.status == 400 and not fresh:
                    # Chosen (or its screen read) from what we knew: the ticket may have moved, or
                    # the workflow or its screens changed. Only Jira's word of now is final.
                    self._forget_transitions(ticket)
                    ticket, available = self._read_for_move(ref)
                    fresh = True
                    continue
                if isinstance(error, ScreenRefused):
                    raise
                raise self._refused(key, origin, ticket, chosen, steps, error) from None
            steps.append(chosen)
            last_at = at
            if last:
                return Moved(chosen, at, tuple(steps))
            ticket = dataclasses.replace(ticket, status=chosen.to_name, status_id=chosen.to_id,
                                         status_category=chosen.to_category)
            cached = self._known_transitions(ticket)
            fresh = cached is None
            available = self.transitions(ref) if cached is None else cached
            if fresh:
                self._remember_transitions(ticket, available)
        raise self._no_way(key, origin, ticket, goal, targets, steps, graph, last_at)

    def _read_for_move(self, ref: str) -> tuple[JiraTicket, list[Transition]]:
        # One read gives both the current status and the transitions available from it.
        raw = self._request("GET", ISSUE.format(key=ref), what="issue",
                            params={"fields": "status,project,issuetype", "expand": "transitions.fields"})
        ticket = self._ticket(raw)
        available = self._parse_transitions(raw.get("transitions"))
        self._remember_transitions(ticket, available)
        return ticket, available

    def _map(self, ticket: JiraTicket, learnt: Mapping[str, list[Transition]]) -> dict[str, list[Edge]]:
        """What is known of the ticket's workflow: the transitions out of every status seen, cached or
        read on this walk (`learnt`, which wins)."""
        graph: dict[str, list[Edge]] = {}
        prefix = (ticket.project_key, ticket.issue_type_id)
        now = time.monotonic()
        with self._transitions_lock:
            for (project, type_id, status_id), (expires, seen) in self._transitions_seen.items():
                if (project, type_id) == prefix and expires > now:
                    graph[status_id] = [t.edge(status_id) for t in seen]
        graph.update({status_id: [t.edge(status_id) for t in seen] for status_id, seen in learnt.items()})
        return graph

    def _no_target(self, key: str, ticket: JiraTicket, goal: Goal, statuses: Sequence[Status]) -> str:
        names = ", ".join(repr(s.name) for s in statuses) or "none"
        fallback = f" nor any {goal.fallback_category} status to stand in" if goal.fallback_category else ""
        return (f"{key} cannot be moved to {goal.status!r}: {ticket.project_key}'s workflow has no such "
                f"status{fallback} (its statuses: {names}); set status.projects."
                f"{ticket.project_key}.{goal.setting or 'close_to'} to one of them")

    @staticmethod
    def _no_way(key: str, origin: str, ticket: JiraTicket, goal: Goal, targets: Targets,
                steps: Sequence[Transition], graph: Mapping[str, list[Edge]],
                last_at: datetime | None) -> NoWay:
        walked = " -> ".join(repr(name) for name in [origin, *(t.to_name for t in steps)])
        reachable = ", ".join(sorted({repr(e.to.name) for edges in graph.values() for e in edges})) or "none"
        text = (f"{key}: no way to {targets.how} in {ticket.project_key}'s workflow (walked: {walked}; "
                f"statuses its transitions reach, as far as seen: {reachable}); set status.projects."
                f"{ticket.project_key}.{goal.setting or 'close_to'} to a status the workflow reaches, or "
                "add the transition in Jira")
        return NoWay(text, ticket.project_key, Moved(steps[-1], last_at, tuple(steps)) if steps else None)

    def _refused(self, key: str, origin: str, ticket: JiraTicket, chosen: Transition,
                 steps: Sequence[Transition], error: PermanentError) -> PermanentError:
        done = f" (walked from {origin!r} so far)" if steps else ""
        text = (f"{key}: Jira refused the transition {chosen.name!r} ({ticket.status!r} -> "
                f"{chosen.to_name!r}){done}: {error}")
        if isinstance(error, FieldsRefused):
            return FieldsRefused(text, error.fields)
        return PermanentError(text, status=error.status)

    def _post_transition(self, ref: str, chosen: Transition, fields: Mapping[str, Any],
                         comment: str | None) -> datetime | None:
        """POST the transition; when Jira made it, by its own clock (the answer's `Date`), if it said."""
        body: dict[str, Any] = {
            # A number, as the library sent it: Jira's own answers give transition ids as strings.
            "transition": {"id": int(chosen.id) if chosen.id.isdigit() else chosen.id},
            "fields": dict(fields),
        }
        if comment:
            body["update"] = {"comment": [{"add": {"body": comment}}]}
        path = TRANSITIONS.format(key=ref)
        answer = self._answer(self._session(), "POST", path, body=body, what="transition")
        return _answered_at(answer.headers.get("Date"))

    @staticmethod
    def _workflow_key(ticket: JiraTicket) -> tuple[str, str, str] | None:
        if not (ticket.project_key and ticket.issue_type_id and ticket.status_id):
            return None  # not enough to tell which workflow applies: always ask Jira
        return ticket.project_key, ticket.issue_type_id, ticket.status_id

    def _known_transitions(self, ticket: JiraTicket) -> list[Transition] | None:
        key = self._workflow_key(ticket)
        if key is None:
            return None
        with self._transitions_lock:
            seen = self._transitions_seen.get(key)
            if seen is None:
                return None
            if seen[0] <= time.monotonic():
                del self._transitions_seen[key]
                return None
            return seen[1]

    def _remember_transitions(self, ticket: JiraTicket, transitions: list[Transition]) -> None:
        key = self._workflow_key(ticket)
        if key is None or not transitions:
            return
        with self._transitions_lock:
            self._transitions_seen[key] = (time.monotonic() + self._workflow_ttl, list(transitions))

    def _forget_project(self, project: str) -> None:
        with self._transitions_lock:
            self._statuses_seen.pop(project, None)
            for key in [k for k in self._transitions_seen if k[0] == project]:
                del self._transitions_seen[key]

    def _forget_transitions(self, ticket: JiraTicket) -> None:
        key = self._workflow_key(ticket)
        if key is not None:
            with self._transitions_lock:
                self._transitions_seen.pop(key, None)

    # -- small writes --------------------------------------------------------------------------------

    def post_comment(self, key: str, body: str) -> str:
        """A comment; its id."""
        answer = self._request("POST", COMMENTS.format(key=self._ref(key)), body={"body": body},
                               what="comment")
        comment_id = _str(answer.get("id")) if isinstance(answer, Mapping) else ""
        if not comment_id:
            raise TransientError("Jira answered a comment without its id")
        return comment_id

    def comment_ids_containing(self, key: str, text: str) -> list[str]:
        """Ids of the ticket's comments (the first 100) whose body contains `text`."""
        answer = self._request("GET", COMMENTS.format(key=self._ref(key)), params={"maxResults": 100},
                               what="comments")
        found = answer.get("comments") if isinstance(answer, Mapping) else None
        comments = [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []
        return [_str(c.get("id")) for c in comments if text in str(c.get("body", ""))]

    def edit_comment(self, key: str, comment_id: str, body: str) -> None:
        self._request("PUT", f"{COMMENTS.format(key=self._ref(key))}/{self._ref(comment_id)}",
                      body={"body": body}, what="comment")

    def delete_comment(self, key: str, comment_id: str) -> None:
        """Gone already (404) counts as done."""
        try:
            self._request("DELETE", f"{COMMENTS.format(key=self._ref(key))}/{self._ref(comment_id)}",
                          what="comment")
        except PermanentError as error:
            if error.status != 404:
                raise

    def add_comment(self, key: str, body: str) -> None:
        self._request("POST", COMMENTS.format(key=self._ref(key)), body={"body": body}, what="comment")

    def upsert_remote_link(
        self, key: str, *, global_id: str, url: str, title: str, summary: str = ""
    ) -> None:
        """Jira keeps one remote link per `globalId` on a ticket: posting again updates it."""
        link: dict[str, Any] = {"url": url, "title": title}
        if summary:
            link["summary"] = summary
        self._request("POST", REMOTE_LINKS.format(key=self._ref(key)),
                      body={"globalId": global_id, "object": link})

    def assign(self, key: str, account_id: str | None) -> None:
        """Assign to an account (accountId on Cloud, name on Server/DC); None unassigns."""
        self._request("PUT", ASSIGNEE.format(key=self._ref(key)), body=self._style.user_ref(account_id))

    def set_priority(self, key: str, name: str) -> None:
        self._request("PUT", ISSUE.format(key=self._ref(key)), body={"fields": {"priority": {"name": name}}})

    def add_labels(self, key: str, labels: Sequence[str]) -> None:
        if not labels:
            return
        body = {"update": {"labels": [{"add": label} for label in labels]}}
        self._request("PUT", ISSUE.format(key=self._ref(key)), body=body)

    def remove_labels(self, key: str, labels: Sequence[str]) -> None:
        if not labels:
            return
        body = {"update": {"labels": [{"remove": label} for label in labels]}}
        self._request("PUT", ISSUE.format(key=self._ref(key)), body=body)

    # -- people --------------------------------------------------------------------------------------

    def find_account(self, email_or_name: str) -> AccountMatch:
        """The one active Jira account with exactly this e-mail (Cloud) or username/e-mail (Server/DC),
        anywhere on the site. User search is a prefix match (`alice@x` also finds `alice.smith@x`):
        only exact hits count."""
        wanted = email_or_name.strip()
        if not wanted:
            return AccountMatch(None, "no e-mail or name given", UNKNOWN)
        return self._one_exact(wanted, self._users(USER_SEARCH, {self._style.user_search_param: wanted}))

    def find_assignable(self, project: str, email_or_name: str) -> AccountMatch:
        """The one account with exactly this e-mail (or, on Server/DC, username) that may be assigned
        issues in `project`. When there is none, a second look (the site-wide user search) tells
        whether the person is unknown, deactivated or lacks the project's Assignable User permission.

        Atlassian's "Find users assignable to issues" (`GET /rest/api/2/user/assignable/search`,
        https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-user-search/): given
        `project`, it lists the users who can be assigned "a new issue" there, `query` "matched
        against ... displayName, and emailAddress ... can match the prefix" (Cloud; `username` on Data
        Center), and "Privacy controls are applied to the response ... the user's email address is
        hidden". So a user whose address Jira hides cannot be confirmed by e-mail: [people] names them.
        It takes a range of users and only then drops those who are not assignable, so a short page is
        not proof of the last; an e-mail's prefix matches are far fewer than one page."""
        wanted = email_or_name.strip()
        if not wanted:
            return AccountMatch(None, "no e-mail or name given", UNKNOWN)
        style = self._style
        users = self._users(ASSIGNABLE_SEARCH, {"project": project, style.user_search_param: wanted})
        match = self._one_exact(wanted, users)
        if match.account_id is not None or match.problem == AMBIGUOUS:
            return match
        everyone = self._users(USER_SEARCH, {style.user_search_param: wanted})
        anywhere = self._one_exact(wanted, everyone)
        if anywhere.account_id is not None:
            return self._not_assignable(project)
        hidden = [u for u in users or everyone if not _str(u.get("emailAddress"))]
        if anywhere.problem == UNKNOWN and hidden and "@" in wanted:
            return AccountMatch(None, f"Jira hides the e-mail address of the {len(hidden)} user(s) its "
                                f"search found for {wanted}: name the person's Jira account in [people]",
                                EMAIL_HIDDEN)
        return anywhere

    def check_assignable(self, project: str, account_id: str) -> AccountMatch:
        """Whether the account (accountId on Cloud, username on Server/DC) may be assigned issues in
        `project`: the assignable search given the account ("you can pass an account ID to determine
        if a user can be assigned ... The user is returned in the response if they can be assigned",
        Atlassian's description of `user/assignable/search`); when not, `GET /user` tells unknown from
        deactivated from not assignable."""
        style = self._style
        users = self._users(ASSIGNABLE_SEARCH, {"project": project, style.user_id_param: account_id})
        if any(_str(u.get(style.user_id_field)).casefold() == account_id.casefold() for u in users):
            return AccountMatch(account_id, "named in [people]")
        user = self.user(account_id)
        if user is None:
            return AccountMatch(None, f"Jira has no account {account_id} (named in [people])", UNKNOWN)
        if user.get("active") is False:
            return AccountMatch(None, f"the Jira account {account_id} is deactivated", DEACTIVATED)
        return self._not_assignable(project)

    def user(self, account_id: str) -> Mapping[str, Any] | None:
        """The user with this accountId (Cloud) or username (Server/DC); None when Jira has none."""
        try:
            user = self._request("GET", USER, params={self._style.user_id_param: account_id}, what="user")
        except PermanentError as error:
            if error.status == 404:
                return None
            raise
        return user if isinstance(user, Mapping) else {}

    @staticmethod
    def _not_assignable(project: str) -> AccountMatch:
        return AccountMatch(None, f"not assignable in {project} (the project's Assignable User permission)",
                            NOT_ASSIGNABLE)

    def _one_exact(self, wanted: str, users: list[Mapping[str, Any]]) -> AccountMatch:
        style = self._style
        exact: list[Mapping[str, Any]] = []
        for match_field in style.user_match_fields:
            exact = [u for u in users if _str(u.get(match_field)).casefold() == wanted.casefold()]
            if exact:
                break
        id_field = style.user_id_field
        if not exact:
            return AccountMatch(None, style.no_user_found, UNKNOWN)
        if len(exact) > 1:
            return AccountMatch(None, f"ambiguous: {len(exact)} Jira users match exactly", AMBIGUOUS)
        user = exact[0]
        if user.get("active") is False:
            return AccountMatch(None, "the matching Jira user is deactivated", DEACTIVATED)
        account_id = _str(user.get(id_field))
        if not account_id:
            return AccountMatch(None, f"the matching Jira user has no {id_field}", UNKNOWN)
        return AccountMatch(account_id, "exact match")

    def _users(self, path: str, params: Mapping[str, str]) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        for page in range(10):
            answer = self._request("GET", path,
                                   params={**params, "startAt": page * PAGE_SIZE, "maxResults": PAGE_SIZE})
            batch = [u for u in answer if isinstance(u, Mapping)] if isinstance(answer, list) else []
            found += batch
            if len(batch) < PAGE_SIZE:
                break
        return found


def _statuses(raw: Any) -> list[Status]:
    found = []
    for status in raw if isinstance(raw, list) else []:
        if isinstance(status, Mapping):
            category = status.get("statusCategory")
            category = category if isinstance(category, Mapping) else {}
            found.append(Status(_str(status.get("id")), _str(status.get("name")), _str(category.get("key"))))
    return found


def _status_of(ticket: JiraTicket) -> Status:
    return Status(ticket.status_id, ticket.status, ticket.status_category)


def _fields_hint(project: str) -> str:
    return f"[status.transition_fields] or [status.projects.{project}.transition_fields]"


def _answered_at(date: str | None) -> datetime | None:
    """When Jira made our change, by its `Date` (RFC 9110 section 6.6.1: when the answer was made, in
    whole seconds), less a second: a person's change after ours, in the same second as the answer,
    must not look older than ours. None if there is no usable `Date`."""
    if not date:
        return None
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)) - timedelta(seconds=1)
