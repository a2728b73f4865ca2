"""The fake Sentry speaks Sentry's wire format: REST answers, pagination, rate-limit headers and the
integration webhooks (checked with raw httpx here, so the fake is tested apart from our client)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncer.fakes.base import Fault, WebhookInbox, compact_json, hmac_sha256_hex
from syncer.fakes.sentry import SENTRY_ACTOR, FakeSentry, start_fake_sentry

TOKEN = "fake-test-token"
SECRET = "fake-test-secret"
APP_ID = "0d9e4c1a-1111-4222-8333-444455556666"
INSTALLATION = "9b7c1d2e-aaaa-4bbb-8ccc-ddddeeeeffff"
LINK_ITEM = re.compile(r'^<(?P<url>[^>]+)>; rel="(?P<rel>previous|next)"; results="(?P<results>true|false)"; '
                       r'cursor="(?P<cursor>[^"]+)"$')


@pytest.fixture(scope="module")
def inbox() -> Iterator[WebhookInbox]:
    receiver = WebhookInbox().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def fake(inbox: WebhookInbox) -> Iterator[FakeSentry]:
    server = start_fake_sentry(token=TOKEN, client_secret=SECRET, app_id=APP_ID,
                               installation_uuid=INSTALLATION, webhook_url=inbox.url)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(fake: FakeSentry, inbox: WebhookInbox) -> None:
    fake.reset()
    inbox.clear()


@pytest.fixture(scope="module")
def http(fake: FakeSentry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{fake.url}/api/0/", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=5) as client:
        yield client


def links(response: httpx.Response) -> dict[str, dict[str, str]]:
    found = {}
    for item in response.headers["link"].split(", "):
        match = LINK_ITEM.match(item)
        assert match, item
        found[match["rel"]] = match.groupdict()
    return found


def actions(fake: FakeSentry) -> list[tuple[str, str, Any]]:
    return [(resource, p["action"], p["actor"]["id"]) for resource, p in fake.emitted()]


# ------------------------------------------------------------------ REST basics


def test_auth_and_org_are_checked(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    path = f"{fake.url}/api/0/organizations/acme/issues/{issue['id']}/"
    missing = httpx.get(path)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    wrong = httpx.get(path, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid token"})
    assert http.get(f"organizations/other-org/issues/{issue['id']}/").status_code == 404
    assert http.get("organizations/acme/issues/999/").status_code == 404


def test_issue_has_sentrys_shape(fake: FakeSentry, http: httpx.Client) -> None:
    filed = fake.file_issue(project="billing-api", title="KeyError: 'plan'", count=7, user_count=3)
    body = http.get(f"organizations/acme/issues/{filed['id']}/").json()
    details_only = {"firstRelease", "lastRelease"}  # Sentry's issue details add them; its list does not
    assert {k: v for k, v in body.items() if k not in details_only} == filed
    assert details_only <= body.keys()
    assert isinstance(body["id"], str)
    assert body["id"].isdigit()
    assert body["count"] == "7"
    assert body["userCount"] == 3
    assert body["shortId"] == "BILLING-API-1"
    assert body["project"] == {"id": "1", "name": "billing-api", "slug": "billing-api", "platform": "python"}
    assert body["metadata"]["type"] == "KeyError"
    assert (body["status"], body["substatus"], body["assignedTo"]) == ("unresolved", "new", None)
    assert body["permalink"] == f"{fake.url}/organizations/acme/issues/{body['id']}/"
    for key in ("culprit", "level", "statusDetails", "type", "platform", "logger", "firstSeen", "lastSeen",
                "numComments", "isUnhandled", "priority", "issueType", "issueCategory", "annotations"):
        assert key in body
    assert body["firstSeen"].endswith("Z")


def test_every_answer_carries_rate_limit_headers(fake: FakeSentry, http: httpx.Client) -> None:
    fake.faults.append(Fault("GET", r"/issues/1/$", status=503))
    answers = [http.get("organizations/acme/issues/"), http.get("organizations/acme/issues/1/"),
               httpx.get(f"{fake.url}/api/0/organizations/acme/issues/")]
    assert [a.status_code for a in answers] == [200, 503, 401]
    for answer in answers:
        for name in ("limit", "remaining", "reset", "concurrentlimit", "concurrentremaining"):
            assert answer.headers[f"x-sentry-rate-limit-{name}"].isdigit()
        assert int(answer.headers["x-sentry-rate-limit-reset"]) >= int(time.time())
    assert answers[1].json() == {"detail": "Injected failure 503"}


def test_a_429_fault_keeps_its_own_reset_and_has_no_retry_after(http: httpx.Client, fake: FakeSentry) -> None:
    reset = str(int(time.time()) + 7)
    fake.faults.append(Fault("GET", r"/issues/$", status=429, headers={"X-Sentry-Rate-Limit-Reset": reset}))
    answer = http.get("organizations/acme/issues/")
    assert answer.status_code == 429
    assert answer.headers["x-sentry-rate-limit-reset"] == reset
    assert "retry-after" not in answer.headers
    assert http.get("organizations/acme/issues/").status_code == 200  # the fault was used up


def test_enforced_rate_limit_answers_429(fake: FakeSentry, http: httpx.Client) -> None:
    fake.enforce_rate_limit = True
    fake.rate_limit = 3
    fake.rate_window = 60.0
    codes = [http.get("organizations/acme/issues/").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429, 429]


# ------------------------------------------------------------------ the list and its pagination


def test_list_defaults_to_unresolved_and_pages_with_sentrys_link_header(
    fake: FakeSentry, http: httpx.Client
) -> None:
    ids = fake.seed_issues(150)
    fake.seed_issues(5, status="resolved")
    first = http.get("organizations/acme/issues/", params={"limit": 100})
    assert len(first.json()) == 100
    assert first.json()[0]["id"] == ids[-1]  # newest first
    page = links(first)
    assert page["previous"]["results"] == "false"
    assert page["next"]["results"] == "true"
    assert page["next"]["url"].startswith(f"{fake.url}/api/0/organizations/acme/issues/?limit=100&cursor=")
    assert page["next"]["url"].endswith(f"&cursor={page['next']['cursor']}")
    second = http.get("organizations/acme/issues/", params={"limit": 100, "cursor": page["next"]["cursor"]})
    assert len(second.json()) == 50
    assert links(second)["next"]["results"] == "false"
    assert links(second)["previous"]["results"] == "true"
    assert {i["id"] for i in first.json() + second.json()} == set(ids)
    back = http.get("organizations/acme/issues/", params={"limit": 100,
                                                          "cursor": links(second)["previous"]["cursor"]})
    assert [i["id"] for i in back.json()] == [i["id"] for i in first.json()]


def test_list_query_language(fake: FakeSentry, http: httpx.Client) -> None:
    old = fake.file_issue(title="OldError: x", first_seen="2025-06-01T00:00:00Z")
    new = fake.file_issue(title="NewError: y", level="warning", tags={"http.status_code": ["404"]})
    gone = fake.file_issue(title="GoneError: z")
    fake.person_resolve(gone["id"])

    def ids(query: str | None) -> set[str]:
        params = {} if query is None else {"query": query}
        return {i["id"] for i in http.get("organizations/acme/issues/", params=params).json()}

    assert ids(None) == {old["id"], new["id"]}
    assert ids("") == {old["id"], new["id"], gone["id"]}
    assert ids("is:resolved") == {gone["id"]}
    assert ids("firstSeen:>-24h") == ids("firstSeen:-24h") == {new["id"], gone["id"]}
    assert ids("firstSeen:+24h") == {old["id"]}
    assert ids("is:unresolved firstSeen:>2026-01-01T00:00:00") == {new["id"]}
    assert ids("is:unresolved firstSeen:<2026-01-01T00:00:00") == {old["id"]}
    assert ids("level:warning") == {new["id"]}
    assert ids("http.status_code:404") == {new["id"]}
    assert ids("!level:warning") == {old["id"], gone["id"]}  # a query replaces the is:unresolved default
    assert ids('"OldError"') == {old["id"]}
    assert http.get("organizations/acme/issues/", params={"query": "is:bogus"}).status_code == 400


def test_limit_is_capped_at_100(fake: FakeSentry, http: httpx.Client) -> None:
    fake.seed_issues(120)
    assert len(http.get("organizations/acme/issues/", params={"limit": 500}).json()) == 100


def test_group_ids_ignore_the_query_and_are_not_paginated_while_id_is_ignored_on_get(
    fake: FakeSentry, http: httpx.Client
) -> None:
    resolved = fake.seed_issues(3, status="resolved")
    open_ = fake.seed_issues(2)
    got = http.get("organizations/acme/issues/", params=tuple(("group", i) for i in [*resolved, "1"]))
    assert [i["id"] for i in got.json()] == resolved
    assert "link" not in got.headers
    by_id = http.get("organizations/acme/issues/", params=[("id", resolved[0])])
    assert {i["id"] for i in by_id.json()} == set(open_)  # `id` is not a selector on GET: default query


def test_100k_issues_stay_fast(fake: FakeSentry, http: httpx.Client) -> None:
    started = time.perf_counter()
    fake.seed_issues(100_000)
    seeded = time.perf_counter() - started
    started = time.perf_counter()
    first = http.get("organizations/acme/issues/", params={"query": "", "limit": 100})
    cursor = links(first)["next"]["cursor"]
    for _ in range(20):
        page = http.get("organizations/acme/issues/", params={"query": "", "limit": 100, "cursor": cursor})
        cursor = links(page)["next"]["cursor"]
    paged = time.perf_counter() - started
    assert fake.issue_count() == 100_000
    assert seeded < 5, seeded
    assert paged < 3, paged


# ------------------------------------------------------------------ updates and their webhooks


def test_put_changes_state_and_echoes_with_our_app_as_actor(
    fake: FakeSentry, http: httpx.Client, inbox: WebhookInbox
) -> None:
    issue = fake.file_issue()
    answer = http.put(f"organizations/acme/issues/{issue['id']}/", json={"status": "resolvedInNextRelease"})
    assert answer.status_code == 200
    assert answer.json()["status"] == "resolved"
    assert answer.json()["statusDetails"]["inNextRelease"] is True
    created, resolved = inbox.wait(2)
    assert created.json()["action"] == "created"
    assert created.json()["actor"] == SENTRY_ACTOR
    assert resolved.json()["action"] == "resolved"
    assert resolved.json()["data"]["resolution_type"] == "in_next_release"
    assert resolved.json()["actor"] == {"type": "application", "id": APP_ID, "name": "syncer"}


def test_a_put_that_changes_nothing_sends_nothing(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue(assigned_to="team:payments")
    path = f"organizations/acme/issues/{issue['id']}/"
    before = len(fake.emitted())
    assert http.put(path, json={"status": "unresolved"}).status_code == 200
    assert http.put(path, json={"assignedTo": "team:1"}).status_code == 200
    assert len(fake.emitted()) == before
    assert http.put(path, json={"status": "resolved"}).status_code == 200
    assert http.put(path, json={"status": "resolved"}).status_code == 200
    assert len(fake.emitted()) == before + 1


def test_webhook_delivery_is_signed_compact_and_gets_a_new_request_id_per_attempt(
    fake: FakeSentry, inbox: WebhookInbox
) -> None:
    inbox.answers[:] = [503]  # the first attempt fails: the sender retries
    fake.file_issue(title="RetryError: again")
    first, second = inbox.wait(2)
    assert first.body == second.body
    assert first.headers["request-id"] != second.headers["request-id"]
    for hook in (first, second):
        assert re.fullmatch(r"[0-9a-f]{32}", hook.headers["request-id"])
        assert hook.headers["content-type"] == "application/json"
        assert hook.headers["sentry-hook-resource"] == "issue"
        assert abs(int(hook.headers["sentry-hook-timestamp"]) - time.time()) < 10
        assert hook.headers["sentry-hook-signature"] == hmac_sha256_hex(SECRET, hook.body)
    payload = json.loads(first.body)
    assert compact_json(payload) == first.body
    assert list(payload) == ["action", "installation", "data", "actor"]
    assert payload["installation"] == {"uuid": INSTALLATION}
    issue = payload["data"]["issue"]
    assert issue["url"] == f"{fake.url}/api/0/organizations/acme/issues/{issue['id']}/"
    assert issue["web_url"] == issue["permalink"]
    assert issue["project_url"].startswith(f"{fake.url}/organizations/acme/issues/?project=")


def test_person_and_sentry_actions_carry_their_actors(fake: FakeSentry) -> None:
    issue = fake.file_issue(assigned_to="user:bob@example.com")
    fake.person_resolve(issue["id"], by="carol@example.com")
    fake.regress(issue["id"])
    fake.person_archive(issue["id"], "archived_until_escalating")
    fake.escalate(issue["id"])
    fake.person_assign(issue["id"], "team:payments")
    fake.person_assign(issue["id"], None)  # unassigning sends no webhook
    fake.person_comment(issue["id"], "looking")
    fake.trigger_alert(issue["id"], rule="High priority")
    assert actions(fake) == [
        ("issue", "created", "sentry"),
        ("issue", "assigned", "sentry"),  # ownership rules assign on creation
        ("issue", "resolved", 3),
        ("issue", "unresolved", "sentry"),
        ("issue", "ignored", 1),
        ("issue", "archived", 1),
        ("issue", "unresolved", "sentry"),
        ("issue", "assigned", 1),
        ("comment", "created", 1),
        ("event_alert", "triggered", "sentry"),
    ]
    payloads = [p for _, p in fake.emitted()]
    assert payloads[3]["data"]["issue"]["substatus"] == "regressed"
    assert payloads[4]["data"]["issue"]["substatus"] == "archived_until_escalating"
    assert payloads[6]["data"]["issue"]["substatus"] == "escalating"
    assert payloads[7]["data"]["assignee"] == {"type": "team", "name": "payments", "id": 1}
    event = payloads[9]["data"]["event"]
    assert event["issue_id"] == issue["id"]
    assert event["issue_url"].endswith(f"/api/0/issues/{issue['id']}/")
    assert payloads[9]["data"]["triggered_rule"] == "High priority"
    assert fake.issue(issue["id"])["count"] == "4"  # the regression, escalation and alert were events


def test_unarchiving_sends_no_webhook_unless_asked(fake: FakeSentry) -> None:
    issue = fake.file_issue()
    fake.person_archive(issue["id"])
    before = len(fake.emitted())
    fake.person_unresolve(issue["id"])
    assert len(fake.emitted()) == before
    assert fake.issue(issue["id"])["substatus"] == "new"
    fake.webhook_on_unignore = True
    fake.person_archive(issue["id"])
    fake.person_unresolve(issue["id"])
    assert actions(fake)[-1] == ("issue", "unresolved", 1)


def test_bulk_update_by_id(fake: FakeSentry, http: httpx.Client) -> None:
    a, b = fake.file_issue()["id"], fake.file_issue()["id"]
    answer = http.put("organizations/acme/issues/", params=[("id", a), ("id", b), ("id", "1")],
                      json={"status": "ignored", "statusDetails": {"ignoreCount": 10}})
    assert answer.status_code == 200
    assert answer.json()["status"] == "ignored"
    assert fake.issue(a)["substatus"] == fake.issue(b)["substatus"] == "archived_until_condition_met"
    assert [act for act in actions(fake) if act[1] == "ignored"] == [("issue", "ignored", APP_ID)] * 2
    nothing = http.put("organizations/acme/issues/", params=[("id", "1")], json={"status": "resolved"})
    assert nothing.status_code == 204


def test_bad_updates_are_refused(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    path = f"organizations/acme/issues/{issue['id']}/"
    assert http.put(path, json={"status": "closed"}).status_code == 400
    assert http.put(path, json={"assignedTo": "user:99999"}).status_code == 400
    garbage = http.put(path, content=b"{not json", headers={"Content-Type": "application/json"})
    assert garbage.status_code == 400
    assert fake.issue(issue["id"])["status"] == "unresolved"


# ------------------------------------------------------------------ tags, notes, external issues


def test_tags_and_values(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue(count=10)
    fake.set_tags(issue["id"], {"environment": ["production", "staging"], "team": "payments"})
    tags = http.get(f"organizations/acme/issues/{issue['id']}/tags/").json()
    assert [t["key"] for t in tags] == ["environment", "team"]
    assert tags[0]["name"] == "Environment"
    assert [v["value"] for v in tags[0]["topValues"]] == ["production", "staging"]
    assert tags[0]["totalValues"] == sum(v["count"] for v in tags[0]["topValues"])
    values = http.get(f"organizations/acme/issues/{issue['id']}/tags/team/values/")
    assert [v["value"] for v in values.json()] == ["payments"]
    assert http.get(f"organizations/acme/issues/{issue['id']}/tags/nope/values/").status_code == 404


def test_notes_are_created_once_and_echoed(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    path = f"organizations/acme/issues/{issue['id']}/notes/"
    created = http.post(path, json={"text": "Jira ticket: PAY-1"})
    assert created.status_code == 201
    assert created.json()["data"] == {"text": "Jira ticket: PAY-1"}
    again = http.post(path, json={"text": "Jira ticket: PAY-1"})
    assert (again.status_code, again.json()) == (400, {"detail": "You have already posted that comment."})
    assert http.post(path, json={}).status_code == 400
    assert [n["data"]["text"] for n in fake.notes(issue["id"])] == ["Jira ticket: PAY-1"]
    assert fake.issue(issue["id"])["numComments"] == 1
    resource, payload = fake.emitted()[-1]
    assert (resource, payload["action"], payload["actor"]["id"]) == ("comment", "created", APP_ID)
    assert payload["data"]["issue_id"] == int(issue["id"])
    assert payload["data"]["comment"] == "Jira ticket: PAY-1"


def test_external_issue_link_is_one_per_issue_and_app(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    path = f"sentry-app-installations/{INSTALLATION}/external-issues/"
    body = {"issueId": int(issue["id"]), "webUrl": "https://jira.example.com/browse/PAY-1",
            "project": "PAY", "identifier": "PAY-1"}
    first = http.post(path, json=body)
    assert first.status_code == 200
    assert first.json()["displayName"] == "PAY#PAY-1"
    assert first.json()["serviceType"] == "syncer"
    second = http.post(path, json={**body, "identifier": "PAY-2", "webUrl": "https://jira.example.com/browse/PAY-2"})
    assert second.json()["id"] == first.json()["id"]
    assert fake.external_issues(issue["id"]) == [second.json()]
    assert fake.issue(issue["id"])["annotations"] == [
        {"displayName": "PAY#PAY-2", "url": "https://jira.example.com/browse/PAY-2"}
    ]
    assert http.post("sentry-app-installations/not-ours/external-issues/", json=body).status_code == 404
    assert http.post(path, json={**body, "issueId": 1}).status_code == 404
    assert http.post(path, json={**body, "webUrl": "not a url"}).status_code == 400
    assert http.delete(f"{path}{first.json()['id']}/").status_code == 204
    assert fake.external_issues(issue["id"]) == []


def test_reset_forgets_everything(fake: FakeSentry, http: httpx.Client) -> None:
    fake.file_issue()
    fake.faults.append(Fault("*", r".*", status=500, times=None))
    fake.latency = 0.01
    fake.reset()
    assert fake.issues() == []
    assert fake.emitted() == []
    assert fake.latency == 0.0
    assert http.get("organizations/acme/issues/").json() == []
    assert fake.calls.count() == 1
