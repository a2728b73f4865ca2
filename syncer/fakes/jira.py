"""A fake Jira that the real `jira` library (3.10) and our client talk to over real HTTP.

Jira Cloud by default; `deployment="Server"` (or "DataCenter") is a Data Center site of `version` (9.12 by
default): `serverInfo` says `deploymentType: Server`; only `Authorization: Bearer <PAT>` is accepted (basic
auth answers 401, as on a site whose admin disabled it); `/rest/api/2/search` pages by `startAt`/`total`
and `/search/jql` does not exist (404); users are named by `name` and `key`, never `accountId`; user
search takes `username=` and reaches the first 1,000 matches (100 from 10.0); webhook bodies name users
the same way, carry no `X-Atlassian-Webhook-Identifier`, and are signed only from 10.0 (9.x puts a
`?token=` in the webhook URL instead). It keeps issues, comments and remote links in memory,
answers the REST v2 endpoints the library and syncer use with Jira's shapes and error bodies, and sends
the webhooks Jira would send (signed when a secret is set) for every change, whether made through the API
(as the bot account) or by "a person in the Jira UI" (the `person_*` methods).

Deliberately realistic traps: Cloud answers `410 Gone` on the old `/search`; `/search/jql` has no `total`,
pages by `nextPageToken`, returns only ids unless fields are asked for, refuses unbounded JQL and is
eventually consistent (`search_lag`); JQL naming an issue that does not exist is a 400; user search on
Cloud is a prefix match; setting a field a transition has no screen for is a 400; a summary over 255 or
a description over 32,767 characters is a 400.

What a company-managed site adds, each behind a switch (see `FakeJira`): per-project workflows
(`set_workflow`, `remove_transition`, jira_workflow.py; `GET /project/{key}/statuses` lists each
project's statuses) and transition screens with required fields (`add_transition_field`),
custom fields and required fields on create with create-meta (`add_custom_field`, `add_create_field`,
jira_fields.py), users who are inactive or not assignable in a project (`deactivate_user`,
`make_unassignable`), tickets the bot may no longer see (`hide_from_bot`: issue security), hidden e-mail
addresses (`hide_emails`), Cloud's per-issue write limit
(`issue_write_limits`, jira_limits.py), team-managed projects (`add_project(team_managed=True)`), and bulk
create (`POST /issue/bulk`).

    fake = start_fake_jira(webhook_url=receiver.url, webhook_secret="s3cret")
    fake.faults.append(Fault("POST", r"/issue$", status=429, headers={"Retry-After": "7"}))
    key = fake.person_create("OPS", "Checkout fails", ["sentry-123"])
    fake.person_transition(key, "Done")
    fake.stop()
"""

from __future__ import annotations

import base64
import binascii
import copy
import gc
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncer.fakes.base import (
    CallLog,
    FakeServer,
    Fault,
    Misbehaviour,
    WebhookSender,
    hmac_sha256_hex,
    json_body,
)
from syncer.fakes.jira_fields import (
    CUSTOM_KINDS,
    SYSTEM_FIELDS,
    TEXTAREA_LIMIT,
    TOO_LONG,
    CustomField,
    FieldError,
    Option,
    check_labels,
    custom_meta,
    display,
    field_meta,
    is_empty,
    parse_custom,
    plain,
    render_custom,
    system_name,
    system_schema,
    text_length,
)
from syncer.fakes.jira_jql import JqlError, JqlParser, Matcher, jql_date
from syncer.fakes.jira_limits import IssueWriteLimit
from syncer.fakes.jira_workflow import (
    CATEGORIES,
    ScreenField,
    Status,
    StatusRegistry,
    Transition,
    Workflow,
    simple_workflow,
    strict_workflow,
    team_managed_workflow,
)

BOT_ACCOUNT_ID = "bot-account-id"  # Cloud
BOT_NAME = "syncer-bot"  # Server/DC
PERSON_ACCOUNT_ID = "person-account-id"  # Cloud: the default "someone in the UI"
PERSON_NAME = "pat.person"  # Server/DC
SEARCH_MAX = 100
# Cloud's user searches look at the first 1,000 matches (findUsers, findAssignableUsers in Atlassian's
# OpenAPI description: "up to the thousandth user"); Data Center 9 at 1,000 too, Data Center 10 at the
# first 100 (JRASERVER-78660: "The maximum allowed value is 100 (The combination of maxResults and startAt
# is limited to the first 100 results)").
USER_SEARCH_MAX = 1000
DC10_USER_SEARCH_MAX = 100
BULK_CREATE_MAX = 50  # createIssues: "Creates upto 50 issues"
CREATE_META_MAX = 200

# --------------------------------------------------------------------------------------------------
# The instance's fixed configuration.

RESOLUTIONS = {"Done": "10000", "Won't Do": "10001", "Duplicate": "10002", "Cannot Reproduce": "10003"}
ISSUE_TYPES = {"Epic": "10000", "Story": "10001", "Task": "10002", "Bug": "10004"}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
DEFAULT_PROJECTS = {
    "OPS": ("Operations", ("Backend", "Frontend", "Infrastructure")),
    "PAY": ("Payments", ("Checkout", "Billing")),
    "WEB": ("Website", ("Frontend", "Marketing")),
}
TEAM_STATUSES = (("To Do", "new"), ("In Progress", "indeterminate"), ("Done", "done"))
ISSUE_FIELDS = (
    "summary", "description", "status", "resolution", "resolutiondate", "assignee", "reporter", "creator",
    "labels", "project", "created", "updated", "components", "fixVersions", "priority", "issuetype",
    "statuscategorychangedate",
)
# What every create screen shows (required or not); components only in company-managed projects.
CREATE_SCREEN = {"project": True, "issuetype": True, "summary": True, "description": False, "labels": False,
                 "components": False, "fixVersions": False, "priority": False, "assignee": False,
                 "reporter": False}
EDIT_FIELDS = {"summary", "description", "labels", "components", "fixVersions", "priority", "assignee"}
NOT_ON_SCREEN = "Field '{}' cannot be set. It is not on the appropriate screen, or unknown."
CANNOT_ASSIGN = "User '{}' cannot be assigned issues."


def _jira_time(when: datetime) -> str:
    """Jira's timestamp format: `2024-05-01T12:30:00.000+0000`."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# State


@dataclass
class User:
    account_id: str  # Cloud accountId; on Server/DC the username (`name`)
    display_name: str
    email: str
    email_visible: bool = True  # Cloud privacy settings can hide it
    active: bool = True
    key: str = ""  # Server/DC's immutable user key


@dataclass
class Component:
    id: str
    name: str


@dataclass
class Version:
    id: str
    name: str
    released: bool = False


@dataclass
class Project:
    id: str
    key: str
    name: str
    components: dict[str, Component]  # by lower-case name
    workflow: Workflow
    team_managed: bool = False
    versions: dict[str, Version] = field(default_factory=dict)  # by lower-case name
    # Fields added to its create screens: issue type name (None: every type) -> field id -> required.
    screen_fields: dict[str | None, dict[str, bool]] = field(default_factory=dict)
    unassignable: set[str] = field(default_factory=set)  # account ids that may not be assigned issues here
    next_number: int = 1
    default_workflow: Workflow | None = None  # what reset() goes back to
    type_key: str = "software"  # projectTypeKey: software | service_desk | business

    def restore(self) -> None:
        if self.default_workflow is not None:
            self.workflow = copy.deepcopy(self.default_workflow)
        self.screen_fields.clear()
        self.unassignable.clear()
        self.type_key = "software"


@dataclass
class Comment:
    id: str
    body: str
    author: User
    created: datetime
    # jsdPublic: Cloud marks every comment public outside service projects; on a service project an
    # agent's "internal note" is false (Jira Service Management's comment visibility).
    public: bool = True
    updated: datetime | None = None


@dataclass
class RemoteLink:
    id: int
    global_id: str | None
    object: dict[str, Any]
    application: dict[str, Any] | None = None
    relationship: str | None = None


@dataclass
class Issue:
    id: str
    key: str
    project: Project
    summary: str
    description: str | None
    issuetype: str
    priority: str
    status: Status
    reporter: User
    created: datetime
    searchable_at: float  # time.monotonic() from which search finds it
    updated: datetime = field(default_factory=_now)
    status_changed: datetime = field(default_factory=_now)
    resolution: str | None = None
    resolution_date: datetime | None = None
    assignee: User | None = None
    labels: list[str] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    links: list[RemoteLink] = field(default_factory=list)
    old_keys: list[str] = field(default_factory=list)
    fix_versions: list[Version] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)  # custom field id -> stored value (jira_fields)

    def number(self) -> int:
        return int(self.key.rsplit("-", 1)[1])


class JiraHTTPError(Exception):
    """An answer in Jira's error shape: `{"errorMessages": [...], "errors": {field: message}}`."""

    def __init__(self, status: int, messages: Sequence[str] = (), errors: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {list(messages)} {dict(errors or {})}")
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return JSONResponse({"errorMessages": self.messages, "errors": self.errors},
                            status_code=self.status, headers=self.headers)


def _field_errors(errors: Mapping[str, str]) -> JiraHTTPError:
    return JiraHTTPError(400, [], errors)


def _not_found(what: str = "Issue does not exist or you do not have permission to see it.") -> JiraHTTPError:
    return JiraHTTPError(404, [what])


class _Named(Protocol):
    id: str
    name: str


_Item = TypeVar("_Item", bound=_Named)

# What JQL's ORDER BY can sort on.
_SORT_KEYS: dict[str, Callable[[Issue], Any]] = {
    "id": lambda i: int(i.id),
    "key": lambda i: (i.project.key, i.number()),
    "issuekey": lambda i: (i.project.key, i.number()),
    "created": lambda i: i.created,
    "updated": lambda i: i.updated,
    "priority": lambda i: int(PRIORITIES[i.priority]),
    "status": lambda i: i.status.name,
    "project": lambda i: i.project.key,
    "summary": lambda i: i.summary,
}
# Jira's text search (`text ~ "..."`: summary, description, comments; here the first two) is
# Lucene's: the value's words must all be found, as words or word prefixes, and Lucene's reserved
# characters are refused unless escaped ("Search syntax for text fields", Atlassian's JQL docs).
_LUCENE_RESERVED = re.compile(r"[+\-&|!(){}\[\]^~*?\\:/]")
_WORDS = re.compile(r"\w+")


def _text_match(field_name: str, op: str, values: list[str]) -> Matcher:
    if op not in ("~", "!~"):
        raise JqlError(f"The operator '{op}' is not supported by the '{field_name}' field.")
    query = values[0] if values else ""
    reserved = _LUCENE_RESERVED.search(query)
    if reserved:
        raise JqlError(f"Error in the JQL Query: The character '{reserved.group(0)}' "
                       "is a reserved JQL character. You must enclose it in a string or use the escape "
                       "'\\u0022' instead.")
    words = [w.lower() for w in _WORDS.findall(query)]

    def found(issue: Issue) -> bool:
        text = [w.lower() for w in _WORDS.findall(f"{issue.summary} {issue.description or ''}")]
        hit = all(any(t.startswith(w) for t in text) for w in words)
        return hit if op == "~" else not hit

    return Matcher(found)


# --------------------------------------------------------------------------------------------------
# The Jira model: state, REST rendering, and the changes (each one emits its webhook).


class JiraState:
    def __init__(self, *, cloud: bool, bot_email: str, require_resolution: bool,
                 webhooks: WebhookSender, webhook_secret: str | None, version: tuple[int, int, int]) -> None:
        self.cloud = cloud
        self.version = version
        self.lock = threading.Lock()
        self.base_url = ""
        self.require_resolution = require_resolution
        self.search_lag = 0.0
        # Seconds this Jira's clock is off from the machine's (negative: behind). Every time it tells
        # is on its clock: issues' `updated`, webhook timestamps, serverInfo, the Date header.
        self.clock_skew = 0.0
        self.hide_emails = False
        self.user_search_max = USER_SEARCH_MAX if cloud or version < (10, 0, 0) else DC10_USER_SEARCH_MAX
        self.write_limit: IssueWriteLimit | None = None
        self.webhooks = webhooks
        self.webhook_secret = webhook_secret
        self.issues: dict[str, Issue] = {}
        self.keys: dict[str, str] = {}  # every key an issue ever had -> id
        self.by_label: dict[str, set[str]] = {}
        self.by_project: dict[str, set[str]] = {}
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}
        self.deactivated: set[str] = set()  # by deactivate_user(), active again after a reset
        self.hidden: set[str] = set()  # issue ids the bot may not see (hide_from_bot), until a reset
        self.statuses = StatusRegistry()
        self.custom_fields: dict[str, CustomField] = {}
        self._ids = itertools.count(10001)
        self._project_ids = itertools.count(10000)
        self._component_ids = itertools.count(10000)
        self._version_ids = itertools.count(10000)
        self._custom_ids = itertools.count(10050)
        self._option_ids = itertools.count(10100)
        self._comment_ids = itertools.count(10000)
        self._link_ids = itertools.count(10000)
        self._changelog_ids = itertools.count(100000)
        self._user_keys = itertools.count(10000)
        self.bot = self.add_user(BOT_ACCOUNT_ID if cloud else BOT_NAME, "Syncer Bot", bot_email)
        self.person = self.add_user(PERSON_ACCOUNT_ID if cloud else PERSON_NAME, "Pat Person",
                                    "pat.person@example.com")
        for key, (name, components) in DEFAULT_PROJECTS.items():
            self.add_project(key, components, name)

    # -- configuration ------------------------------------------------------------------------------


    def now(self) -> datetime:
        """The time on this Jira's clock."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_skew)

    def add_user(self, account_id: str, display_name: str, email: str, *, email_visible: bool = True,
                 active: bool = True) -> User:
        user_key = f"JIRAUSER{next(self._user_keys)}"
        user = User(account_id, display_name, email, email_visible, active, user_key)
        self.users[account_id] = user
        return user

    def add_project(self, key: str, components: Iterable[str] = (), name: str | None = None, *,
                    team_managed: bool = False,
                    statuses: Sequence[tuple[str, str]] = TEAM_STATUSES) -> Project:
        project = self.projects.get(key)
        if project is None:
            project_id = str(next(self._project_ids))
            workflow = (team_managed_workflow(self.statuses, project_id, tuple(statuses)) if team_managed
                        else simple_workflow(self.statuses))
            project = Project(project_id, key, name or key.title(), {}, copy.deepcopy(workflow), team_managed,
                              default_workflow=workflow)
            self.projects[key] = project
            self.by_project[key] = set()
        elif project.team_managed != team_managed:
            kind = "team-managed" if project.team_managed else "company-managed"
            raise ValueError(f"project {key} exists and is {kind}")
        if components and project.team_managed:
            raise ValueError(f"{key} is team-managed: the fake's team-managed projects have no components")
        for component in components:
            if component.lower() not in project.components:
                project.components[component.lower()] = Component(str(next(self._component_ids)), component)
        return project

    def set_workflow(self, project_key: str, style: str, **names: Any) -> None:
        project = self.projects[project_key]
        if project.team_managed:
            raise ValueError(f"{project_key} is team-managed: its workflow is its own")
        if style == "strict":
            project.workflow = strict_workflow(self.statuses, **names)
        elif style == "simple" and not names:
            project.workflow = simple_workflow(self.statuses)
        else:
            raise ValueError(f"workflow style must be 'simple' or 'strict' (names only with strict), "
                             f"not {style!r}")

    def add_version(self, project_key: str, name: str, *, released: bool = False) -> Version:
        project = self.projects[project_key]
        version = project.versions.get(name.lower())
        if version is None:
            version = Version(str(next(self._version_ids)), name, released)
            project.versions[name.lower()] = version
        return version

    def add_custom_field(self, name: str, kind: str,
                         options: Iterable[str] | Mapping[str, Iterable[str]] = (), *,
                         field_id: str | None = None) -> CustomField:
        if kind not in CUSTOM_KINDS:
            raise ValueError(f"custom field kind must be one of {sorted(CUSTOM_KINDS)}, not {kind!r}")
        field_id = field_id or f"customfield_{next(self._custom_ids)}"
        if not re.fullmatch(r"customfield_\d+", field_id) or field_id in self.custom_fields:
            raise ValueError(f"{field_id!r} is not a free customfield_NNNNN id")
        children = options if isinstance(options, Mapping) else dict.fromkeys(options, ())
        made = [Option(str(next(self._option_ids)), value,
                       [Option(str(next(self._option_ids)), child) for child in kids])
                for value, kids in children.items()]
        custom = CustomField(field_id, name, kind, made)
        self.custom_fields[field_id] = custom
        return custom

    def add_create_field(self, project_key: str, field_id: str, *, required: bool,
                         issue_type: str | None) -> None:
        project = self.projects[project_key]
        self.field_name(field_id)  # known?
        if field_id == "components" and project.team_managed:
            raise ValueError(f"{project_key} is team-managed: it has no components")
        if issue_type is not None and issue_type not in ISSUE_TYPES:
            raise ValueError(f"no issue type {issue_type!r}; the fake knows {list(ISSUE_TYPES)}")
        project.screen_fields.setdefault(issue_type, {})[field_id] = required

    def remove_transition(self, project_key: str, transition: str) -> None:
        workflow = self.projects[project_key].workflow
        found = workflow.find(transition)
        if found is None:
            raise ValueError(f"no transition {transition!r} in {project_key}'s workflow")
        workflow.transitions.remove(found)

    def add_transition_field(self, project_key: str, transition: str, field_id: str, *,
                             required: bool) -> None:
        workflow = self.projects[project_key].workflow
        found = workflow.find(transition)
        if found is None:
            raise ValueError(f"no transition {transition!r} in {project_key}'s workflow; it has "
                             f"{[(t.id, t.name) for t in workflow.transitions]}")
        self.field_name(field_id)
        found.screen = [f for f in found.screen if f.field_id != field_id] + [ScreenField(field_id, required)]

    def clear_issues(self) -> None:
        self.issues.clear()
        self.keys.clear()
        self.by_label.clear()
        self.hidden.clear()
        for ids in self.by_project.values():
            ids.clear()

    def restore_configuration(self) -> None:
        """Workflows, screens and assignability as each project started; deactivated users active."""
        for project in self.projects.values():
            project.restore()
        for account_id in self.deactivated:
            self.users[account_id].active = True
        self.deactivated.clear()
        if self.write_limit is not None:
            self.write_limit.clear()

    # -- lookups ------------------------------------------------------------------------------------

    def find_issue(self, key_or_id: str) -> Issue | None:
        issue_id = key_or_id if key_or_id in self.issues else self.keys.get(key_or_id.upper())
        return self.issues.get(issue_id) if issue_id else None

    def get_issue(self, key_or_id: str) -> Issue:
        issue = self.find_issue(key_or_id)
        if issue is None:
            raise _not_found()
        return issue

    def bot_issue(self, key_or_id: str) -> Issue:
        """An issue as the API (the bot) may see it. One the bot may not browse (an issue security level
        it is not in, a permission change) answers exactly as a deleted one does: Jira does not tell
        "no permission" from "does not exist" (Cloud REST v2, Get issue: "404 Returned if the issue is
        not found or the user does not have permission to view it",
        https://developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issues/#api-rest-api-2-issue-issueidorkey-get;
        issue security levels: https://support.atlassian.com/jira-cloud-administration/docs/configure-issue-security-schemes/;
        the 404 body is
        "Issue does not exist or you do not have permission to see it."; old Server versions worded the
        two apart, https://gist.github.com/delphinus/fd68dde6e7c780a6dacb, which syncer does not rely on).
        A webhook is still sent for a person's change: a site's admin-registered webhook sees it."""
        issue = self.find_issue(key_or_id)
        if issue is None or issue.id in self.hidden:
            raise _not_found()
        return issue

    def find_project(self, key_or_id: str) -> Project | None:
        return self.projects.get(key_or_id) or next(
            (p for p in self.projects.values() if p.id == key_or_id), None)

    def status_in(self, project: Project, name: str) -> Status:
        status = project.workflow.status(name)
        if status is None:
            raise ValueError(f"no status {name!r} in {project.key}'s workflow; it has "
                             f"{[s.name for s in project.workflow.statuses]}")
        return status

    def field_name(self, field_id: str) -> str:
        if field_id in SYSTEM_FIELDS:
            return system_name(field_id, cloud=self.cloud)
        if field_id in self.custom_fields:
            return self.custom_fields[field_id].name
        raise ValueError(f"no field {field_id!r}: system fields {sorted(SYSTEM_FIELDS)} or a custom field's "
                         "id")

    def assignable(self, user: User, project: Project) -> bool:
        return user.active and user.account_id not in project.unassignable

    def _user(self, value: Any, field_name: str) -> User | None:
        """A user given in a request body: `{"accountId"}` on Cloud, `{"name"}` on Server/DC; None for
        "unassigned" (null, or accountId "-1"). FieldError for a malformed or unknown reference."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise FieldError(f"Could not parse the value for field '{field_name}'.")
        ref = value.get("accountId") if self.cloud else (value.get("name") or value.get("key"))
        if self.cloud and "accountId" not in value and "name" in value:
            raise FieldError("'name' is not supported in GDPR strict mode: use 'accountId'.")
        if ref is None or ref == "-1":
            return None
        user = self.users.get(str(ref)) or (None if self.cloud else next(
            (u for u in self.users.values() if u.key == str(ref)), None))
        if user is None:
            raise FieldError(CANNOT_ASSIGN.format(ref))
        return user

    def _assignee(self, value: Any, project: Project | None) -> User | None:
        user = self._user(value, "assignee")
        if user is None:
            return None
        if not user.active or (project is not None and not self.assignable(user, project)):
            raise FieldError(CANNOT_ASSIGN.format(user.account_id))
        return user

    def assignee_ref(self, value: Any, project: Project) -> User | None:
        """The body of `PUT /issue/{key}/assignee`: a 400 naming the field when Jira would refuse it."""
        try:
            return self._assignee(value, project)
        except FieldError as error:
            raise _field_errors({"assignee": str(error)}) from None

    def _custom_user(self, value: Any) -> User | None:
        try:
            user = self._user(value, "user")
        except FieldError:
            return None
        return user if user is not None and user.active else None

    # -- rendering ----------------------------------------------------------------------------------

    def user_json(self, user: User | None, *, myself: bool = False) -> dict[str, Any] | None:
        if user is None:
            return None
        avatars = {size: f"{self.base_url}/avatar/{size}.png" for size in ("48x48", "24x24", "16x16")}
        # Cloud's profile visibility: most people hide their address, and Jira then leaves `emailAddress`
        # out of every user it shows (searches, issue fields, webhooks); one always sees one's own.
        email_shown = myself or (user.email_visible and not self.hide_emails)
        if self.cloud:
            data: dict[str, Any] = {
                "self": f"{self.base_url}/rest/api/2/user?accountId={user.account_id}",
                "accountId": user.account_id, "avatarUrls": avatars, "displayName": user.display_name,
                "active": user.active, "timeZone": "Etc/UTC", "accountType": "atlassian",
            }
            if email_shown and user.email:
                data["emailAddress"] = user.email
            return data
        data = {
            "self": f"{self.base_url}/rest/api/2/user?username={user.account_id}",
            "name": user.account_id, "key": user.key, "emailAddress": user.email, "avatarUrls": avatars,
            "displayName": user.display_name, "active": user.active, "timeZone": "Etc/UTC",
        }
        if self.hide_emails and not myself:
            del data["emailAddress"]  # Data Center's "Email visibility: hidden"
        return data

    def status_json(self, status: Status) -> dict[str, Any]:
        category = CATEGORIES[status.category]
        data = {
            "self": f"{self.base_url}/rest/api/2/status/{status.id}", "description": "",
            "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png", "name": status.name,
            "id": status.id,
            "statusCategory": {"self": f"{self.base_url}/rest/api/2/statuscategory/{category['id']}",
                               **category},
        }
        if status.project_id is not None:
            data["scope"] = {"type": "PROJECT", "project": {"id": status.project_id}}
        return data

    def project_json(self, project: Project, *, full: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "self": f"{self.base_url}/rest/api/2/project/{project.id}", "id": project.id, "key": project.key,
            "name": project.name, "projectTypeKey": project.type_key, "simplified": project.team_managed,
            "style": "next-gen" if project.team_managed else "classic", "avatarUrls": {},
        }
        if full:
            data["components"] = [self.component_json(c) for c in project.components.values()]
            data["issueTypes"] = [self.issuetype_json(name) for name in ISSUE_TYPES]
            data["versions"] = [self.version_json(v, project) for v in project.versions.values()]
        return data

    def component_json(self, component: Component) -> dict[str, Any]:
        return {"self": f"{self.base_url}/rest/api/2/component/{component.id}", "id": component.id,
                "name": component.name}

    def version_json(self, version: Version, project: Project) -> dict[str, Any]:
        return {"self": f"{self.base_url}/rest/api/2/version/{version.id}", "id": version.id,
                "name": version.name, "archived": False, "released": version.released,
                "projectId": int(project.id)}

    def issuetype_json(self, name: str) -> dict[str, Any]:
        type_id = ISSUE_TYPES[name]
        return {"self": f"{self.base_url}/rest/api/2/issuetype/{type_id}", "id": type_id, "description": "",
                "iconUrl": "", "name": name, "subtask": False, "hierarchyLevel": 1 if name == "Epic" else 0}

    def resolution_json(self, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        res_id = RESOLUTIONS[name]
        return {"self": f"{self.base_url}/rest/api/2/resolution/{res_id}", "id": res_id, "description": "",
                "name": name}

    def priority_json(self, name: str) -> dict[str, Any]:
        pid = PRIORITIES[name]
        return {"self": f"{self.base_url}/rest/api/2/priority/{pid}", "iconUrl": "", "name": name, "id": pid}

    def field_ids(self) -> tuple[str, ...]:
        """Every field an issue shows: the system ones, then the custom fields."""
        return (*ISSUE_FIELDS, *self.custom_fields)

    def field_values(self, issue: Issue) -> dict[str, Any]:
        values = {
            "summary": issue.summary,
            "description": issue.description,
            "status": self.status_json(issue.status),
            "resolution": self.resolution_json(issue.resolution),
            "resolutiondate": _jira_time(issue.resolution_date) if issue.resolution_date else None,
            "assignee": self.user_json(issue.assignee),
            "reporter": self.user_json(issue.reporter),
            "creator": self.user_json(issue.reporter),
            "labels": list(issue.labels),
            "project": self.project_json(issue.project),
            "created": _jira_time(issue.created),
            "updated": _jira_time(issue.updated),
            "components": [self.component_json(c) for c in issue.components],
            "fixVersions": [self.version_json(v, issue.project) for v in issue.fix_versions],
            "priority": self.priority_json(issue.priority),
            "issuetype": self.issuetype_json(issue.issuetype),
            "statuscategorychangedate": _jira_time(issue.status_changed),
        }
        for field_id, custom in self.custom_fields.items():
            stored = issue.custom.get(field_id)
            values[field_id] = render_custom(custom, stored, self.base_url, self.user_json)
        return values

    def issue_json(self, issue: Issue, fields: set[str] | None = None, expand: str = "") -> dict[str, Any]:
        values = self.field_values(issue)
        data: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue.id, "self": f"{self.base_url}/rest/api/2/issue/{issue.id}", "key": issue.key,
            "fields": {k: v for k, v in values.items() if fields is None or k in fields},
        }
        expansions = {e.strip() for e in expand.split(",") if e.strip()}
        if expansions & {"transitions", "transitions.fields"}:
            data["transitions"] = self.transitions_json(issue, "transitions.fields" in expansions)
        return data

    def transition_screen(self, transition: Transition) -> list[ScreenField]:
        """The fields its screen shows; `require_resolution` puts a required resolution on every
        transition into a done status that does not ask for one already."""
        screen = list(transition.screen)
        if (self.require_resolution and transition.to.category == "done"
                and all(f.field_id != "resolution" for f in screen)):
            screen.insert(0, ScreenField("resolution", True))
        return screen

    def transitions_json(self, issue: Issue, with_fields: bool) -> list[dict[str, Any]]:
        """Only the transitions the issue's workflow offers from its status now (getTransitions)."""
        result = []
        for available in issue.project.workflow.available(issue.status):
            screen = self.transition_screen(available)
            transition: dict[str, Any] = {
                "id": available.id, "name": available.name, "to": self.status_json(available.to),
                "hasScreen": bool(screen), "isGlobal": available.sources is None, "isInitial": False,
                "isAvailable": True, "isConditional": False, "isLooped": False,
            }
            if with_fields:
                transition["fields"] = {f.field_id: self.field_meta(issue.project, f.field_id, f.required)
                                        for f in screen}
            result.append(transition)
        return result

    def create_screen(self, project: Project, issuetype: str) -> dict[str, bool]:
        """Field id -> required, for creating an `issuetype` in `project`."""
        screen = {fid: required for fid, required in CREATE_SCREEN.items()
                  if not (fid == "components" and project.team_managed)}
        screen.update(project.screen_fields.get(None, {}))
        screen.update(project.screen_fields.get(issuetype, {}))
        return screen

    def field_meta(self, project: Project, field_id: str, required: bool) -> dict[str, Any]:
        """A field as create-meta and `expand=transitions.fields` describe it (FieldCreateMetadata)."""
        if field_id in self.custom_fields:
            return custom_meta(self.custom_fields[field_id], required=required, base_url=self.base_url,
                               cloud=self.cloud)
        allowed: dict[str, Callable[[], list[Any]]] = {
            "project": lambda: [self.project_json(project)],
            "issuetype": lambda: [self.issuetype_json(name) for name in ISSUE_TYPES],
            "components": lambda: [self.component_json(c) for c in project.components.values()],
            "fixVersions": lambda: [self.version_json(v, project) for v in project.versions.values()],
            "priority": lambda: [self.priority_json(name) for name in PRIORITIES],
            "resolution": lambda: [self.resolution_json(name) for name in RESOLUTIONS],
        }
        search = f"{self.base_url}/rest/api/2/user/assignable/search?project={project.key}&" + (
            "query=" if self.cloud else "username=")
        return field_meta(field_id, self.field_name(field_id), system_schema(field_id),
                          SYSTEM_FIELDS[field_id][4], required=required,
                          allowed_values=allowed[field_id]() if field_id in allowed else None,
                          auto_complete=search if field_id in ("assignee", "reporter") else None)

    def comment_json(self, issue: Issue, comment: Comment) -> dict[str, Any]:
        return {
            "self": f"{self.base_url}/rest/api/2/issue/{issue.id}/comment/{comment.id}", "id": comment.id,
            "author": self.user_json(comment.author), "body": comment.body,
            "updateAuthor": self.user_json(comment.author), "created": _jira_time(comment.created),
            "updated": _jira_time(comment.updated or comment.created), "jsdPublic": comment.public,
        }

    def link_json(self, issue: Issue, link: RemoteLink) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": link.id, "self": f"{self.base_url}/rest/api/2/issue/{issue.key}/remotelink/{link.id}",
            "object": link.object,
        }
        if link.global_id is not None:
            data["globalId"] = link.global_id
        if link.application is not None:
            data["application"] = link.application
        if link.relationship is not None:
            data["relationship"] = link.relationship
        return data

    def snapshot(self, issue: Issue) -> dict[str, Any]:
        """A flat, plain view of one issue for tests and benchmarks."""
        return {
            "id": issue.id, "key": issue.key, "project": issue.project.key, "summary": issue.summary,
            "description": issue.description, "issuetype": issue.issuetype, "priority": issue.priority,
            "status": issue.status.name, "status_category": issue.status.category,
            "resolution": issue.resolution, "assignee": issue.assignee.account_id if issue.assignee else None,
            "reporter": issue.reporter.account_id, "labels": list(issue.labels),
            "components": [c.name for c in issue.components],
            "fix_versions": [v.name for v in issue.fix_versions], "created": issue.created,
            "updated": issue.updated, "old_keys": list(issue.old_keys), "comments": len(issue.comments),
            "remote_links": len(issue.links),
            "custom": {fid: plain(self.custom_fields[fid], value) for fid, value in issue.custom.items()},
        }

    # -- webhooks -----------------------------------------------------------------------------------

    def _emit(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
        }
        if self.cloud:
            # Cloud's delivery identifier, stable across its retries (developer.atlassian.com/cloud/jira/
            # platform/webhooks, "Retry policy"); Data Center's "Managing webhooks" names no such header,
            # only X-Hub-Signature, so a receiver of DC webhooks must dedup without it.
            headers["X-Atlassian-Webhook-Identifier"] = str(uuid.uuid4())
        if self.webhook_secret:
            headers["X-Hub-Signature"] = f"sha256={hmac_sha256_hex(self.webhook_secret, body)}"
        retries = itertools.count(1)
        # A retry repeats the delivery (same identifier, same signature) and says which retry it is.
        self.webhooks.send(headers, body,
                           refresh=lambda: {**headers, "X-Atlassian-Webhook-Retry": str(next(retries))})

    def _wants_webhooks(self) -> bool:
        return bool(self.webhooks.enabled and self.webhooks.url)

    def _issue_event(self, event: str, type_name: str, issue: Issue, actor: User,
                     items: list[dict[str, Any]] | None = None, comment: Comment | None = None) -> None:
        if not self._wants_webhooks():
            return
        payload: dict[str, Any] = {
            "timestamp": int(self.now().timestamp() * 1000), "webhookEvent": event,
            "issue_event_type_name": type_name,
            "user": self.user_json(actor), "issue": self.issue_json(issue),
        }
        if items is not None:
            payload["changelog"] = {"id": str(next(self._changelog_ids)), "items": items}
        if comment is not None:
            payload["comment"] = self.comment_json(issue, comment)
        self._emit(payload)

    def _comment_event(self, issue: Issue, comment: Comment, event: str = "comment_created") -> None:
        if not self._wants_webhooks():
            return
        # Cloud's comment events carry a trimmed issue and no top-level user: the author is the actor.
        trimmed = self.issue_json(issue, {"summary", "issuetype", "project", "assignee", "status"})
        self._emit({"timestamp": int(self.now().timestamp() * 1000), "webhookEvent": event,
                    "comment": self.comment_json(issue, comment), "issue": trimmed})

    # -- changes ------------------------------------------------------------------------------------

    @staticmethod
    def _item(name: str, from_id: Any, from_string: Any, to_id: Any, to_string: Any,
              field_id: str | None = None, *, fieldtype: str = "jira") -> dict[str, Any]:
        item = {"field": name, "fieldtype": fieldtype, "from": from_id, "fromString": from_string,
                "to": to_id, "toString": to_string}
        if field_id:
            item["fieldId"] = field_id
        return item

    def _user_item(self, before: User | None, after: User | None) -> dict[str, Any]:
        item = self._item("assignee", before.account_id if before else None,
                          before.display_name if before else None, after.account_id if after else None,
                          after.display_name if after else None, "assignee")
        if self.cloud:
            item["tmpFromAccountId"] = item["from"]
            item["tmpToAccountId"] = item["to"]
        return item

    # Each check returns the value to store, or raises FieldError with the message Jira gives.

    @staticmethod
    def _summary(summary: Any) -> str:
        if not isinstance(summary, str) or not summary.strip():
            raise FieldError("You must specify a summary of the issue.")
        if "\n" in summary or "\r" in summary:
            raise FieldError("The summary is invalid because it contains newline characters.")
        if text_length(summary) > 255:
            raise FieldError("Summary must be less than 255 characters.")
        return summary

    @staticmethod
    def _description(description: Any) -> str | None:
        if description is None:
            return None
        if not isinstance(description, str):
            raise FieldError("Operation value must be a string")
        if text_length(description) > TEXTAREA_LIMIT:
            raise FieldError(TOO_LONG.format(TEXTAREA_LIMIT))
        return description

    @staticmethod
    def _project_items(known: Mapping[str, _Item], value: Any, *, not_a_list: str, malformed: str,
                       bad_id: str, bad_name: str) -> list[_Item]:
        """Components or versions given as `[{"id"}|{"name"}]`, looked up in the project's `known` (by
        lower-case name); the messages are Jira's for each kind."""
        if not isinstance(value, list):
            raise FieldError(not_a_list)
        by_id = {item.id: item for item in known.values()}
        found: list[_Item] = []
        for ref in value:
            if not isinstance(ref, Mapping):
                raise FieldError(malformed.format(ref))
            if "id" in ref:
                if str(ref["id"]) not in by_id:
                    raise FieldError(bad_id.format(ref["id"]))
                found.append(by_id[str(ref["id"])])
            elif str(ref.get("name", "")).lower() in known:
                found.append(known[str(ref["name"]).lower()])
            else:
                raise FieldError(bad_name.format(ref.get("name")))
        return found

    @classmethod
    def _components(cls, project: Project, value: Any) -> list[Component]:
        unparsable = "Could not parse the value for field 'components'."
        return cls._project_items(project.components, value, not_a_list=unparsable, malformed=unparsable,
                                  bad_id="Component with id '{}' does not exist.",
                                  bad_name="Component name '{}' is not valid")

    @classmethod
    def _versions(cls, project: Project, value: Any) -> list[Version]:
        return cls._project_items(project.versions, value, not_a_list="data was not an array",
                                  malformed="Version name '{}' is not valid",
                                  bad_id="Version id '{}' is not valid",
                                  bad_name="Version name '{}' is not valid")

    @staticmethod
    def _priority(value: Any) -> str:
        if isinstance(value, Mapping):
            for name, pid in PRIORITIES.items():
                if value.get("name") == name or str(value.get("id")) == pid:
                    return name
        given = value.get("name") if isinstance(value, Mapping) else value
        raise FieldError(f"Priority name '{given}' is not valid")

    @staticmethod
    def _resolution(ref: Any) -> str:
        named = ref.get("name") if isinstance(ref, Mapping) else None
        by_id = {rid: name for name, rid in RESOLUTIONS.items()}
        if isinstance(ref, Mapping) and str(ref.get("id")) in by_id:
            return by_id[str(ref["id"])]
        if named in RESOLUTIONS:
            return str(named)
        raise FieldError(f"Could not find valid 'id' or 'name' in resolution object: {named}")

    def _parse(self, project: Project | None, fields: Mapping[str, Any], on_screen: Mapping[str, bool],
               errors: dict[str, str]) -> dict[str, Any]:
        """The changes a request's `fields` ask for, as `_apply` takes them; every refusal in `errors`:
        a field the screen does not show, a value Jira would not take, a required field left empty."""
        checks: dict[str, Callable[[Any], Any]] = {
            "summary": self._summary, "description": self._description, "labels": check_labels,
            "priority": self._priority, "resolution": self._resolution,
            "assignee": lambda value: self._assignee(value, project),
        }
        if project is not None:
            checks["components"] = lambda value: self._components(project, value)
            checks["fixVersions"] = lambda value: self._versions(project, value)
        changes: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for name, value in fields.items():
            if name not in on_screen:
                errors[name] = NOT_ON_SCREEN.format(name)
                continue
            try:
                if name in self.custom_fields:
                    custom[name] = parse_custom(self.custom_fields[name], value, self._custom_user)
                elif name in checks:
                    changes[name] = checks[name](value)
            except FieldError as error:
                errors[name] = str(error)
                continue
            if on_screen[name] and is_empty(value):
                errors[name] = f"{self.field_name(name)} is required."
        if custom:
            changes["custom"] = custom
        return changes

    def _required(self, on_screen: Mapping[str, bool], given: Iterable[str], errors: dict[str, str]) -> None:
        for field_id, required in on_screen.items():
            if required and field_id not in given and field_id not in errors:
                errors[field_id] = f"{self.field_name(field_id)} is required."

    def _index(self, issue: Issue) -> None:
        self.keys[issue.key] = issue.id
        self.by_project.setdefault(issue.project.key, set()).add(issue.id)
        for label in issue.labels:
            self.by_label.setdefault(label, set()).add(issue.id)

    def _unindex_labels(self, issue: Issue) -> None:
        for label in issue.labels:
            ids = self.by_label.get(label)
            if ids is not None:
                ids.discard(issue.id)
                if not ids:
                    del self.by_label[label]

    def count_write(self, issue: Issue) -> None:
        """Cloud's per-issue write limit, when switched on: a 429 naming it, and nothing written."""
        if self.write_limit is None:
            return
        refused = self.write_limit.admit(issue.id, time.monotonic())
        if refused is not None:
            wait, limit = refused
            reset = self.now() + timedelta(seconds=wait)
            raise JiraHTTPError(429, ["Rate limit exceeded."], headers={
                "Retry-After": str(wait), "RateLimit-Reason": "jira-per-issue-on-write",
                "X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
            })

    def create(self, body: Any, actor: User) -> Issue:
        if not isinstance(body, Mapping) or not isinstance(body.get("fields"), Mapping):
            raise JiraHTTPError(400, ["Can not deserialize the request: 'fields' is missing."])
        fields: Mapping[str, Any] = body["fields"]
        errors: dict[str, str] = {}
        project_ref = fields.get("project")
        project = None
        if isinstance(project_ref, Mapping):
            project = self.projects.get(str(project_ref.get("key", ""))) or next(
                (p for p in self.projects.values() if p.id == str(project_ref.get("id", ""))), None)
        type_ref = fields.get("issuetype")
        issuetype = None
        if isinstance(type_ref, Mapping):
            issuetype = next((name for name, tid in ISSUE_TYPES.items()
                              if str(type_ref.get("name", "")).lower() == name.lower()
                              or str(type_ref.get("id", "")) == tid), None)
        on_screen = (self.create_screen(project, issuetype) if project and issuetype
                     else {**CREATE_SCREEN, **dict.fromkeys(self.custom_fields, False)})
        given = {k: v for k, v in fields.items() if k not in ("project", "issuetype")}
        changes = self._parse(project, given, on_screen, errors)
        if project is None:
            errors["project"] = "valid project is required"
        if issuetype is None:
            errors["issuetype"] = "valid issue type is required"
        if "summary" not in fields:
            errors["summary"] = "You must specify a summary of the issue."
        self._required(on_screen, fields, errors)
        if errors:
            raise _field_errors(errors)
        assert project is not None
        assert issuetype is not None
        now = self.now()
        issue = Issue(
            id=str(next(self._ids)), key=f"{project.key}-{project.next_number}", project=project,
            summary=changes["summary"], description=changes.get("description"), issuetype=issuetype,
            priority=changes.get("priority", "Medium"), status=project.workflow.initial, reporter=actor,
            created=now, updated=now, status_changed=now, searchable_at=time.monotonic() + self.search_lag,
            assignee=changes.get("assignee"), labels=changes.get("labels", []),
            components=changes.get("components", []), fix_versions=changes.get("fixVersions", []),
            custom={fid: value for fid, value in changes.get("custom", {}).items() if value is not None},
        )
        project.next_number += 1
        self.issues[issue.id] = issue
        self._index(issue)
        self._issue_event("jira:issue_created", "issue_created", issue, actor)
        return issue

    def seed(self, project_key: str, n: int, *, status: str, labels: Callable[[int], Sequence[str]] | None,
             summary: str) -> list[tuple[str, str]]:
        """Many tickets without validation, webhooks or search lag (see `FakeJira.seed_tickets`)."""
        project = self.projects[project_key]
        target = self.status_in(project, status)
        resolution = None
        if target.category == "done":
            resolution = next((t.resolution for t in project.workflow.transitions
                               if t.to == target and t.resolution), "Done")
        now = self.now()
        made: list[tuple[str, str]] = []
        for k in range(n):
            issue = Issue(
                id=str(next(self._ids)), key=f"{project.key}-{project.next_number}", project=project,
                summary=summary.replace("{n}", str(k)), description=None, issuetype="Bug", priority="Medium",
                status=target, reporter=self.bot, created=now, updated=now, status_changed=now,
                searchable_at=0.0, resolution=resolution,
                labels=list(labels(k)) if labels is not None else [],
            )
            project.next_number += 1
            self.issues[issue.id] = issue
            self._index(issue)
            made.append((issue.id, issue.key))
        return made

    def edit_screen(self, issue: Issue) -> dict[str, bool]:
        """What an edit may set: the usual fields, and the custom fields of the issue's create screen."""
        create = self.create_screen(issue.project, issue.issuetype)
        screen = {fid: create.get(fid, False) for fid in EDIT_FIELDS
                  if not (fid == "components" and issue.project.team_managed)}
        screen.update({fid: required for fid, required in create.items() if fid in self.custom_fields})
        return screen

    def edit(self, issue: Issue, body: Any, actor: User) -> None:
        if not isinstance(body, Mapping):
            raise JiraHTTPError(400, ["Can not deserialize the request."])
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, Mapping) or not isinstance(update, Mapping):
            raise JiraHTTPError(400, ["Can not deserialize the request."])
        errors: dict[str, str] = {}
        on_screen = self.edit_screen(issue)
        for name in update:
            if name not in on_screen and name != "comment":
                errors[name] = NOT_ON_SCREEN.format(name)
        changes = self._parse(issue.project, fields, on_screen, errors)
        labels = list(changes.get("labels", issue.labels))
        for op in update.get("labels", []) if isinstance(update.get("labels"), list) else []:
            try:
                if not isinstance(op, Mapping):
                    raise FieldError("Could not parse the value for field 'labels'.")
                if "add" in op:
                    labels += [label for label in check_labels([op["add"]]) if label not in labels]
                if "remove" in op:
                    labels = [label for label in labels if label != op["remove"]]
                if "set" in op:
                    labels = check_labels(op["set"])
            except FieldError as error:
                errors["labels"] = str(error)
            changes["labels"] = labels
        comments = update.get("comment", []) if isinstance(update.get("comment"), list) else []
        bodies = [op["add"]["body"] for op in comments
                  if isinstance(op, Mapping) and isinstance(op.get("add"), Mapping)
                  and isinstance(op["add"].get("body"), str)]
        if errors:
            raise _field_errors(errors)
        items = self._apply(issue, changes)
        if items:
            only_assignee = all(item["field"] == "assignee" for item in items)
            self._issue_event("jira:issue_updated", "issue_assigned" if only_assignee else "issue_updated",
                              issue, actor, items)
        for text in bodies:
            self.comment(issue, text, actor)

    @staticmethod
    def _list_items(name: str, field_id: str, before: Sequence[Component | Version],
                    after: Sequence[Component | Version]) -> list[dict[str, Any]]:
        items = [JiraState._item(name, gone.id, gone.name, None, None, field_id)
                 for gone in before if gone not in after]
        return items + [JiraState._item(name, None, None, new.id, new.name, field_id)
                        for new in after if new not in before]

    def _apply(self, issue: Issue, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Set fields and return the changelog items for what actually changed."""
        items: list[dict[str, Any]] = []
        if "summary" in changes and changes["summary"] != issue.summary:
            items.append(self._item("summary", None, issue.summary, None, changes["summary"], "summary"))
            issue.summary = changes["summary"]
        if "description" in changes and changes["description"] != issue.description:
            items.append(self._item("description", None, issue.description, None, changes["description"],
                                    "description"))
            issue.description = changes["description"]
        if "priority" in changes and changes["priority"] != issue.priority:
            items.append(self._item("priority", PRIORITIES[issue.priority], issue.priority,
                                    PRIORITIES[changes["priority"]], changes["priority"], "priority"))
            issue.priority = changes["priority"]
        if "assignee" in changes and changes["assignee"] is not issue.assignee:
            items.append(self._user_item(issue.assignee, changes["assignee"]))
            issue.assignee = changes["assignee"]
        if "labels" in changes and changes["labels"] != issue.labels:
            items.append(self._item("labels", None, " ".join(issue.labels), None, " ".join(changes["labels"]),
                                    "labels"))
            self._unindex_labels(issue)
            issue.labels = list(changes["labels"])
            self._index(issue)
        if "components" in changes and changes["components"] != issue.components:
            items += self._list_items("Component", "components", issue.components, changes["components"])
            issue.components = list(changes["components"])
        if "fixVersions" in changes and changes["fixVersions"] != issue.fix_versions:
            items += self._list_items("Fix Version", "fixVersions", issue.fix_versions,
                                      changes["fixVersions"])
            issue.fix_versions = list(changes["fixVersions"])
        for field_id, value in changes.get("custom", {}).items():
            before = issue.custom.get(field_id)
            if value != before:
                custom = self.custom_fields[field_id]
                items.append(self._item(custom.name, None, display(custom, before), None,
                                        display(custom, value), field_id, fieldtype="custom"))
                if value is None:
                    issue.custom.pop(field_id, None)
                else:
                    issue.custom[field_id] = value
        if items:
            issue.updated = self.now()
        return items

    def assign(self, issue: Issue, user: User | None, actor: User) -> None:
        if user is issue.assignee:
            return
        items = self._apply(issue, {"assignee": user})
        self._issue_event("jira:issue_updated", "issue_assigned", issue, actor, items)

    def transition(self, issue: Issue, body: Any, actor: User) -> None:
        if not isinstance(body, Mapping) or not isinstance(body.get("transition"), Mapping):
            raise JiraHTTPError(400, ["Missing 'transition' identifier"])
        transition_id = str(body["transition"].get("id", ""))
        offered = issue.project.workflow.available(issue.status)
        chosen = next((t for t in offered if t.id == transition_id), None)
        if chosen is None:
            # What Jira answers for an id that does not exist AND for one its workflow does not offer from
            # the issue's status now.
            raise JiraHTTPError(400, [f"Transition id '{transition_id}' is not valid for this issue."])
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, Mapping) or not isinstance(update, Mapping):
            raise JiraHTTPError(400, ["Can not deserialize the request."])
        on_screen = {f.field_id: f.required for f in self.transition_screen(chosen)}
        errors: dict[str, str] = {}
        changes = self._parse(issue.project, fields, on_screen, errors)
        self._required(on_screen, fields, errors)
        comments = update.get("comment", []) if isinstance(update.get("comment"), list) else []
        bodies = [op["add"]["body"] for op in comments
                  if isinstance(op, Mapping) and isinstance(op.get("add"), Mapping)
                  and isinstance(op["add"].get("body"), str)]
        if errors:
            raise _field_errors(errors)
        resolution = changes.pop("resolution", chosen.resolution)
        self.move_to(issue, chosen.to, resolution, actor, changes)
        for text in bodies:
            self.comment(issue, text, actor)

    def move_to(self, issue: Issue, target: Status, resolution: str | None, actor: User,
                changes: Mapping[str, Any] | None = None) -> None:
        before_status, before_resolution = issue.status, issue.resolution
        items = self._apply(issue, changes or {})
        now = self.now()
        issue.status = target
        issue.status_changed = now
        issue.updated = now
        issue.resolution = resolution if target.category == "done" else None
        issue.resolution_date = (issue.resolution_date or now) if issue.resolution else None
        if issue.resolution != before_resolution:
            items.append(self._item(
                "resolution", RESOLUTIONS.get(before_resolution or ""), before_resolution,
                RESOLUTIONS.get(issue.resolution or ""), issue.resolution, "resolution"))
        items.append(self._item("status", before_status.id, before_status.name, target.id, target.name,
                                "status"))
        self._issue_event("jira:issue_updated", "issue_generic", issue, actor, items)

    def comment(self, issue: Issue, text: Any, actor: User, *, public: bool = True) -> Comment:
        if not isinstance(text, str) or not text.strip():
            raise _field_errors({"comment": "Comment body can not be empty!"})
        if text_length(text) > TEXTAREA_LIMIT:
            raise _field_errors({"comment": TOO_LONG.format(TEXTAREA_LIMIT)})
        comment = Comment(str(next(self._comment_ids)), text, actor, self.now(), public)
        issue.comments.append(comment)
        issue.updated = comment.created
        self._comment_event(issue, comment)
        self._issue_event("jira:issue_updated", "issue_commented", issue, actor, None, comment)
        return comment

    def find_comment(self, issue: Issue, comment_id: str) -> Comment:
        found = next((c for c in issue.comments if c.id == comment_id), None)
        if found is None:
            raise _not_found(f"Can not find a comment for the id: {comment_id}.")
        return found

    def edit_comment(self, issue: Issue, comment_id: str, text: Any, actor: User) -> Comment:
        """`comment_updated`, and `jira:issue_updated` of type issue_comment_edited."""
        comment = self.find_comment(issue, comment_id)
        if not isinstance(text, str) or not text.strip():
            raise _field_errors({"comment": "Comment body can not be empty!"})
        comment.body, comment.updated = text, self.now()
        issue.updated = comment.updated
        self._comment_event(issue, comment, "comment_updated")
        self._issue_event("jira:issue_updated", "issue_comment_edited", issue, actor, None, comment)
        return comment

    def delete_comment(self, issue: Issue, comment_id: str, actor: User) -> None:
        """`comment_deleted` (with the comment as it was), and issue_comment_deleted."""
        comment = self.find_comment(issue, comment_id)
        issue.comments.remove(comment)
        issue.updated = self.now()
        self._comment_event(issue, comment, "comment_deleted")
        self._issue_event("jira:issue_updated", "issue_comment_deleted", issue, actor, None, comment)

    def delete(self, issue: Issue, actor: User) -> None:
        self._unindex_labels(issue)
        self.by_project.get(issue.project.key, set()).discard(issue.id)
        for key in [issue.key, *issue.old_keys]:
            self.keys.pop(key, None)
        del self.issues[issue.id]
        self._issue_event("jira:issue_deleted", "issue_deleted", issue, actor)

    def move(self, issue: Issue, project: Project, actor: User) -> None:
        old_project, old_key = issue.project, issue.key
        self.by_project[old_project.key].discard(issue.id)
        issue.old_keys.append(old_key)
        issue.project = project
        issue.key = f"{project.key}-{project.next_number}"
        project.next_number += 1
        issue.components = []  # components and versions belong to a project
        issue.fix_versions = []
        # Moving asks where each status goes when the new workflow lacks it: the same category's first.
        if project.workflow.status(issue.status.id) is None:
            issue.status = project.workflow.first_in(issue.status.category)
        issue.updated = self.now()
        self._index(issue)
        items = [
            self._item("project", old_project.id, old_project.name, project.id, project.name, "project"),
            self._item("Key", None, old_key, None, issue.key),
        ]
        self._issue_event("jira:issue_updated", "issue_moved", issue, actor, items)

    def upsert_link(self, issue: Issue, body: Any) -> tuple[RemoteLink, bool]:
        if not isinstance(body, Mapping) or not isinstance(body.get("object"), Mapping):
            raise _field_errors({"object": "'object' is required."})
        obj = dict(body["object"])
        errors = {}
        if not isinstance(obj.get("url"), str) or not obj["url"]:
            errors["url"] = "'url' is required."
        if not isinstance(obj.get("title"), str) or not obj["title"]:
            errors["title"] = "'title' is required."
        global_id = body.get("globalId")
        if global_id is not None and (not isinstance(global_id, str) or len(global_id) > 255):
            errors["globalId"] = "'globalId' must be a string of at most 255 characters."
        if errors:
            raise _field_errors(errors)
        existing = next((link for link in issue.links
                         if global_id is not None and link.global_id == global_id), None)
        if existing is not None:
            existing.object = obj
            existing.application = body.get("application") or existing.application
            existing.relationship = body.get("relationship") or existing.relationship
            return existing, False
        link = RemoteLink(next(self._link_ids), global_id, obj, body.get("application"),
                          body.get("relationship"))
        issue.links.append(link)
        return link, True

    # -- search -------------------------------------------------------------------------------------

    def _issue_refs(self, values: list[str], field_name: str, strict: bool, warnings: list[str]) -> set[str]:
        ids: set[str] = set()
        missing = []
        for value in values:
            issue = self.find_issue(value)
            if issue is None or issue.id in self.hidden:  # JQL does not leak what the bot may not see
                missing.append(f"An issue with key '{value}' does not exist for field '{field_name}'.")
            else:
                ids.add(issue.id)
        if missing and strict:
            raise JqlError(*missing)
        warnings.extend(missing)
        return ids

    def _clause_factory(self, strict: bool) -> Callable[[str, str, list[str], list[str]], Matcher]:
        now = self.now()

        def equality(field_name: str, op: str, wanted: set[Any], value_of: Callable[[Issue], Any],
                     candidates: Callable[[], set[str] | None] = lambda: None,
                     empty: Callable[[Issue], bool] | None = None) -> Matcher:
            if op in ("is", "is not"):
                if empty is None:
                    raise JqlError(f"The operator '{op.upper()}' is not supported by the '{field_name}' "
                                   "field.")
                return Matcher(empty if op == "is" else (lambda issue: not empty(issue)))
            if op in ("=", "in"):
                return Matcher(lambda issue: value_of(issue) in wanted, candidates)
            if op in ("!=", "not in"):
                return Matcher(lambda issue: value_of(issue) not in wanted and not (empty and empty(issue)))
            raise JqlError(f"The operator '{op}' is not supported by the '{field_name}' field.")

        def clause(field_name: str, op: str, values: list[str], warnings: list[str]) -> Matcher:
            name = field_name.lower()
            if name == "labels":
                wanted = set(values)
                if op in ("=", "in"):
                    return Matcher(lambda i: bool(wanted.intersection(i.labels)),
                                   lambda: set().union(*[self.by_label.get(v, set()) for v in wanted]))
                if op in ("!=", "not in"):
                    return Matcher(lambda i: bool(i.labels) and not wanted.intersection(i.labels))
                return equality(field_name, op, wanted, lambda i: None, empty=lambda i: not i.labels)
            if name in ("id", "key", "issue", "issuekey"):
                if op not in ("=", "!=", "in", "not in"):
                    raise JqlError(f"The operator '{op}' is not supported by the '{field_name}' field.")
                ids = self._issue_refs(values, field_name, strict, warnings)
                return equality(field_name, op, ids, lambda i: i.id, lambda: set(ids))
            if name == "project":
                keys = set()
                for value in values:
                    project = self.projects.get(value.upper()) or next(
                        (p for p in self.projects.values() if value in (p.id, p.name)), None)
                    if project is None:
                        raise JqlError(f"The value '{value}' does not exist for the field '{field_name}'.")
                    keys.add(project.key)
                return equality(field_name, op, keys, lambda i: i.project.key,
                                lambda: set().union(*[self.by_project.get(k, set()) for k in keys]))
            if name == "status":
                statuses: set[str] = set()
                for value in values:
                    named = self.statuses.matching(value)  # every project's status of that name
                    if not named:
                        raise JqlError(f"The value '{value}' does not exist for the field 'status'.")
                    statuses.update(s.id for s in named)
                return equality(field_name, op, statuses, lambda i: i.status.id)
            if name == "statuscategory":
                categories = set()
                for value in values:
                    found = next((key for key, c in CATEGORIES.items()
                                  if value.lower() in (key, str(c["id"]), str(c["name"]).lower())), None)
                    if found is None:
                        raise JqlError(f"The value '{value}' does not exist for the field 'statusCategory'.")
                    categories.add(found)
                return equality(field_name, op, categories, lambda i: i.status.category)
            if name == "resolution":
                if any(v.lower() == "unresolved" for v in values) and op in ("=", "is"):
                    return Matcher(lambda i: i.resolution is None)
                known = {v for v in values if v in RESOLUTIONS}
                if op not in ("is", "is not") and len(known) != len(values):
                    bad = next(v for v in values if v not in RESOLUTIONS)
                    raise JqlError(f"The value '{bad}' does not exist for the field 'resolution'.")
                return equality(field_name, op, known, lambda i: i.resolution,
                                empty=lambda i: i.resolution is None)
            if name == "assignee":
                people = {u.account_id for u in self.users.values()
                          if any(v in (u.account_id, u.email, u.display_name) for v in values)}
                if op in ("=", "in", "!=", "not in") and not people:
                    raise JqlError(f"The value '{values[0]}' does not exist for the field 'assignee'.")
                return equality(field_name, op, people,
                                lambda i: i.assignee.account_id if i.assignee else None,
                                empty=lambda i: i.assignee is None)
            if name == "text":
                return _text_match(field_name, op, values)
            if name in ("updated", "created", "updateddate", "createddate"):
                attr = "updated" if name.startswith("updated") else "created"
                if op not in ("=", ">", ">=", "<", "<="):
                    raise JqlError(f"The operator '{op}' is not supported by the '{field_name}' field.")
                when = jql_date(values[0], field_name, now)
                compare: dict[str, Callable[[datetime], bool]] = {
                    "=": lambda d: d == when, ">": lambda d: d > when, ">=": lambda d: d >= when,
                    "<": lambda d: d < when, "<=": lambda d: d <= when,
                }
                check = compare[op]
                return Matcher(lambda i: check(getattr(i, attr)))
            raise JqlError(f"Field '{field_name}' does not exist or you do not have permission to view it.")

        return clause

    def search(self, jql: str, *, strict: bool = True, bounded: bool = False,
               reconcile: Iterable[str] = ()) -> tuple[list[Issue], list[str]]:
        """Matching issues, and the warnings of a non-strict query. Issues created less than
        `search_lag` ago are not found, unless their ids are in `reconcile` (Cloud's reconcileIssues:
        read-after-write consistency for issues the caller knows)."""
        query = JqlParser(jql, self._clause_factory(strict)).parse()
        if bounded and query.where is None:
            raise JqlError("Unbounded JQL queries are not allowed here. Please add a search restriction to "
                           "your query.")
        for name, _ in query.order:
            if name not in _SORT_KEYS:
                raise JqlError(f"Not able to sort using field '{name}'.")
        visible_from = time.monotonic()
        known = set(reconcile)
        where = query.where
        candidates = where.candidates() if where is not None else None
        pool: Iterable[Issue] = (
            self.issues.values() if candidates is None
            else (self.issues[i] for i in candidates if i in self.issues)
        )
        hits = [issue for issue in pool
                if issue.id not in self.hidden
                and (issue.searchable_at <= visible_from or issue.id in known)
                and (where is None or where.match(issue))]
        hits.sort(key=lambda i: int(i.id))
        for name, descending in reversed(query.order):
            hits.sort(key=_SORT_KEYS[name], reverse=descending)
        return hits, query.warnings

    def find_users(self, text: str) -> list[User]:
        """Cloud's `query=` and Server's `username=`: a case-insensitive PREFIX match on the display name
        (any word of it), the e-mail address and (Server) the username. A hidden e-mail address is
        matched only exactly, and the answer still hides it."""
        wanted = text.strip().lower()

        def matches(user: User) -> bool:
            names = [user.display_name.lower(), *user.display_name.lower().split()]
            if not self.cloud:
                names.append(user.account_id.lower())
            hidden = self.hide_emails or (self.cloud and not user.email_visible)
            if not hidden:
                names.append(user.email.lower())
            elif user.email.lower() == wanted:
                return True
            return any(name.startswith(wanted) for name in names if name)

        return [user for user in self.users.values() if wanted and matches(user)]


def _wanted_fields(params: Sequence[str] | None, default: str, known: Sequence[str]) -> set[str]:
    """Jira's `fields` parameter: names, `*all`, `*navigable`, and `-name` to leave one out."""
    names = [n.strip() for part in (params if params is not None else [default]) for n in part.split(",")]
    names = [n for n in names if n]
    chosen: set[str] = set()
    for name in names:
        if name in ("*all", "*navigable"):
            chosen.update(known)
        elif name in known:
            chosen.add(name)
    for name in names:
        if name.startswith("-"):
            chosen.discard(name[1:])
    return chosen


def _page_token(offset: int, jql: str) -> str:
    digest = hashlib.sha256(jql.encode()).hexdigest()[:12]
    return base64.urlsafe_b64encode(f"{offset}:{digest}".encode()).decode().rstrip("=")


def _read_page_token(token: str, jql: str) -> int:
    try:
        offset, digest = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
        if digest == hashlib.sha256(jql.encode()).hexdigest()[:12]:
            return max(0, int(offset))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise JiraHTTPError(400, ["The provided next page token is invalid or expired."])


def _int_param(value: Any, default: int, cap: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(0, min(number, cap))


# --------------------------------------------------------------------------------------------------
# HTTP


def _params(request: Request, body: Any, name: str) -> list[str] | None:
    """A parameter from the JSON body (POST) or the query string (GET); lists may repeat or use commas."""
    if request.method == "POST" and isinstance(body, Mapping):
        value = body.get(name)
        if value is None:
            return None
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    values = request.query_params.getlist(name)
    return values or None


class JiraApp:
    """The routes. Every handler runs under the state lock: tests read state from other threads."""

    def __init__(self, state: JiraState, *, email: str, token: str, pat: str | None) -> None:
        self.state = state
        basic = base64.b64encode(f"{email}:{token}".encode()).decode()
        self.expected_auth = f"Basic {basic}" if state.cloud else f"Bearer {pat}"
        api = "/rest/api/{version}"
        self.routes = [
            Route(f"{api}/serverInfo", self._wrap(self.server_info), methods=["GET"]),
            Route(f"{api}/myself", self._wrap(self.myself), methods=["GET"]),
            Route(f"{api}/field", self._wrap(self.fields), methods=["GET"]),
            Route(f"{api}/project", self._wrap(self.projects), methods=["GET"]),
            Route(f"{api}/project/{{key}}", self._wrap(self.project), methods=["GET"]),
            Route(f"{api}/project/{{key}}/components", self._wrap(self.project_components), methods=["GET"]),
            Route(f"{api}/project/{{key}}/statuses", self._wrap(self.project_statuses), methods=["GET"]),
            Route(f"{api}/issuetype", self._wrap(self.issue_types), methods=["GET"]),
            Route(f"{api}/priority", self._wrap(self.priorities), methods=["GET"]),
            Route(f"{api}/resolution", self._wrap(self.resolutions), methods=["GET"]),
            Route(f"{api}/status", self._wrap(self.statuses), methods=["GET"]),
            Route(f"{api}/issue", self._wrap(self.create_issue), methods=["POST"]),
            Route(f"{api}/issue/bulk", self._wrap(self.bulk_create), methods=["POST"]),
            Route(f"{api}/issue/createmeta/{{key}}/issuetypes", self._wrap(self.create_meta_types),
                  methods=["GET"]),
            Route(f"{api}/issue/createmeta/{{key}}/issuetypes/{{type_id}}",
                  self._wrap(self.create_meta_fields), methods=["GET"]),
            Route(f"{api}/issue/{{key}}", self._wrap(self.issue), methods=["GET", "PUT", "DELETE"]),
            Route(f"{api}/issue/{{key}}/assignee", self._wrap(self.assignee), methods=["PUT"]),
            Route(f"{api}/issue/{{key}}/transitions", self._wrap(self.transitions), methods=["GET", "POST"]),
            Route(f"{api}/issue/{{key}}/comment", self._wrap(self.comments), methods=["GET", "POST"]),
            Route(f"{api}/issue/{{key}}/comment/{{comment_id}}", self._wrap(self.one_comment),
                  methods=["GET", "PUT", "DELETE"]),
            Route(f"{api}/issue/{{key}}/remotelink", self._wrap(self.remote_links),
                  methods=["GET", "POST", "DELETE"]),
            Route(f"{api}/issue/{{key}}/remotelink/{{link_id}}", self._wrap(self.remote_link),
                  methods=["GET", "DELETE"]),
            Route(f"{api}/search/jql", self._wrap(self.search_jql), methods=["GET", "POST"]),
            Route(f"{api}/search", self._wrap(self.search), methods=["GET", "POST"]),
            Route(f"{api}/user/search", self._wrap(self.user_search), methods=["GET"]),
            Route(f"{api}/user/assignable/search", self._wrap(self.assignable_search), methods=["GET"]),
            Route(f"{api}/user", self._wrap(self.user), methods=["GET"]),
            Route("/rest/applinks/latest/listApplicationlinks", self._wrap(self.applinks), methods=["GET"]),
        ]
        self.app = Starlette(routes=self.routes)

    def _wrap(self, handler: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if request.path_params.get("version", "2") not in ("2", "latest"):
                return JiraHTTPError(404, ["Unknown REST API version."]).response()
            if not hmac.compare_digest(request.headers.get("authorization", ""), self.expected_auth):
                return JiraHTTPError(
                    401, ["You are not authenticated. Authentication required to perform this operation."],
                    headers={"X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
                             "WWW-Authenticate": 'Basic realm="protected-area"' if self.state.cloud
                             else 'Bearer realm="Jira"'},
                ).response()
            body: Any = None
            if request.method in ("POST", "PUT"):
                raw = await request.body()
                if raw and not request.headers.get("content-type", "").startswith("application/json"):
                    return Response(status_code=415)
                body = await json_body(request)
                if body is None:
                    not_json = JiraHTTPError(400, ["Unexpected character: the request body is not JSON."])
                    return not_json.response()
            try:
                with self.state.lock:
                    result = handler(request, body)
            except JiraHTTPError as error:
                return error.response()
            except JqlError as error:
                return JiraHTTPError(400, error.messages).response()
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return endpoint

    # -- instance -----------------------------------------------------------------------------------

    def server_info(self, request: Request, body: Any) -> Any:
        cloud = self.state.cloud
        major, minor, patch = self.state.version
        return {
            "baseUrl": self.state.base_url,
            "version": "1001.0.0-SNAPSHOT" if cloud else f"{major}.{minor}.{patch}",
            "versionNumbers": [1001, 0, 0] if cloud else [major, minor, patch],
            # Data Center calls itself "Server" here, as Server did.
            "deploymentType": "Cloud" if cloud else "Server",
            "buildNumber": 100282 if cloud else major * 1_000_000 + minor * 10_000 + patch,
            "buildDate": "2026-01-01T00:00:00.000+0000", "serverTime": _jira_time(self.state.now()),
            "scmInfo": "0" * 40, "serverTitle": "Jira", "defaultLocale": {"locale": "en_US"},
            "serverTimeZone": "Etc/UTC",
        }

    def myself(self, request: Request, body: Any) -> Any:
        return {**(self.state.user_json(self.state.bot, myself=True) or {}), "locale": "en_US",
                "groups": {"size": 1, "items": []}, "applicationRoles": {"size": 1, "items": []}}

    def fields(self, request: Request, body: Any) -> Any:
        names = {"issuekey": ["id", "issue", "issuekey", "key"], "statusCategory": ["statusCategory"]}
        return [
            {"id": name, "key": name, "name": name.title(), "custom": False, "orderable": True,
             "navigable": True, "searchable": True, "clauseNames": names.get(name, [name])}
            for name in (*ISSUE_FIELDS, "issuekey", "statusCategory")
        ] + [
            {"id": custom.id, "key": custom.id, "name": custom.name, "custom": True, "orderable": True,
             "navigable": True, "searchable": True, "schema": custom.schema(),
             "clauseNames": [f"cf[{custom.custom_id}]", custom.name]}
            for custom in self.state.custom_fields.values()
        ]

    def projects(self, request: Request, body: Any) -> Any:
        return [self.state.project_json(p) for p in self.state.projects.values()]

    def _project(self, request: Request) -> Project:
        ref = request.path_params["key"]
        project = self.state.find_project(ref)
        if project is None:
            raise _not_found(f"No project could be found with key '{ref}'.")
        return project

    def project(self, request: Request, body: Any) -> Any:
        return self.state.project_json(self._project(request), full=True)

    def project_components(self, request: Request, body: Any) -> Any:
        return [self.state.component_json(c) for c in self._project(request).components.values()]

    def project_statuses(self, request: Request, body: Any) -> Any:
        """Get all statuses for project: "the valid statuses for a project ... grouped by issue type"
        (IssueTypeWithStatus in Atlassian's REST v2 description); every type shares the fake's one
        workflow per project."""
        project = self._project(request)
        return [{**self.state.issuetype_json(name), "statuses": [self.state.status_json(status)
                                                               for status in project.workflow.statuses]}
                for name in ISSUE_TYPES]

    def issue_types(self, request: Request, body: Any) -> Any:
        return [self.state.issuetype_json(name) for name in ISSUE_TYPES]

    def priorities(self, request: Request, body: Any) -> Any:
        return [self.state.priority_json(name) for name in PRIORITIES]

    def resolutions(self, request: Request, body: Any) -> Any:
        return [self.state.resolution_json(name) for name in RESOLUTIONS]

    def statuses(self, request: Request, body: Any) -> Any:
        return [self.state.status_json(status) for status in self.state.statuses.all()]

    def applinks(self, request: Request, body: Any) -> Any:
        # Listing application links needs a Jira administrator; the bot is not one.
        raise JiraHTTPError(403, ["Client must be authenticated as an administrator to access this "
                                  "resource."])

    # -- issues -------------------------------------------------------------------------------------

    def _created(self, issue: Issue) -> dict[str, Any]:
        return {"id": issue.id, "key": issue.key,
                "self": f"{self.state.base_url}/rest/api/2/issue/{issue.id}"}

    def create_issue(self, request: Request, body: Any) -> Any:
        return JSONResponse(self._created(self.state.create(body, self.state.bot)), status_code=201)

    def bulk_create(self, request: Request, body: Any) -> Any:
        """createIssues: each of up to 50 `issueUpdates` is created (with its webhook) or refused on its
        own; 201 when any was created, 400 when none was, with `CreatedIssues` (issues, and errors as
        BulkOperationErrorResult: status, elementErrors, failedElementNumber) either way."""
        updates = body.get("issueUpdates") if isinstance(body, Mapping) else None
        if not isinstance(updates, list):
            raise JiraHTTPError(400, ["Can not deserialize the request: 'issueUpdates' is missing."])
        if len(updates) > BULK_CREATE_MAX:
            # The limit is documented ("Creates upto 50 issues"); the wording of this answer is the fake's.
            raise JiraHTTPError(400, [f"The number of issues to create ({len(updates)}) exceeds the maximum "
                                      f"of {BULK_CREATE_MAX} for a bulk create."])
        issues: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for number, update in enumerate(updates):
            try:
                issues.append(self._created(self.state.create(update, self.state.bot)))
            except JiraHTTPError as refused:
                errors.append({"status": refused.status, "failedElementNumber": number, "elementErrors": {
                    "errorMessages": refused.messages, "errors": refused.errors, "status": refused.status}})
        return JSONResponse({"issues": issues, "errors": errors},
                            status_code=201 if issues or not updates else 400)

    def _create_meta_page(self, request: Request, items: list[Any], cloud_key: str) -> dict[str, Any]:
        """Create-meta's pages: Cloud names the list (`issueTypes`, `fields`: PageOfCreateMetaIssueTypes
        and PageOfCreateMetaIssueTypeWithField in Atlassian's OpenAPI description); Data Center (8.4+)
        calls it `values` and adds `isLast`, which is what the `jira` library reads there."""
        start = _int_param(request.query_params.get("startAt"), 0, 10**9)
        size = _int_param(request.query_params.get("maxResults"), 50, CREATE_META_MAX)
        page = items[start:start + size]
        if self.state.cloud:
            return {"maxResults": size, "startAt": start, "total": len(items), cloud_key: page}
        return {"maxResults": size, "startAt": start, "total": len(items),
                "isLast": start + size >= len(items), "values": page}

    def _create_meta_project(self, request: Request) -> Project:
        ref = request.path_params["key"]
        project = self.state.find_project(ref)
        if project is None:
            # getCreateIssueMetaIssueTypes/-TypeId list 400 (not 404) for a request they cannot answer.
            raise JiraHTTPError(400, [f"No project could be found with key '{ref}'."])
        return project

    def create_meta_types(self, request: Request, body: Any) -> Any:
        self._create_meta_project(request)
        types = [self.state.issuetype_json(name) for name in ISSUE_TYPES]
        return self._create_meta_page(request, types, "issueTypes")

    def create_meta_fields(self, request: Request, body: Any) -> Any:
        project = self._create_meta_project(request)
        type_id = request.path_params["type_id"]
        issuetype = next((name for name, tid in ISSUE_TYPES.items() if tid == type_id), None)
        if issuetype is None:
            raise JiraHTTPError(400, [f"The issue type with id '{type_id}' does not exist or is not valid "
                                      f"for project '{project.key}'."])
        metas = [self.state.field_meta(project, fid, required)
                 for fid, required in self.state.create_screen(project, issuetype).items()]
        return self._create_meta_page(request, metas, "fields")

    def issue(self, request: Request, body: Any) -> Any:
        issue = self.state.bot_issue(request.path_params["key"])
        if request.method == "GET":
            wanted = request.query_params.getlist("fields") or None
            fields = _wanted_fields(wanted, "*all", self.state.field_ids())
            return self.state.issue_json(issue, fields, request.query_params.get("expand", ""))
        self.state.count_write(issue)
        if request.method == "PUT":
            self.state.edit(issue, body, self.state.bot)
        else:
            self.state.delete(issue, self.state.bot)
        return Response(status_code=204)

    def assignee(self, request: Request, body: Any) -> Any:
        issue = self.state.bot_issue(request.path_params["key"])
        self.state.count_write(issue)
        self.state.assign(issue, self.state.assignee_ref(body, issue.project), self.state.bot)
        return Response(status_code=204)

    def transitions(self, request: Request, body: Any) -> Any:
        issue = self.state.bot_issue(request.path_params["key"])
        if request.method == "GET":
            expand = request.query_params.get("expand", "")
            found = self.state.transitions_json(issue, "transitions.fields" in expand)
            wanted = request.query_params.get("transitionId")
            return {"expand": "transitions",
                    "transitions": [t for t in found if wanted is None or t["id"] == wanted]}
        self.state.count_write(issue)
        self.state.transition(issue, body, self.state.bot)
        return Response(status_code=204)

    def comments(self, request: Request, body: Any) -> Any:
        issue = self.state.bot_issue(request.path_params["key"])
        if request.method == "POST":
            self.state.count_write(issue)
            text = body.get("body") if isinstance(body, Mapping) else None
            comment = self.state.comment(issue, text, self.state.bot)
            return JSONResponse(self.state.comment_json(issue, comment), status_code=201)
        start = _int_param(request.query_params.get("startAt"), 0, 10**9)
        size = _int_param(request.query_params.get("maxResults"), 5000, 5000)
        page = issue.comments[start:start + size]
        return {"startAt": start, "maxResults": size, "total": len(issue.comments),
                "comments": [self.state.comment_json(issue, c) for c in page]}

    def one_comment(self, request: Request, body: Any) -> Any:
        issue = self.state.bot_issue(request.path_params["key"])
        comment_id = request.path_params["comment_id"]
        if request.method == "GET":
            return self.state.comment_json(issue, self.state.find_comment(issue, comment_id))
        self.state.count_write(issue)
        if request.method == "DELETE":
            self.state.delete_comment(issue, comment_id, self.state.bot)
            return Response(status_code=204)
        text = body.get("body") if isinstance(body, Mapping) else None
        edited = self.state.edit_comment(issue, comment_id, text, self.state.bot)
        return self.state.comment_json(issue, edited)

    def remote_links(self, request: Request, body: Any) -> Any:
        issue = self.state.bot_issue(request.path_params["key"])
        global_id = request.query_params.get("globalId")
        if request.method != "GET":
            self.state.count_write(issue)
        if request.method == "POST":
            link, created = self.state.upsert_link(issue, body)
            return JSONResponse({"id": link.id, "self": self.state.link_json(issue, link)["self"]},
                                status_code=201 if created else 200)
        if request.method == "DELETE":
            if global_id is None:
                raise JiraHTTPError(400, ["The 'globalId' query parameter is required."])
            before = len(issue.links)
            issue.links = [link for link in issue.links if link.global_id != global_id]
            if len(issue.links) == before:
                raise _not_found("No remote link with that globalId.")
            return Response(status_code=204)
        return [self.state.link_json(issue, link) for link in issue.links
                if global_id is None or link.global_id == global_id]

    def remote_link(self, request: Request, body: Any) -> Any:
        issue = self.state.bot_issue(request.path_params["key"])
        link = next((link for link in issue.links if str(link.id) == request.path_params["link_id"]), None)
        if link is None:
            raise _not_found("No remote link with that id.")
        if request.method == "DELETE":
            self.state.count_write(issue)
            issue.links.remove(link)
            return Response(status_code=204)
        return self.state.link_json(issue, link)

    # -- search and users ---------------------------------------------------------------------------

    def search_jql(self, request: Request, body: Any) -> Any:
        if not self.state.cloud:
            raise _not_found("null for uri: /rest/api/2/search/jql")
        allowed = {"jql", "nextPageToken", "maxResults", "fields", "expand", "properties", "fieldsByKeys",
                   "failFast", "reconcileIssues"}
        if request.method == "POST" and (not isinstance(body, Mapping) or set(body) - allowed):
            raise JiraHTTPError(400, ["Invalid request payload. Refer to the REST API documentation and "
                                      "try again."])
        jql = (_params(request, body, "jql") or [""])[0]
        size = _int_param((_params(request, body, "maxResults") or ["50"])[0], 50, SEARCH_MAX)
        token = _params(request, body, "nextPageToken")
        offset = _read_page_token(token[0], jql) if token else 0
        reconcile = _params(request, body, "reconcileIssues") or []
        hits, _ = self.state.search(jql, strict=True, bounded=True, reconcile=reconcile)
        page = hits[offset:offset + size]
        requested = _params(request, body, "fields")
        fields = _wanted_fields(requested, "", self.state.field_ids()) if requested is not None else None
        # Unlike /search, /search/jql returns only ids unless fields are asked for.
        issues = [self.state.issue_json(i, fields) if fields is not None else {"id": i.id} for i in page]
        result: dict[str, Any] = {"issues": issues, "isLast": offset + size >= len(hits)}
        if not result["isLast"]:
            result["nextPageToken"] = _page_token(offset + size, jql)
        return result

    def search(self, request: Request, body: Any) -> Any:
        if self.state.cloud:
            raise JiraHTTPError(410, ["The requested API has been removed. Please migrate to the "
                                      "/rest/api/3/search/jql API. A full migration guideline is available "
                                      "at https://developer.atlassian.com/changelog/#CHANGE-2046"])
        if request.method == "POST" and isinstance(body, Mapping) and "properties" in body:
            raise JiraHTTPError(400, ['Unrecognized field "properties" (Class '
                                      'com.atlassian.jira.rest.v2.search.SearchRequestBean), not marked as '
                                      'ignorable'])
        jql = (_params(request, body, "jql") or [""])[0]
        start = _int_param((_params(request, body, "startAt") or ["0"])[0], 0, 10**9)
        size = _int_param((_params(request, body, "maxResults") or ["50"])[0], 50, SEARCH_MAX)
        validate = str((_params(request, body, "validateQuery") or ["strict"])[0]).lower()
        hits, warnings = self.state.search(jql, strict=validate in ("strict", "true"))
        fields = _wanted_fields(_params(request, body, "fields"), "*navigable", self.state.field_ids())
        result: dict[str, Any] = {
            "expand": "schema,names", "startAt": start, "maxResults": size, "total": len(hits),
            "issues": [self.state.issue_json(i, fields) for i in hits[start:start + size]],
        }
        if warnings:
            result["warningMessages"] = warnings
        return result

    def user_search(self, request: Request, body: Any) -> Any:
        params = request.query_params
        if self.state.cloud:
            if "username" in params:
                raise JiraHTTPError(400, ["The query parameter 'username' is not supported in GDPR strict "
                                          "mode."])
            text = params.get("query")
            if not text:
                raise JiraHTTPError(400, ["One of 'query', 'accountId' or 'property' must be specified."])
            users = self.state.find_users(text)
        else:
            text = params.get("username")
            if not text:
                raise JiraHTTPError(400, ["The username query parameter was not provided"])
            active = params.get("includeActive", "true").lower() != "false"
            inactive = params.get("includeInactive", "false").lower() == "true"
            users = [u for u in self.state.find_users(text)
                     if (u.active and active) or (not u.active and inactive)]
        return self._user_page(request, users)

    def _user_page(self, request: Request, users: list[User]) -> list[Any]:
        """A page of a user search: only the first `user_search_max` matches can be reached at all."""
        cap = self.state.user_search_max
        start = _int_param(request.query_params.get("startAt"), 0, 10**9)
        size = _int_param(request.query_params.get("maxResults"), 50, cap)
        return [self.state.user_json(u) for u in users[:cap][start:start + size]]

    def assignable_search(self, request: Request, body: Any) -> Any:
        """findAssignableUsers: the active users the project (or the issue's project) lets be assigned,
        matched like user search; Cloud by `query` or `accountId`, Data Center by `username` (which may
        be left out there to list them all)."""
        params = request.query_params
        if "project" in params:
            project = self.state.find_project(params["project"])
            if project is None:
                raise _not_found(f"No project could be found with key '{params['project']}'.")
        elif "issueKey" in params or "issueId" in params:
            project = self.state.bot_issue(params.get("issueKey") or params["issueId"]).project
        else:
            raise JiraHTTPError(400, ["One of 'issueKey', 'issueId' or 'project' must be specified."])
        if self.state.cloud:
            if "username" in params:
                raise JiraHTTPError(400, ["The query parameter 'username' is not supported in GDPR strict "
                                          "mode."])
            if params.get("query") and params.get("accountId"):
                raise JiraHTTPError(400, ["Only one of 'query' or 'accountId' can be specified."])
            if params.get("accountId"):
                found = self.state.users.get(params["accountId"])
                users = [found] if found is not None else []
            elif params.get("query"):
                users = self.state.find_users(params["query"])
            else:
                raise JiraHTTPError(400, ["One of 'query' or 'accountId' must be specified."])
        else:
            text = params.get("username", "")
            users = self.state.find_users(text) if text else list(self.state.users.values())
        return self._user_page(request, [u for u in users if self.state.assignable(u, project)])

    def user(self, request: Request, body: Any) -> Any:
        ref = request.query_params.get("accountId" if self.state.cloud else "username")
        user = self.state.users.get(ref or "")
        if user is None:
            raise _not_found("The user could not be found.")
        return self.state.user_json(user)


# --------------------------------------------------------------------------------------------------
# The handle tests, the sandbox and the benchmarks hold.


class FakeJira:
    def __init__(self, state: JiraState, app: JiraApp, server: FakeServer, middleware: Misbehaviour,
                 calls: CallLog, faults: list[Fault], webhooks: WebhookSender) -> None:
        self._state = state
        self._app = app
        self._server = server
        self._middleware = middleware
        self.url = server.url
        self.calls = calls
        self.faults = faults
        self.webhooks = webhooks
        self._started = (state.require_resolution, state.hide_emails, state.write_limit,
                         state.user_search_max)

    # -- knobs --------------------------------------------------------------------------------------

    @property
    def deployment(self) -> str:
        return "Cloud" if self._state.cloud else "Server"

    @property
    def latency(self) -> float:
        return self._middleware.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._middleware.latency = seconds

    @property
    def search_lag(self) -> float:
        return self._state.search_lag

    @search_lag.setter
    def search_lag(self, seconds: float) -> None:
        self._state.search_lag = seconds

    @property
    def clock_skew(self) -> float:
        """Seconds this Jira's clock is off from the machine's (negative: behind): every time it tells
        (`updated`, webhook timestamps, serverInfo's serverTime, the Date header) is on that clock."""
        return self._state.clock_skew

    @clock_skew.setter
    def clock_skew(self, seconds: float) -> None:
        self._state.clock_skew = seconds

    @property
    def require_resolution(self) -> bool:
        return self._state.require_resolution

    @require_resolution.setter
    def require_resolution(self, value: bool) -> None:
        self._state.require_resolution = value

    @property
    def hide_emails(self) -> bool:
        """Cloud's profile visibility for everyone: no `emailAddress` on any user Jira shows (user and
        assignable searches, issue fields, webhook bodies) but the bot's own `/myself`. A search for an
        exact address still finds its user. Off: only users added with `email_visible=False` hide it."""
        return self._state.hide_emails

    @hide_emails.setter
    def hide_emails(self, value: bool) -> None:
        self._state.hide_emails = value

    @property
    def issue_write_limits(self) -> tuple[tuple[int, float], ...] | None:
        """Cloud's per-issue write limit as (writes, per seconds) windows, e.g. CLOUD_ISSUE_WRITE_LIMITS;
        None (the default): off. API writes to one issue past a window answer 429 with `Retry-After` and
        `RateLimit-Reason: jira-per-issue-on-write`; other issues are not held back."""
        return self._state.write_limit.windows if self._state.write_limit else None

    @issue_write_limits.setter
    def issue_write_limits(self, windows: Sequence[tuple[int, float]] | None) -> None:
        with self._state.lock:
            self._state.write_limit = IssueWriteLimit(windows) if windows else None

    @property
    def user_search_max(self) -> int:
        """How many matches a user search can reach at all (startAt + maxResults): 1,000 on Cloud and
        Data Center 9, 100 on Data Center 10 (`version`)."""
        return self._state.user_search_max

    @user_search_max.setter
    def user_search_max(self, value: int) -> None:
        self._state.user_search_max = value

    @property
    def bot_account_id(self) -> str:
        return self._state.bot.account_id

    @property
    def person_account_id(self) -> str:
        return self._state.person.account_id

    def stop(self) -> None:
        self._server.stop()
        self.webhooks.close()

    def reset(self) -> None:
        """Back to no issues, calls or faults, with the switches (latency, search_lag, clock_skew,
        require_resolution, hide_emails, issue_write_limits, user_search_max, webhooks.enabled) as
        started, every project's workflow, screens and assignability as it was created, users
        deactivated by `deactivate_user` active again and no ticket hidden (`hide_from_bot`). Users,
        projects, versions, custom fields and the webhook URL and secret stay; ids and keys keep
        counting up, so nothing from before can be mistaken for new."""
        with self._state.lock:
            self._state.clear_issues()
            self.faults.clear()
            self._state.search_lag = 0.0
            self._state.clock_skew = 0.0
            (self._state.require_resolution, self._state.hide_emails, self._state.write_limit,
             self._state.user_search_max) = self._started
            self._state.restore_configuration()
        self.calls.reset()
        self._middleware.latency = 0.0
        self.webhooks.enabled = True
        self.webhooks.discard_pending()
        self.webhooks.drain(timeout=5.0)  # the delivery in flight, if any
        self.webhooks.sent.clear()

    # -- state --------------------------------------------------------------------------------------

    def issues(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return [self._state.snapshot(issue) for issue in self._state.issues.values()]

    def issue(self, key_or_id: str) -> dict[str, Any] | None:
        with self._state.lock:
            issue = self._state.find_issue(key_or_id)
            return self._state.snapshot(issue) if issue else None

    def issue_json(self, key_or_id: str) -> dict[str, Any] | None:
        """The issue as `GET /rest/api/2/issue/{key}` shows it."""
        with self._state.lock:
            issue = self._state.find_issue(key_or_id)
            return self._state.issue_json(issue) if issue else None

    def comments(self, key: str) -> list[dict[str, Any]]:
        with self._state.lock:
            issue = self._state.get_issue(key)
            return [{"id": c.id, "body": c.body, "author": c.author.account_id, "created": c.created}
                    for c in issue.comments]

    def remote_links(self, key: str) -> list[dict[str, Any]]:
        with self._state.lock:
            issue = self._state.get_issue(key)
            return [self._state.link_json(issue, link) for link in issue.links]

    def add_user(self, account_id: str, display_name: str, email: str, *, email_visible: bool = True,
                 active: bool = True) -> None:
        """On Server/DC `account_id` is the username."""
        with self._state.lock:
            self._state.add_user(account_id, display_name, email, email_visible=email_visible, active=active)

    def add_project(self, key: str, components: Iterable[str] = (), name: str | None = None, *,
                    team_managed: bool = False, statuses: Sequence[tuple[str, str]] = TEAM_STATUSES) -> None:
        """A company-managed project (the simple workflow), or a team-managed one: `simplified: true`,
        `style: next-gen`, no components field (creating with components is a 400), and `statuses`
        ((name, category) pairs) of its own, with ids no other project shares."""
        with self._state.lock:
            self._state.add_project(key, components, name, team_managed=team_managed, statuses=statuses)

    # -- company-managed configuration (reset() undoes it) -------------------------------------------

    def set_workflow(self, project: str, style: str, *, todo: str = "To Do", doing: str = "In Progress",
                     done: str = "Done", rejected: str | None = None) -> None:
        """"strict": `todo` -> `doing` -> `done` only, and "Reopen" from `done` back to `todo`; the
        statuses may be named otherwise (e.g. todo="Open", done="Closed"); `rejected` adds a second
        done status ("Won't Do") reached from `doing` by "Reject". "simple": any to any.
        GET transitions lists only what the status offers now; POSTing another is a 400."""
        with self._state.lock:
            names: dict[str, Any] = {} if style == "simple" else {
                "todo": todo, "doing": doing, "done": done, "rejected": rejected}
            self._state.set_workflow(project, style, **names)

    def workflow_transitions(self, project: str) -> list[dict[str, Any]]:
        """The project's workflow: each transition's id, name, from (status names; None: from any) and to."""
        with self._state.lock:
            workflow = self._state.projects[project].workflow
            names = {s.id: s.name for s in workflow.statuses}
            return [{"id": t.id, "name": t.name, "to": t.to.name,
                     "from": None if t.sources is None else sorted(names[i] for i in t.sources)}
                    for t in workflow.transitions]

    def add_custom_field(self, name: str, kind: str,
                         options: Iterable[str] | Mapping[str, Iterable[str]] = (), *,
                         field_id: str | None = None) -> str:
        """A custom field of `kind` (select, multiselect, cascadingselect, user, number, date, text,
        textarea, labels); `options` for the selects (a cascading select's: parent -> children). Its
        id (customfield_NNNNN). It shows on no screen until added to one."""
        with self._state.lock:
            return self._state.add_custom_field(name, kind, options, field_id=field_id).id

    def add_create_field(self, project: str, field_id: str, *, required: bool = True,
                         issue_type: str | None = None) -> None:
        """Put a field on the project's create screen (of `issue_type`, or every type), required or not:
        a custom field's id or a system field (components, fixVersions, labels, priority, ...). Create-
        meta shows it; creating without a required one is a 400 naming it."""
        with self._state.lock:
            self._state.add_create_field(project, field_id, required=required, issue_type=issue_type)

    def add_transition_field(self, project: str, transition: str, field_id: str, *,
                             required: bool = True) -> None:
        """Put a field (resolution, fixVersions, a custom field) on the screen of a transition of the
        project's workflow, named by id, name or target status. `expand=transitions.fields` shows it;
        taking the transition without a required one is a 400 naming it."""
        with self._state.lock:
            self._state.add_transition_field(project, transition, field_id, required=required)

    def remove_transition(self, project: str, transition: str) -> None:
        """Take a transition (by id, name or target status) out of the project's workflow, as an admin
        may: a status it led to may then be reached from nowhere."""
        with self._state.lock:
            self._state.remove_transition(project, transition)

    def add_version(self, project: str, name: str, *, released: bool = False) -> str:
        """A version (for fixVersions); its id."""
        with self._state.lock:
            return self._state.add_version(project, name, released=released).id

    def deactivate_user(self, account_id: str) -> None:
        """The user stays findable (`active: false`) but cannot be assigned issues anywhere."""
        with self._state.lock:
            self._state.users[account_id].active = False
            self._state.deactivated.add(account_id)

    def make_unassignable(self, account_id: str, project: str) -> None:
        """The user lacks the project's Assignable User permission: left out of its assignable search,
        and creating or assigning with them there is a 400."""
        with self._state.lock:
            self._state.projects[project].unassignable.add(self._state.users[account_id].account_id)

    def hide_from_bot(self, key_or_id: str) -> None:
        """The bot loses sight of the ticket (an issue security level set on it, a permission change):
        its reads and writes answer 404 as for a deleted ticket and searches leave it out, while people
        (`person_*`) still work on it and Jira sends no `jira:issue_deleted`. `show_to_bot` or `reset()`
        undoes it."""
        with self._state.lock:
            self._state.hidden.add(self._state.get_issue(key_or_id).id)

    def show_to_bot(self, key_or_id: str) -> None:
        with self._state.lock:
            self._state.hidden.discard(self._state.get_issue(key_or_id).id)

    def seed_tickets(
        self, project: str, n: int, *, status: str = "To Do",
        labels: Callable[[int], Sequence[str]] | None = None, summary: str = "Seeded ticket #{n}",
    ) -> list[tuple[str, str]]:
        """Create `n` tickets in `project` at once, WITHOUT webhooks and searchable at once (benchmarks,
        reconciliation scenarios), as the bot made them; (id, key) of each. `labels(k)` gives the k-th
        ticket's labels; `summary` may hold `{n}`."""
        collecting = gc.isenabled()
        gc.disable()  # the collector's passes over 100,000 fresh objects cost as much as making them
        try:
            with self._state.lock:
                return self._state.seed(project, n, status=status, labels=labels, summary=summary)
        finally:
            if collecting:
                gc.enable()

    # -- a person did it in the Jira UI (state changes and the webhook says so) ----------------------

    def _actor(self, account_id: str | None) -> User:
        return self._state.users[account_id] if account_id else self._state.person

    def person_transition(self, key: str, status_name: str, *, resolution: str | None = None,
                          by: str | None = None) -> None:
        """One transition, as a person takes it in the UI (screens filled in): only one the workflow
        offers from the issue's status now, so a strict workflow takes a step at a time."""
        with self._state.lock:
            issue = self._state.get_issue(key)
            workflow = issue.project.workflow
            target = self._state.status_in(issue.project, status_name)
            if target == issue.status:
                return
            step = next((t for t in workflow.available(issue.status) if t.to == target), None)
            if step is None:
                offered = [t.to.name for t in workflow.available(issue.status)]
                raise ValueError(f"{key}: no transition from {issue.status.name!r} to {target.name!r} in "
                                 f"{issue.project.key}'s {workflow.name} workflow; it offers {offered}")
            self._state.move_to(issue, target, resolution or step.resolution, self._actor(by))

    def person_create(self, project: str, summary: str, labels: Sequence[str] = (), *,
                      by: str | None = None, fields: Mapping[str, Any] | None = None) -> str:
        """A Task, with `fields` (REST shapes, by id) for what the create screen asks besides."""
        with self._state.lock:
            body = {"fields": {"project": {"key": project}, "issuetype": {"name": "Task"}, "summary": summary,
                               "labels": list(labels), **(fields or {})}}
            return self._state.create(body, self._actor(by)).key

    def person_delete(self, key: str, *, by: str | None = None) -> None:
        with self._state.lock:
            self._state.delete(self._state.get_issue(key), self._actor(by))

    def person_move(self, key: str, new_project_key: str, *, by: str | None = None) -> str:
        with self._state.lock:
            issue = self._state.get_issue(key)
            self._state.move(issue, self._state.projects[new_project_key], self._actor(by))
            return issue.key

    def person_assign(self, key: str, account_id: str | None, *, by: str | None = None) -> None:
        with self._state.lock:
            user = self._state.users[account_id] if account_id else None
            self._state.assign(self._state.get_issue(key), user, self._actor(by))

    def person_comment(self, key: str, body: str, *, by: str | None = None, internal: bool = False) -> str:
        """A person comments; `internal`: an agent's internal note on a service project (jsdPublic
        false). Returns the comment's id."""
        with self._state.lock:
            issue = self._state.get_issue(key)
            return self._state.comment(issue, body, self._actor(by), public=not internal).id

    def person_edit_comment(self, key: str, comment_id: str, body: str, *, by: str | None = None) -> None:
        with self._state.lock:
            self._state.edit_comment(self._state.get_issue(key), comment_id, body, self._actor(by))

    def person_delete_comment(self, key: str, comment_id: str, *, by: str | None = None) -> None:
        with self._state.lock:
            self._state.delete_comment(self._state.get_issue(key), comment_id, self._actor(by))

    def set_project_type(self, key: str, type_key: str) -> None:
        """projectTypeKey of a project: "service_desk" makes it a Jira Service Management project,
        whose public comments its customers see. reset() puts "software" back."""
        with self._state.lock:
            self._state.projects[key].type_key = type_key

    def person_edit(self, key: str, fields: Mapping[str, Any], *, by: str | None = None) -> None:
        """Any edit, in the REST body's shape (`{"labels": [...]}`, `{"summary": ...}`)."""
        with self._state.lock:
            self._state.edit(self._state.get_issue(key), {"fields": dict(fields)}, self._actor(by))


def _fault_body(fault: Fault) -> dict[str, Any]:
    messages = {429: "Rate limit exceeded.", 503: "Service Unavailable", 401: "Unauthorized"}
    return {"errorMessages": [messages.get(fault.status, f"Internal server error ({fault.status})")],
            "errors": {}}


def start_fake_jira(
    *,
    deployment: str = "Cloud",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    email: str = "bot@example.com",
    token: str = "jira-token",
    pat: str | None = None,
    require_resolution: bool = False,
    hide_emails: bool = False,
    issue_write_limits: Sequence[tuple[int, float]] | None = None,
    version: str = "9.12.15",
    port: int = 0,
) -> FakeJira:
    """Start a fake Jira on 127.0.0.1 (`port=0`: any free port). `deployment`: "Cloud", or "Server"
    (also "DataCenter"), which authenticates `Authorization: Bearer <pat>` (default "jira-pat") and
    reports `version` (Data Center's; "10.x" caps user searches at 100). `hide_emails` and
    `issue_write_limits`: see FakeJira. A webhook URL may carry `?token=...` (Data Center 9 cannot sign);
    with `webhook_secret` (Cloud, or Data Center 10 and later) every delivery is signed
    (`X-Hub-Signature`)."""
    if deployment not in ("Cloud", "Server", "DataCenter"):
        raise ValueError(f"deployment must be Cloud, Server or DataCenter, not {deployment!r}")
    cloud = deployment == "Cloud"
    numbers = tuple(int(part) for part in version.split("."))
    if len(numbers) != 3:
        raise ValueError(f"version must be major.minor.patch, not {version!r}")
    if not cloud and webhook_secret and numbers < (10, 0, 0):
        # A webhook secret, and with it `X-Hub-Signature: sha256=...`, is in Data Center's "Managing
        # webhooks" from 10.0 on (confluence.atlassian.com/adminjiraserver/managing-webhooks-938846912.html,
        # "Securing your webhook"); a 9.x site's webhook form has no secret to set.
        raise ValueError(f"Jira Data Center {version} cannot sign webhooks: put ?token=... in webhook_url "
                         "(a secret needs 10.0 or later)")
    webhooks = WebhookSender("fake-jira")
    webhooks.url = webhook_url
    state = JiraState(cloud=cloud, bot_email=email, require_resolution=require_resolution,
                      webhooks=webhooks, webhook_secret=webhook_secret,
                      version=(numbers[0], numbers[1], numbers[2]))
    state.hide_emails = hide_emails
    state.write_limit = IssueWriteLimit(issue_write_limits) if issue_write_limits else None
    app = JiraApp(state, email=email, token=token, pat=pat or "jira-pat")
    calls = CallLog()
    faults: list[Fault] = []
    middleware = Misbehaviour(app.app, calls, faults, threading.Lock())
    middleware.fault_body = _fault_body
    server = FakeServer(middleware, port=port, clock=lambda: time.time() + state.clock_skew)
    state.base_url = server.url
    server.start()
    return FakeJira(state, app, server, middleware, calls, faults, webhooks)
