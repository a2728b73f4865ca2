"""The fake Sentry's side of its UI components: the requests Sentry's own screens send to an
integration, as getsentry/sentry `src/sentry/sentry_apps/external_requests/` builds them.

    fake.screens.schema = <the integration's schema>         # what an admin pasted
    fake.screens.options("create", "team", project="billing-api")   # a select opened (GET)
    fake.screens.submit("create", issue_id, {"title": ..., "team": ...}, by="alice@example.com")
    fake.screens.save_alert_rule("Page payments", {"mode": "create", "team": "payments"})

Each request goes to `<scheme>://<host of the webhook URL><uri>` and is signed with
`Sentry-App-Signature`: the HMAC-SHA256 of the body with the client secret, of "" for a select's GET
(`SelectRequester._build_headers`). A create or link answered 200 with `{webUrl, project,
identifier}` becomes the issue's external issue, shown as `project#identifier` (IssueLinkCreator);
an alert rule is saved only when the settings POST answers 2xx, and its settings are then sent with
every `event_alert.triggered` of that rule in `data.issue_alert.settings`.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import httpx

from syncer.fakes.base import compact_json, hmac_sha256_hex

if TYPE_CHECKING:
    from syncer.fakes.sentry import FakeSentry

# Sentry's select requests and issue links go through safe_urlopen, whose default timeout is 30 s.
TIMEOUT = 30.0


class SentryScreens:
    def __init__(self, fake: FakeSentry) -> None:
        self._fake = fake
        self.schema: Mapping[str, Any] = {}
        self.alert_rules: dict[str, list[dict[str, str]]] = {}

    def reset(self) -> None:
        self.schema = {}
        self.alert_rules = {}

    def _element(self, kind: str) -> Mapping[str, Any]:
        for element in self.schema.get("elements", []):
            if element.get("type") == kind:
                return element  # type: ignore[no-any-return]
        raise LookupError(f"the schema has no {kind} element")

    def _form(self, form: str) -> Mapping[str, Any]:
        if form == "alert-rule":
            return self._element("alert-rule-action")["settings"]  # type: ignore[no-any-return]
        return self._element("issue-link")[form]  # type: ignore[no-any-return]

    def _url(self, uri: str, query: Mapping[str, str] | None = None) -> str:
        hook = self._fake.webhooks.url
        if not hook:
            raise LookupError("the integration has no webhook URL")
        parts = urlsplit(hook)
        url = f"{parts.scheme}://{parts.netloc}{uri}"
        return f"{url}?{urlencode(query)}" if query else url

    def _headers(self, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", "Request-ID": uuid.uuid4().hex,
                "Sentry-App-Signature": hmac_sha256_hex(self._fake.client_secret, body)}

    def options(self, form: str, name: str, *, project: str = "", query: str = "",
                dependent: Mapping[str, str] | None = None) -> httpx.Response:
        """Sentry opening (or typing into) the select `name` of `form` (create, link, alert-rule)."""
        fields = [*self._form(form).get("required_fields", []), *self._form(form).get("optional_fields", [])]
        field = next(f for f in fields if f["name"] == name)
        params = {"installationId": self._fake.installation_uuid}
        if project:
            params["projectSlug"] = project
        if query:
            params["query"] = query
        if dependent:
            params["dependentData"] = json.dumps(dict(dependent))
        return httpx.get(self._url(field["uri"], params), headers=self._headers(b""), timeout=TIMEOUT)

    def submit(self, form: str, issue_id: str | int, fields: Mapping[str, str], *,
               by: str = "alice@example.com") -> httpx.Response:
        """A person submits the issue-link `form` (create or link) on the issue's page."""
        fake = self._fake
        issue = fake.issue(issue_id)
        user = fake._person(by)
        body = compact_json({
            "fields": dict(fields),
            "issueId": int(issue["id"]),
            "installationId": fake.installation_uuid,
            "webUrl": issue["permalink"],
            "project": {"slug": issue["project"]["slug"], "id": int(issue["project"]["id"])},
            "actor": {"type": "user", "id": user.id, "name": user.name},
        })
        response = httpx.post(self._url(self._form(form)["uri"]), content=body, headers=self._headers(body),
                              timeout=TIMEOUT)
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") \
            else None
        if response.status_code == 200 and isinstance(answer, Mapping) and all(
                isinstance(answer.get(k), str) for k in ("webUrl", "project", "identifier")):
            with fake._lock:
                stored = fake._get(issue_id, follow_merge=False)
                existing = stored.external.get(fake.app_slug)
                external_id = existing["id"] if existing else str(fake._next_external_id)
                if existing is None:
                    fake._next_external_id += 1
                stored.external[fake.app_slug] = {
                    "id": external_id, "issueId": str(stored.id), "serviceType": fake.app_slug,
                    "displayName": f"{html.escape(answer['project'])}#{html.escape(answer['identifier'])}",
                    "webUrl": answer["webUrl"],
                }
        return response

    def save_alert_rule(self, rule: str, values: Mapping[str, str]) -> httpx.Response:
        """A person saves an alert rule whose action is the integration, with these settings."""
        fields = [{"name": name, "value": value} for name, value in values.items()]
        body = compact_json({"fields": fields, "installationId": self._fake.installation_uuid})
        response = httpx.post(self._url(self._form("alert-rule")["uri"]), content=body,
                              headers=self._headers(body), timeout=TIMEOUT)
        if 200 <= response.status_code < 300:
            self.alert_rules[rule] = fields
        return response
