"""Sentry's integration-platform UI components: the schema syncer offers, and the requests Sentry
sends from those screens. Pure: no I/O, no clock.

The schema's shape is what Sentry's validator requires (getsentry/sentry
`src/sentry/sentry_apps/api/parsers/schema.py`: `issue-link` needs `link` and `create`, each with a
`uri` and `required_fields`; `alert-rule-action` needs `title` and `settings` with `uri` and
`required_fields`; a field's `type`, `name` and `label`; a select has a `uri` or `options`, not both;
text defaults only `issue.title`/`issue.description`; a `uri` is a path starting with "/").

Sentry calls `<scheme>://<host of the webhook URL><uri>` (`issue_link_requester.py`,
`select_requester.py`, `alert_rule_action_requester.py` in `src/sentry/sentry_apps/external_requests/`),
so every `uri` here is a path, and the webhook URL must be on the host of SYNCER_PUBLIC_URL.
Requests carry `Sentry-App-Signature`: the hex HMAC-SHA256 of the body with the client secret; a
select's GET is signed over the empty string (`build_signature("")`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from syncer.core import choices
from syncer.core.issue import SentryActor
from syncer.errors import ConfigError, PayloadError
from syncer.payload import decode_object
from syncer.policy import Policy
from syncer.sentry.parse import parse_actor

# The paths `syncer web` serves for Sentry's screens.
CREATE = "/sentry-app/issue-link/create"
LINK = "/sentry-app/issue-link/link"
TEAMS = "/sentry-app/options/teams"
ASSIGNEES = "/sentry-app/options/assignees"
TICKETS = "/sentry-app/options/tickets"
ALERT_RULE_ACTION = "/sentry-app/alert-rule-action"

# The resource under which a form's submission is stored in the inbox, beside Sentry's webhooks.
RESOURCE = "issue-link"
FORM_ACTIONS = frozenset({"create", "link"})

SIGNATURE_HEADER = "sentry-app-signature"


def priorities(policy: Policy) -> list[str]:
    """The Jira priority names the policy uses, in [priorities] order first."""
    names = [policy.priorities.fatal, policy.priorities.error, policy.priorities.warning,
             policy.priorities.info, policy.priorities.debug, policy.defaults.priority or "",
             *(team.priority or "" for team in policy.teams.values()),
             *(route.priority or "" for route in policy.routes)]
    return [name for name in dict.fromkeys(names) if name]


def _static(values: list[str]) -> list[list[str]]:
    # Sentry's options are pairs of value and label; the same string in both leaves no doubt
    # about which the form shows and which it sends.
    return [[value, value] for value in values]


def schema(policy: Policy, public_url: str) -> dict[str, Any]:
    """The JSON to paste into the integration's "Schema" field. ConfigError when the public URL
    cannot carry it."""
    base = public_path(public_url)
    priority_options = _static(priorities(policy)) or _static(["Medium"])
    team_field = {"type": "select", "name": choices.TEAM, "label": "Team (the one routing picks is first)",
                  "uri": base + TEAMS}
    priority_field = {"type": "select", "name": choices.PRIORITY, "label": "Priority",
                      "options": priority_options}
    create = {
        "uri": base + CREATE,
        "required_fields": [
            {"type": "text", "name": "title", "label": "Title", "default": "issue.title"},
            team_field,
        ],
        "optional_fields": [
            {"type": "textarea", "name": "description", "label": "Description",
             "default": "issue.description"},
            {"type": "select", "name": choices.ASSIGNEE, "label": "Assignee", "uri": base + ASSIGNEES,
             "depends_on": [choices.TEAM]},
            priority_field,
        ],
    }
    link = {
        "uri": base + LINK,
        "required_fields": [
            {"type": "select", "name": "ticket", "label": "Jira ticket (key or words)", "uri": base + TICKETS,
             "async": True, "skip_load_on_open": True},
        ],
    }
    alert = {
        "type": "alert-rule-action",
        "title": "Jira ticket via syncer",
        "settings": {
            "type": "alert-rule-settings",
            "uri": base + ALERT_RULE_ACTION,
            "description": "Syncer files the ticket by its routing; these settings override it.",
            "required_fields": [
                {"type": "select", "name": choices.MODE, "label": "Create a ticket, or notify only",
                 "options": _static(list(choices.MODES))},
            ],
            "optional_fields": [
                {**team_field, "label": "Team (empty: as routed)"},
                {**priority_field, "label": "Priority (empty: as routed)"},
                {"type": "text", "name": choices.LABELS, "label": "Extra labels, comma-separated"},
            ],
        },
    }
    return {"elements": [{"type": "issue-link", "link": link, "create": create}, alert]}


def public_path(public_url: str) -> str:
    """The path prefix a `uri` gets: none, since Sentry keeps only the host of the webhook URL.
    ConfigError when the URL is not a bare http(s) origin."""
    parsed = urlparse(public_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError("SYNCER_PUBLIC_URL: must be an http(s) URL such as https://syncer.example.com")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ConfigError(
            "SYNCER_PUBLIC_URL: give the origin only (no path): Sentry calls each uri on the host of "
            "the webhook URL, dropping any path (getsentry/sentry issue_link_requester._build_url)"
        )
    return ""


def problems(public_url: str | None, schema_json: Any) -> list[str]:
    """What `check-config` says about the public URL and the schema: Sentry's validator's rules."""
    found: list[str] = []
    if not public_url:
        return found
    parsed = urlparse(public_url)
    if parsed.scheme != "https" and parsed.hostname not in ("localhost", "127.0.0.1", "::1"):
        found.append("SYNCER_PUBLIC_URL: must be https (Sentry sends form values and signatures to it)")
    if not isinstance(schema_json, Mapping) or not isinstance(schema_json.get("elements"), list):
        return [*found, "schema: needs an 'elements' array"]
    elements = schema_json["elements"]
    seen: set[str] = set()
    for element in elements:
        kind = element.get("type") if isinstance(element, Mapping) else None
        if kind in seen:
            found.append(f"schema: more than one element of type {kind}")
        seen.add(str(kind))
        if kind == "issue-link":
            for form in ("link", "create"):
                found += _form(element.get(form), f"issue-link.{form}")
        elif kind == "alert-rule-action":
            if not isinstance(element.get("title"), str):
                found.append("schema: alert-rule-action needs a title")
            settings = element.get("settings")
            found += _form(settings, "alert-rule-action.settings")
            description = settings.get("description") if isinstance(settings, Mapping) else None
            if description is not None and not (isinstance(description, str)
                                                and 1 <= len(description) <= 140):
                found.append("schema: alert-rule-action.settings.description is 1 to 140 characters")
        else:
            found.append(f"schema: element of type {kind!r} is not one syncer offers")
    return found


def _form(form: Any, where: str) -> list[str]:
    if not isinstance(form, Mapping):
        return [f"schema: {where} is missing"]
    found = _uri(form.get("uri"), f"{where}.uri")
    if not form.get("required_fields"):
        found.append(f"schema: {where}.required_fields needs at least one field")
    for key in ("required_fields", "optional_fields"):
        fields = form.get(key, [])
        if not isinstance(fields, list):
            found.append(f"schema: {where}.{key} is not an array")
            continue
        for index, field in enumerate(fields):
            found += _field(field, f"{where}.{key}[{index}]")
    return found


def _field(field: Any, where: str) -> list[str]:
    if not isinstance(field, Mapping):
        return [f"schema: {where} is not an object"]
    found = [f"schema: {where} needs {key}" for key in ("type", "name", "label")
             if not isinstance(field.get(key), str)]
    kind = field.get("type")
    if kind == "select":
        if ("uri" in field) == ("options" in field):
            found.append(f"schema: {where}: a select has a uri or options, exactly one")
        if "uri" in field:
            found += _uri(field["uri"], f"{where}.uri")
        options = field.get("options")
        if options is not None and not (
            isinstance(options, list) and options
            and all(isinstance(o, list) and len(o) == 2 and isinstance(o[0], str) for o in options)
        ):
            found.append(f"schema: {where}.options: pairs of [value, label]")
        depends = field.get("depends_on")
        if depends is not None and not (isinstance(depends, list) and depends
                                        and all(isinstance(d, str) for d in depends)):
            found.append(f"schema: {where}.depends_on: a list of field names")
    elif kind in ("text", "textarea"):
        default = field.get("default")
        if default is not None and default not in ("issue.title", "issue.description"):
            found.append(f"schema: {where}.default: issue.title or issue.description only")
    else:
        found.append(f"schema: {where}: type {kind!r} is not select, text or textarea")
    return found


def _uri(uri: Any, where: str) -> list[str]:
    if not isinstance(uri, str) or not uri.startswith("/") or uri.startswith("//") or "@" in uri:
        return [f"schema: {where} must be a path starting with / (Sentry adds the webhook URL's host)"]
    return []


@dataclass(frozen=True)
class FormRequest:
    """One submission of the issue-link create or link form."""

    action: str  # create | link
    issue_id: str
    installation_uuid: str
    web_url: str
    project_slug: str
    actor: SentryActor | None
    fields: Mapping[str, str]


def parse_form(action: str, body: bytes | str | Mapping[str, Any]) -> FormRequest:
    """Sentry's issue-link body: `{"fields", "issueId", "installationId", "webUrl", "project",
    "actor"}`. PayloadError when it cannot be used."""
    payload = body if isinstance(body, Mapping) else decode_object(body)
    if action not in FORM_ACTIONS:
        raise PayloadError(f"issue-link action {action!r} is not create or link")
    issue_id = payload.get("issueId")
    if isinstance(issue_id, bool) or not isinstance(issue_id, (int, str)) or not str(issue_id).isdigit():
        raise PayloadError("issue-link request without a numeric issueId")
    raw_fields = payload.get("fields")
    fields: dict[str, str] = {}
    if isinstance(raw_fields, Mapping):
        for name, value in raw_fields.items():
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                fields[str(name)[:100]] = str(value)[:32767]
    project = payload.get("project")
    slug = project.get("slug") if isinstance(project, Mapping) else None
    uuid = payload.get("installationId")
    web_url = payload.get("webUrl")
    return FormRequest(
        action=action,
        issue_id=str(issue_id),
        installation_uuid=uuid[:100] if isinstance(uuid, str) else "",
        web_url=web_url[:2000] if isinstance(web_url, str) else "",
        project_slug=slug[:200] if isinstance(slug, str) else "",
        actor=parse_actor(payload.get("actor")),
        fields=fields,
    )


def actor_name(actor: SentryActor | None) -> str:
    """Who, for the audit: `Alice (sentry user 7)`."""
    if actor is None:
        return "a Sentry user"
    who = actor.name or actor.email or "Sentry user"
    return f"{who} (sentry {actor.type or 'user'} {actor.id})" if actor.id else who
