"""The fake Jira speaks Jira: the real `jira` library works against it unchanged (Cloud and Server/DC),
and its answers, errors and webhooks have Jira's shapes and quirks."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from jira import JIRAError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncer.fakes.base import FakeServer, Fault, WebhookInbox
from syncer.fakes.jira import FakeJira
from syncer.jira.webhooks import parse_event, verify_signature
from tests.harness import FAKE_JIRA_EMAIL, FAKE_JIRA_PAT, FAKE_JIRA_SECRET, FAKE_JIRA_TOKEN, jira_library

EMAIL, TOKEN, PAT, SECRET = FAKE_JIRA_EMAIL, FAKE_JIRA_TOKEN, FAKE_JIRA_PAT, FAKE_JIRA_SECRET


def api(fake: FakeJira, method: str, path: str, **kwargs: Any) -> requests.Response:
    auth: Any = (EMAIL, TOKEN) if fake.deployment == "Cloud" else None
    headers = {} if auth else {"Authorization": f"Bearer {PAT}"}
    return requests.request(method, f"{fake.url}/rest/api/2/{path}", auth=auth, headers=headers, timeout=5,
                            **kwargs)


def new_issue(fake: FakeJira, **fields: Any) -> dict[str, Any]:
    body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "It broke",
                       **fields}}
    answer = api(fake, "POST", "issue", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


# -- the real library, unchanged ---------------------------------------------------------------------


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_the_jira_library_works_unchanged(deployment: str, cloud_jira: FakeJira, dc_jira: FakeJira) -> None:
    fake = cloud_jira if deployment == "Cloud" else dc_jira
    jira = jira_library(fake)
    assert jira.deploymentType == deployment

    created = jira.create_issue(fields={"project": {"key": "OPS"}, "issuetype": {"name": "Bug"},
                                        "summary": "Checkout fails", "labels": ["sentry-1"],
                                        "components": [{"name": "Backend"}]}, prefetch=False)
    assert created.key.startswith("OPS-")
    issue = jira.issue(created.key)
    assert (issue.fields.status.name, issue.fields.status.statusCategory.key) == ("To Do", "new")
    assert issue.fields.labels == ["sentry-1"]
    assert issue.fields.components[0].name == "Backend"

    if deployment == "Cloud":
        found = jira.enhanced_search_issues('labels = "sentry-1"', fields=["status"])
        assert fake.calls.count("GET", r"/search/jql$") == 1
    else:
        found = jira.search_issues('labels = "sentry-1"', fields=["status"])
        assert fake.calls.count("GET", r"/rest/api/2/search$") == 1
    assert [i.key for i in found] == [created.key]

    targets = {t["to"]["name"]: t["name"] for t in jira.transitions(issue)}
    assert targets == {"In Progress": "Start progress", "Done": "Done", "Won't Do": "Won't do"}
    jira.transition_issue(issue, "Won't do")
    resolution = jira.issue(created.key).fields.resolution
    assert resolution is not None
    assert resolution.name == "Won't Do"

    jira.add_comment(created.key, "seen in production")
    assert [c.body for c in jira.comments(created.key)] == ["seen in production"]
    assert fake.comments(created.key)[0]["author"] == fake.bot_account_id


def test_cloud_has_removed_the_old_search(cloud_jira: FakeJira) -> None:
    answer = api(cloud_jira, "GET", "search", params={"jql": "project = OPS"})
    assert answer.status_code == 410
    assert "search/jql" in answer.json()["errorMessages"][0]


def test_server_has_no_enhanced_search(dc_jira: FakeJira) -> None:
    assert api(dc_jira, "GET", "search/jql", params={"jql": "project = OPS"}).status_code == 404


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        pytest.param((EMAIL, "wrong"), {}, id="wrong-token"),
        pytest.param(None, {}, id="none"),
        pytest.param(None, {"Authorization": f"Bearer {TOKEN}"}, id="bearer-on-cloud_jira"),
    ],
)
def test_bad_credentials_get_a_jira_401(cloud_jira: FakeJira, auth: Any, headers: dict[str, str]) -> None:
    answer = requests.get(f"{cloud_jira.url}/rest/api/2/myself", auth=auth, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert answer.json()["errorMessages"]


def test_server_takes_a_bearer_pat(dc_jira: FakeJira) -> None:
    assert api(dc_jira, "GET", "myself").json()["name"] == "syncer-bot"
    basic = requests.get(f"{dc_jira.url}/rest/api/2/myself", auth=(EMAIL, TOKEN), timeout=5)
    assert basic.status_code == 401


# -- creating: Jira's validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"components": [{"name": "Nope"}]}, "components", "Component name 'Nope' is not valid"),
        ({"labels": ["two words"]}, "labels", "contains spaces"),
        ({"summary": "x" * 256}, "summary", "less than 255 characters"),
        ({"summary": "two\nlines"}, "summary", "newline"),
        ({"project": {"key": "NOPE"}}, "project", "valid project is required"),
        ({"issuetype": {"name": "Saga"}}, "issuetype", "valid issue type is required"),
        ({"customfield_10099": "x"}, "customfield_10099", "not on the appropriate screen"),
        ({"assignee": {"name": "pat"}}, "assignee", "accountId"),
    ],
)
def test_create_validates_like_jira(cloud_jira: FakeJira, fields: dict[str, Any], field: str,
                                    message: str) -> None:
    body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "ok", **fields}}
    answer = api(cloud_jira, "POST", "issue", json=body)
    assert answer.status_code == 400
    assert answer.json()["errorMessages"] == []
    assert message in answer.json()["errors"][field]
    assert cloud_jira.issues() == []


def test_create_answers_id_key_and_self(cloud_jira: FakeJira) -> None:
    created = new_issue(cloud_jira)
    assert set(created) == {"id", "key", "self"}
    assert created["key"].startswith("OPS-")
    assert created["self"] == f"{cloud_jira.url}/rest/api/2/issue/{created['id']}"


def test_bodies_must_be_json(cloud_jira: FakeJira) -> None:
    answer = requests.post(f"{cloud_jira.url}/rest/api/2/issue", data="x=1", auth=(EMAIL, TOKEN), timeout=5,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415


# -- search --------------------------------------------------------------------------------------------


def test_enhanced_search_pages_by_token_without_total(cloud_jira: FakeJira) -> None:
    for n in range(7):
        cloud_jira.person_create("PAY", f"issue {n}", ["batch"])
    first = api(cloud_jira, "POST", "search/jql", json={"jql": "labels = batch", "maxResults": 5,
                                                   "fields": ["status"]}).json()
    assert "total" not in first
    assert (len(first["issues"]), first["isLast"]) == (5, False)
    second = api(cloud_jira, "POST", "search/jql", json={"jql": "labels = batch", "maxResults": 5,
                                                    "nextPageToken": first["nextPageToken"]}).json()
    assert (len(second["issues"]), second["isLast"]) == (2, True)
    assert "nextPageToken" not in second
    assert second["issues"][0] == {"id": second["issues"][0]["id"]}  # ids only unless fields are asked


def test_search_caps_max_results_at_100(cloud_jira: FakeJira, dc_jira: FakeJira) -> None:
    for _ in range(120):
        cloud_jira.person_create("OPS", "many", ["many"])
        dc_jira.person_create("OPS", "many", ["many"])
    many = {"jql": "labels = many", "maxResults": 1000}
    cloud_page = api(cloud_jira, "GET", "search/jql", params=many).json()
    server_page = api(dc_jira, "GET", "search", params=many).json()
    assert len(cloud_page["issues"]) == 100
    assert (len(server_page["issues"]), server_page["total"], server_page["maxResults"]) == (100, 120, 100)


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("labels ~ x", "operator '~' is not supported"),
        ("nonsense = x", "Field 'nonsense' does not exist"),
        ("labels = ", "Expecting a value"),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("labels = a ORDER BY nonsense", "Not able to sort using field 'nonsense'"),
        ("labels = a AND (labels = b", "Expecting ')'"),
        ("id in (10001, 99999)", "An issue with key '99999' does not exist for field 'id'."),
        ("ORDER BY created", "Unbounded JQL queries are not allowed"),
    ],
)
def test_bad_jql_is_a_400(cloud_jira: FakeJira, jql: str, message: str) -> None:
    new_issue(cloud_jira)
    answer = api(cloud_jira, "GET", "search/jql", params={"jql": jql})
    assert answer.status_code == 400
    assert any(message in m for m in answer.json()["errorMessages"]), answer.json()


def test_jql_subset(cloud_jira: FakeJira) -> None:
    a = cloud_jira.person_create("OPS", "a", ["x", "y"])
    b = cloud_jira.person_create("PAY", "b", ["x"])
    c = cloud_jira.person_create("WEB", "c", [])
    cloud_jira.person_transition(b, "Done")

    def keys(jql: str) -> list[str]:
        answer = api(cloud_jira, "POST", "search/jql", json={"jql": jql, "fields": ["status"]})
        assert answer.status_code == 200, answer.text
        return [i["key"] for i in answer.json()["issues"]]

    ids = {key: cloud_jira.issue(key)["id"] for key in (a, b, c)}  # type: ignore[index]
    assert keys('labels = "x"') == [a, b]
    assert keys("labels in (y, nothing)") == [a]
    assert keys(f"id in ({ids[a]}, {ids[c]})") == [a, c]
    assert keys(f"key in ({b}, {c}) ORDER BY key DESC") == [c, b]
    assert keys("project = PAY AND statusCategory = done") == [b]
    assert keys("statusCategory != Done AND project in (OPS, WEB)") == [a, c]
    assert keys("labels = x OR project = WEB ORDER BY created DESC") == [c, b, a]
    assert keys("labels is EMPTY AND updated >= -5m") == [c]
    assert keys('status = "Done" AND resolution = Done') == [b]


def test_server_validate_query_warn_turns_missing_ids_into_warnings(dc_jira: FakeJira) -> None:
    issue = new_issue(dc_jira)
    answer = api(dc_jira, "POST", "search", json={"jql": f"id in ({issue['id']}, 99999)",
                                                 "validateQuery": "warn", "fields": ["status"]})
    assert answer.status_code == 200
    assert [i["key"] for i in answer.json()["issues"]] == [issue["key"]]
    assert answer.json()["warningMessages"] == ["An issue with key '99999' does not exist for field 'id'."]


def test_search_lag_hides_new_issues_from_search_only(cloud_jira: FakeJira) -> None:
    cloud_jira.search_lag = 0.3
    created = new_issue(cloud_jira, labels=["fresh"])
    found = api(cloud_jira, "GET", "search/jql", params={"jql": "labels = fresh"}).json()["issues"]
    assert found == []
    assert api(cloud_jira, "GET", f"issue/{created['key']}").status_code == 200
    reconciled = api(cloud_jira, "POST", "search/jql", json={"jql": "labels = fresh",
                                                        "reconcileIssues": [int(created["id"])]})
    assert [i["id"] for i in reconciled.json()["issues"]] == [created["id"]]
    time.sleep(0.35)
    later = api(cloud_jira, "GET", "search/jql", params={"jql": "labels = fresh"}).json()["issues"]
    assert [i["id"] for i in later] == [created["id"]]


# -- users ---------------------------------------------------------------------------------------------


def test_cloud_user_search_is_a_prefix_match(cloud_jira: FakeJira) -> None:
    cloud_jira.add_user("acc-alice", "Alice Example", "alice@example.com")
    cloud_jira.add_user("acc-alice-smith", "Alice Smith", "alice.smith@example.com")
    cloud_jira.add_user("acc-bob", "Bob Jones", "bob@example.com")

    def found(query: str) -> set[str]:
        return {u["accountId"] for u in api(cloud_jira, "GET", "user/search", params={"query": query}).json()}

    assert found("alice@example.com") == {"acc-alice"}
    assert found("alice") == {"acc-alice", "acc-alice-smith"}
    assert found("ALICE@") == {"acc-alice"}
    assert found("smith") == {"acc-alice-smith"}
    assert found("jones") == {"acc-bob"}
    assert api(cloud_jira, "GET", "user/search", params={"username": "bob"}).status_code == 400


def test_hidden_emails_match_only_exactly_and_stay_hidden(cloud_jira: FakeJira) -> None:
    cloud_jira.add_user("acc-private", "Quiet Person", "private@example.com", email_visible=False)
    users = api(cloud_jira, "GET", "user/search", params={"query": "PRIVATE@example.com"}).json()
    assert [u["accountId"] for u in users] == ["acc-private"]
    assert "emailAddress" not in users[0]
    assert api(cloud_jira, "GET", "user/search", params={"query": "private@"}).json() == []


def test_server_user_search_by_username(dc_jira: FakeJira) -> None:
    dc_jira.add_user("alice", "Alice Example", "alice@example.com")
    users = api(dc_jira, "GET", "user/search", params={"username": "ali"}).json()
    assert [(u["name"], u["emailAddress"]) for u in users] == [("alice", "alice@example.com")]


# -- workflow, links, edits -----------------------------------------------------------------------------


def test_a_transition_sets_and_clears_the_resolution(cloud_jira: FakeJira) -> None:
    key = new_issue(cloud_jira)["key"]
    done = api(cloud_jira, "POST", f"issue/{key}/transitions", json={"transition": {"id": "31"}})
    assert done.status_code == 204
    assert cloud_jira.issue(key)["resolution"] == "Done"  # type: ignore[index]
    api(cloud_jira, "POST", f"issue/{key}/transitions", json={"transition": {"id": "11"}})
    assert cloud_jira.issue(key)["resolution"] is None  # type: ignore[index]
    bad = api(cloud_jira, "POST", f"issue/{key}/transitions", json={"transition": {"id": "11"}})
    assert bad.status_code == 400  # no transition from To Do to To Do


def test_a_field_that_is_not_on_the_transition_screen_is_refused(cloud_jira: FakeJira) -> None:
    key = new_issue(cloud_jira)["key"]
    body = {"transition": {"id": "31"}, "fields": {"resolution": {"name": "Done"}}}
    answer = api(cloud_jira, "POST", f"issue/{key}/transitions", json=body)
    assert answer.status_code == 400
    assert "not on the appropriate screen" in answer.json()["errors"]["resolution"]


def test_require_resolution_makes_done_transitions_ask_for_one(cloud_jira: FakeJira) -> None:
    cloud_jira.require_resolution = True
    key = new_issue(cloud_jira)["key"]
    params = {"expand": "transitions.fields"}
    transitions = api(cloud_jira, "GET", f"issue/{key}/transitions", params=params).json()
    done = next(t for t in transitions["transitions"] if t["to"]["name"] == "Done")
    assert done["hasScreen"] is True
    assert done["fields"]["resolution"]["required"] is True
    refused = api(cloud_jira, "POST", f"issue/{key}/transitions", json={"transition": {"id": "31"}})
    assert refused.json()["errors"] == {"resolution": "Resolution is required."}
    body = {"transition": {"id": "31"}, "fields": {"resolution": {"name": "Duplicate"}}}
    assert api(cloud_jira, "POST", f"issue/{key}/transitions", json=body).status_code == 204
    assert cloud_jira.issue(key)["resolution"] == "Duplicate"  # type: ignore[index]


def test_issue_can_expand_its_transitions(cloud_jira: FakeJira) -> None:
    key = new_issue(cloud_jira)["key"]
    raw = api(cloud_jira, "GET", f"issue/{key}", params={"fields": "status", "expand": "transitions"}).json()
    assert set(raw["fields"]) == {"status"}
    assert {t["to"]["name"] for t in raw["transitions"]} == {"In Progress", "Done", "Won't Do"}


def test_remote_links_upsert_on_global_id(cloud_jira: FakeJira) -> None:
    key = new_issue(cloud_jira)["key"]
    first = api(cloud_jira, "POST", f"issue/{key}/remotelink",
                json={"globalId": "sentry-issue-1", "object": {"url": "https://a", "title": "A"}})
    again = api(cloud_jira, "POST", f"issue/{key}/remotelink",
                json={"globalId": "sentry-issue-1", "object": {"url": "https://b", "title": "B"}})
    other = api(cloud_jira, "POST", f"issue/{key}/remotelink",
                json={"object": {"url": "https://c", "title": "C"}})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"]
    links = cloud_jira.remote_links(key)
    assert [(link.get("globalId"), link["object"]["title"]) for link in links] == [("sentry-issue-1", "B"),
                                                                                    (None, "C")]


def test_remote_links_need_a_title_and_url(cloud_jira: FakeJira) -> None:
    key = new_issue(cloud_jira)["key"]
    answer = api(cloud_jira, "POST", f"issue/{key}/remotelink", json={"object": {"url": "https://a"}})
    assert answer.status_code == 400
    assert "title" in answer.json()["errors"]


def test_edits_by_fields_and_by_update_operations(cloud_jira: FakeJira) -> None:
    key = new_issue(cloud_jira, labels=["a"])["key"]
    update = {"update": {"labels": [{"add": "b"}, {"remove": "a"}]}, "fields": {"summary": "Renamed"}}
    assert api(cloud_jira, "PUT", f"issue/{key}", json=update).status_code == 204
    assigned = api(cloud_jira, "PUT", f"issue/{key}/assignee",
                   json={"accountId": cloud_jira.person_account_id})
    assert assigned.status_code == 204
    snapshot = cloud_jira.issue(key)
    assert snapshot is not None
    assert (snapshot["labels"], snapshot["summary"], snapshot["assignee"]) == (["b"], "Renamed",
                                                                               cloud_jira.person_account_id)
    assert api(cloud_jira, "PUT", f"issue/{key}/assignee", json={"accountId": "nobody"}).status_code == 400


def test_a_moved_issue_keeps_its_id_and_answers_to_its_old_key(cloud_jira: FakeJira) -> None:
    created = new_issue(cloud_jira)
    new_key = cloud_jira.person_move(created["key"], "PAY")
    assert new_key.startswith("PAY-")
    moved = api(cloud_jira, "GET", f"issue/{created['key']}").json()
    assert (moved["id"], moved["key"]) == (created["id"], new_key)


def test_deleted_issues_are_gone(cloud_jira: FakeJira) -> None:
    key = new_issue(cloud_jira)["key"]
    assert api(cloud_jira, "DELETE", f"issue/{key}").status_code == 204
    gone = api(cloud_jira, "GET", f"issue/{key}")
    assert gone.status_code == 404
    assert gone.json()["errorMessages"] == ["Issue does not exist or you do not have permission to see it."]


# -- webhooks ------------------------------------------------------------------------------------------


def wait_for(jira_webhooks: WebhookInbox, count: int) -> list[dict[str, Any]]:
    """Every webhook received, once at least `count` have arrived."""
    jira_webhooks.wait(count)
    return [hook.json() for hook in jira_webhooks.received]


def test_api_changes_come_back_signed_as_the_bot(cloud_jira: FakeJira, jira_webhooks: WebhookInbox) -> None:
    key = new_issue(cloud_jira, labels=["sentry-9"])["key"]
    api(cloud_jira, "POST", f"issue/{key}/transitions", json={"transition": {"id": "31"}})
    events = wait_for(jira_webhooks, 2)
    assert [e["webhookEvent"] for e in events] == ["jira:issue_created", "jira:issue_updated"]
    assert {e["user"]["accountId"] for e in events} == {cloud_jira.bot_account_id}
    items = {i["field"]: i for i in events[1]["changelog"]["items"]}
    assert (items["status"]["fromString"], items["status"]["toString"], items["status"]["to"]) == (
        "To Do", "Done", "10001")
    assert items["resolution"]["toString"] == "Done"
    identifiers = {hook.headers["x-atlassian-webhook-identifier"] for hook in jira_webhooks.received}
    assert len(identifiers) == 2
    for hook in jira_webhooks.received:
        assert verify_signature(SECRET, hook.body, hook.headers["x-hub-signature"])


def test_person_actions_send_the_persons_webhooks(cloud_jira: FakeJira, jira_webhooks: WebhookInbox) -> None:
    key = cloud_jira.person_create("OPS", "by hand", ["manual"])
    cloud_jira.person_assign(key, cloud_jira.person_account_id)
    cloud_jira.person_comment(key, "looking")
    new_key = cloud_jira.person_move(key, "WEB")
    cloud_jira.person_delete(new_key)
    events = wait_for(jira_webhooks, 6)
    kinds = [(e["webhookEvent"], e.get("issue_event_type_name")) for e in events]
    assert kinds == [
        ("jira:issue_created", "issue_created"),
        ("jira:issue_updated", "issue_assigned"),
        ("comment_created", None),
        ("jira:issue_updated", "issue_commented"),
        ("jira:issue_updated", "issue_moved"),
        ("jira:issue_deleted", "issue_deleted"),
    ]
    parsed = [parse_event(e) for e in events]
    assert {p.user_id for p in parsed} == {cloud_jira.person_account_id}
    assert parsed[2].comment == "looking"
    move = parsed[4].change("Key")
    assert move is not None
    assert (move.from_string, move.to_string) == (key, new_key)
    assert parsed[4].ticket is not None
    assert parsed[4].ticket.id == parsed[0].ticket.id  # type: ignore[union-attr]


def test_retries_keep_the_identifier_and_say_they_are_retries(cloud_jira: FakeJira) -> None:
    attempts: list[dict[str, str]] = []

    async def flaky(request: Request) -> Response:
        attempts.append(dict(request.headers))
        return Response(status_code=503 if len(attempts) == 1 else 204)

    target = FakeServer(Starlette(routes=[Route("/", flaky, methods=["POST"])])).start()
    previous = cloud_jira.webhooks.url
    cloud_jira.webhooks.url = f"{target.url}/"
    try:
        cloud_jira.person_create("OPS", "retried", [])
        assert cloud_jira.webhooks.drain(5)
    finally:
        cloud_jira.webhooks.url = previous
        target.stop()
    assert len(attempts) == 2
    assert attempts[0]["x-atlassian-webhook-identifier"] == attempts[1]["x-atlassian-webhook-identifier"]
    assert "x-atlassian-webhook-retry" not in attempts[0]
    assert attempts[1]["x-atlassian-webhook-retry"] == "1"


# -- faults, latency, reset ----------------------------------------------------------------------------


def test_faults_and_call_log(cloud_jira: FakeJira) -> None:
    cloud_jira.faults.append(Fault("POST", r"/issue$", status=429, headers={"Retry-After": "7"}))
    limited = api(cloud_jira, "POST", "issue", json={"fields": {}})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.json() == {"errorMessages": ["Rate limit exceeded."], "errors": {}}
    cloud_jira.faults.append(Fault("GET", r"/myself$", drop=True))
    with pytest.raises(requests.ConnectionError):
        api(cloud_jira, "GET", "myself")
    assert cloud_jira.calls.count("POST", r"/issue$") == 1


def test_an_after_fault_applies_the_write_then_fails(cloud_jira: FakeJira) -> None:
    cloud_jira.faults.append(Fault("POST", r"/issue$", status=500, after=True))
    body = {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "half"}}
    assert api(cloud_jira, "POST", "issue", json=body).status_code == 500
    assert [i["summary"] for i in cloud_jira.issues()] == ["half"]


def test_reset_forgets_issues_calls_and_faults(cloud_jira: FakeJira) -> None:
    new_issue(cloud_jira)
    cloud_jira.faults.append(Fault("GET", r"/never$"))
    cloud_jira.reset()
    assert (cloud_jira.issues(), cloud_jira.calls.count(), cloud_jira.faults) == ([], 0, [])


def test_the_library_sees_jira_errors(cloud_jira: FakeJira) -> None:
    jira = jira_library(cloud_jira)
    with pytest.raises(JIRAError) as raised:
        jira.issue("OPS-999")
    assert raised.value.status_code == 404


def test_thousands_of_issues_stay_fast(cloud_jira: FakeJira) -> None:
    started = time.monotonic()
    keys = [cloud_jira.person_create("OPS", f"bulk {n}", [f"sentry-{n}", "bulk"]) for n in range(3000)]
    found = api(cloud_jira, "POST", "search/jql",
                json={"jql": 'labels = "sentry-2999"', "fields": ["status"]})
    assert [i["key"] for i in found.json()["issues"]] == [keys[-1]]
    ids = [cloud_jira.issue(k)["id"] for k in keys[:100]]  # type: ignore[index]
    page = api(cloud_jira, "POST", "search/jql", json={"jql": f"id in ({', '.join(ids)})", "maxResults": 100,
                                                  "fields": ["status"]})
    assert len(page.json()["issues"]) == 100
    assert time.monotonic() - started < 5
