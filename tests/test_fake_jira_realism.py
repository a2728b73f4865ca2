"""The fake Jira behaves like real company-managed Cloud and Data Center sites, each behaviour behind a
switch: strict workflows, transition screens with required fields, create-meta and required custom
fields, assignability, hidden e-mail addresses, Jira's limits, Data Center 9, team-managed projects and
bulk create. Spoken to over real HTTP, with httpx and with the real `jira` library."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jira import JIRAError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncer.fakes.base import FakeServer, WebhookInbox
from syncer.fakes.jira import FakeJira, start_fake_jira
from syncer.fakes.jira_limits import CLOUD_ISSUE_WRITE_LIMITS
from syncer.jira.webhooks import verify_signature
from tests.harness import FAKE_JIRA_EMAIL, FAKE_JIRA_PAT, FAKE_JIRA_SECRET, FAKE_JIRA_TOKEN, jira_library

EMAIL, TOKEN, PAT, SECRET = FAKE_JIRA_EMAIL, FAKE_JIRA_TOKEN, FAKE_JIRA_PAT, FAKE_JIRA_SECRET
SELECT = "com.atlassian.jira.plugin.system.customfieldtypes:select"


def http(fake: FakeJira) -> httpx.Client:
    if fake.deployment == "Cloud":
        return httpx.Client(base_url=f"{fake.url}/rest/api/2/", auth=(EMAIL, TOKEN), timeout=5)
    return httpx.Client(base_url=f"{fake.url}/rest/api/2/", headers={"Authorization": f"Bearer {PAT}"},
                        timeout=5)


def create(fake: FakeJira, project: str = "OPS", issuetype: str = "Task", /, **fields: Any) -> httpx.Response:
    body = {"fields": {"project": {"key": project}, "issuetype": {"name": issuetype}, "summary": "It broke",
                       **fields}}
    with http(fake) as client:
        return client.post("issue", json=body)


def created_key(fake: FakeJira, project: str = "OPS", issuetype: str = "Task", /, **fields: Any) -> str:
    answer = create(fake, project, issuetype, **fields)
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


def transitions(fake: FakeJira, key: str, *, fields: bool = False) -> list[dict[str, Any]]:
    params = {"expand": "transitions.fields"} if fields else {}
    with http(fake) as client:
        answer = client.get(f"issue/{key}/transitions", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["transitions"]
    return found


def take(fake: FakeJira, key: str, transition_id: str, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {"transition": {"id": transition_id}}
    if fields:
        body["fields"] = fields
    with http(fake) as client:
        return client.post(f"issue/{key}/transitions", json=body)


def status_of(fake: FakeJira, key: str) -> str:
    snapshot = fake.issue(key)
    assert snapshot is not None
    status: str = snapshot["status"]
    return status


# -- strict workflows --------------------------------------------------------------------------------


def test_a_strict_workflow_offers_only_the_next_step(cloud_jira: FakeJira) -> None:
    cloud_jira.set_workflow("OPS", "strict")
    key = created_key(cloud_jira)

    (start,) = transitions(cloud_jira, key)
    assert (start["name"], start["to"]["name"], start["to"]["statusCategory"]["key"]) == (
        "Start progress", "In Progress", "indeterminate")
    assert start["isGlobal"] is False

    straight_to_done = take(cloud_jira, key, "31")
    assert straight_to_done.status_code == 400
    assert straight_to_done.json() == {"errorMessages": ["Transition id '31' is not valid for this issue."],
                                       "errors": {}}
    assert status_of(cloud_jira, key) == "To Do"

    assert take(cloud_jira, key, start["id"]).status_code == 204
    (finish,) = transitions(cloud_jira, key)
    assert (finish["to"]["name"], finish["to"]["statusCategory"]["key"]) == ("Done", "done")
    assert take(cloud_jira, key, "11").status_code == 400  # no Reopen before Done
    assert take(cloud_jira, key, finish["id"]).status_code == 204
    assert cloud_jira.issue(key)["resolution"] == "Done"  # type: ignore[index]

    (reopen,) = transitions(cloud_jira, key)
    assert (reopen["name"], reopen["to"]["name"]) == ("Reopen", "To Do")
    assert take(cloud_jira, key, reopen["id"]).status_code == 204
    assert cloud_jira.issue(key)["resolution"] is None  # type: ignore[index]

    # Other projects keep the simple workflow: any status to any other.
    other = created_key(cloud_jira, "PAY")
    assert {t["to"]["name"] for t in transitions(cloud_jira, other)} == {"In Progress", "Done", "Won't Do"}


def test_statuses_can_be_named_otherwise_in_a_strict_workflow(cloud_jira: FakeJira) -> None:
    cloud_jira.set_workflow("WEB", "strict", todo="Open", done="Closed")
    jira = jira_library(cloud_jira)
    key = created_key(cloud_jira, "WEB")
    issue = jira.issue(key)
    assert (issue.fields.status.name, issue.fields.status.id, issue.fields.status.statusCategory.key) == (
        "Open", "1", "new")

    assert [t["name"] for t in jira.transitions(issue)] == ["Start Progress"]
    jira.transition_issue(key, "Start Progress")
    assert [(t["name"], t["to"]["name"], t["to"]["id"]) for t in jira.transitions(key)] == [
        ("Close Issue", "Closed", "6")]
    jira.transition_issue(key, "Close Issue")
    assert jira.issue(key).fields.status.statusCategory.key == "done"

    found = jira.enhanced_search_issues('status = "Closed" AND project = WEB', fields=["status"])
    assert [i.key for i in found] == [key]
    names = {(s["name"], s["statusCategory"]["key"]) for s in http(cloud_jira).get("status").json()}
    assert {("Open", "new"), ("Closed", "done")} <= names
    assert cloud_jira.workflow_transitions("WEB") == [
        {"id": "4", "name": "Start Progress", "to": "In Progress", "from": ["Open"]},
        {"id": "2", "name": "Close Issue", "to": "Closed", "from": ["In Progress"]},
        {"id": "3", "name": "Reopen Issue", "to": "Open", "from": ["Closed"]},
    ]


def test_a_person_takes_the_steps_a_strict_workflow_offers(cloud_jira: FakeJira,
                                                           jira_webhooks: WebhookInbox) -> None:
    cloud_jira.set_workflow("OPS", "strict")
    key = cloud_jira.person_create("OPS", "by hand")
    with pytest.raises(ValueError, match="no transition from 'To Do' to 'Done'"):
        cloud_jira.person_transition(key, "Done")
    cloud_jira.person_transition(key, "In Progress")
    cloud_jira.person_transition(key, "Done")
    events = [hook.json() for hook in jira_webhooks.wait(3)]
    moves = [next(i for i in e["changelog"]["items"] if i["field"] == "status") for e in events[1:]]
    assert [(m["fromString"], m["toString"]) for m in moves] == [("To Do", "In Progress"),
                                                                ("In Progress", "Done")]


def test_a_projects_statuses_are_listed_per_issue_type(cloud_jira: FakeJira) -> None:
    cloud_jira.set_workflow("WEB", "strict", todo="Open", done="Closed", rejected="Won't Do")
    with http(cloud_jira) as client:
        answer = client.get("project/WEB/statuses")
    assert answer.status_code == 200, answer.text
    by_type = {t["name"]: [(s["name"], s["statusCategory"]["key"]) for s in t["statuses"]]
               for t in answer.json()}
    assert by_type["Task"] == [("Open", "new"), ("In Progress", "indeterminate"), ("Closed", "done"),
                               ("Won't Do", "done")]
    assert {t["id"] for t in answer.json()} >= {"10002", "10004"}  # Task, Bug


def test_a_second_done_status_and_a_removed_transition(cloud_jira: FakeJira) -> None:
    cloud_jira.set_workflow("OPS", "strict", rejected="Won't Do")
    key = created_key(cloud_jira)
    assert take(cloud_jira, key, "21").status_code == 204
    assert {t["to"]["name"] for t in transitions(cloud_jira, key)} == {"Done", "Won't Do"}
    assert take(cloud_jira, key, "51").status_code == 204
    assert [t["name"] for t in transitions(cloud_jira, key)] == ["Reopen"]  # from either done status
    cloud_jira.remove_transition("OPS", "Reopen")
    assert transitions(cloud_jira, key) == []  # a dead end, until reset()


def test_reset_puts_the_simple_workflow_back(cloud_jira: FakeJira) -> None:
    cloud_jira.set_workflow("OPS", "strict")
    cloud_jira.reset()
    key = created_key(cloud_jira)
    assert take(cloud_jira, key, "31").status_code == 204


# -- transition screens ------------------------------------------------------------------------------


@pytest.fixture
def root_cause(cloud_jira: FakeJira) -> str:
    field_id = cloud_jira.add_custom_field("Root cause", "select", ["Code", "Config", "Infrastructure"])
    cloud_jira.add_transition_field("OPS", "Done", "resolution")
    cloud_jira.add_transition_field("OPS", "Done", field_id)
    return field_id


def test_transition_screens_describe_their_required_fields(cloud_jira: FakeJira, root_cause: str) -> None:
    key = created_key(cloud_jira)
    done = next(t for t in jira_library(cloud_jira).transitions(key, expand="transitions.fields")
                if t["to"]["name"] == "Done")
    assert done["hasScreen"] is True
    resolution, cause = done["fields"]["resolution"], done["fields"][root_cause]
    assert (resolution["required"], resolution["schema"]["type"]) == (True, "resolution")
    assert "Won't Do" in {v["name"] for v in resolution["allowedValues"]}
    assert (cause["required"], cause["name"], cause["key"]) == (True, "Root cause", root_cause)
    assert cause["schema"] == {"type": "option", "custom": SELECT, "customId": int(root_cause.split("_")[1])}
    assert [v["value"] for v in cause["allowedValues"]] == ["Code", "Config", "Infrastructure"]
    # Transitions without a screen show none.
    start = next(t for t in transitions(cloud_jira, key, fields=True) if t["to"]["name"] == "In Progress")
    assert (start["hasScreen"], start["fields"]) == (False, {})


def test_a_transition_missing_a_required_field_is_refused_naming_it(cloud_jira: FakeJira, root_cause: str,
                                                                    jira_webhooks: WebhookInbox) -> None:
    key = created_key(cloud_jira)
    refused = take(cloud_jira, key, "31")
    assert refused.status_code == 400
    assert refused.json() == {"errorMessages": [], "errors": {"resolution": "Resolution is required.",
                                                              root_cause: "Root cause is required."}}
    bad = take(cloud_jira, key, "31", resolution={"name": "Done"}, **{root_cause: {"value": "Cosmic rays"}})
    assert bad.json()["errors"] == {root_cause: "Option value 'Cosmic rays' is not valid"}
    assert status_of(cloud_jira, key) == "To Do"

    with pytest.raises(JIRAError) as raised:
        jira_library(cloud_jira).transition_issue(key, "31", fields={"resolution": {"name": "Done"}})
    assert raised.value.status_code == 400
    assert "Root cause is required." in str(raised.value.text)

    ok = take(cloud_jira, key, "31", resolution={"name": "Duplicate"}, **{root_cause: {"value": "Config"}})
    assert ok.status_code == 204
    snapshot = cloud_jira.issue(key)
    assert snapshot is not None
    assert (snapshot["status"], snapshot["resolution"], snapshot["custom"]) == (
        "Done", "Duplicate", {root_cause: "Config"})
    assert http(cloud_jira).get(f"issue/{key}").json()["fields"][root_cause]["value"] == "Config"
    update = jira_webhooks.wait(2)[1].json()
    assert {i["field"]: i["toString"] for i in update["changelog"]["items"]} == {
        "Root cause": "Config", "resolution": "Duplicate", "status": "Done"}


# -- create-meta and required fields on create ---------------------------------------------------------


@pytest.fixture
def required_fields(cloud_jira: FakeJira) -> dict[str, str]:
    """A Bug in OPS needs one field of every kind."""
    kinds = {
        "select": cloud_jira.add_custom_field("Severity", "select", ["S1", "S2"]),
        "multiselect": cloud_jira.add_custom_field("Platforms", "multiselect", ["iOS", "Android", "Web"]),
        "cascadingselect": cloud_jira.add_custom_field("Area", "cascadingselect",
                                                  {"Payments": ["Cards", "Wallets"], "Search": []}),
        "user": cloud_jira.add_custom_field("Reviewer", "user"),
        "number": cloud_jira.add_custom_field("Story points", "number"),
        "date": cloud_jira.add_custom_field("Due by", "date"),
        "text": cloud_jira.add_custom_field("Customer", "text"),
        "labels": cloud_jira.add_custom_field("Tags", "labels"),
    }
    cloud_jira.add_version("OPS", "2024.1")
    for field_id in [*kinds.values(), "components", "fixVersions"]:
        cloud_jira.add_create_field("OPS", field_id, issue_type="Bug")
    return kinds


def valid_bug_fields(kinds: dict[str, str], reviewer: str) -> dict[str, Any]:
    return {
        kinds["select"]: {"value": "S2"},
        kinds["multiselect"]: [{"value": "iOS"}, {"value": "Web"}],
        kinds["cascadingselect"]: {"value": "Payments", "child": {"value": "Wallets"}},
        kinds["user"]: {"accountId": reviewer},
        kinds["number"]: 3,
        kinds["date"]: "2024-05-01",
        kinds["text"]: "ACME",
        kinds["labels"]: ["vip", "eu"],
        "components": [{"name": "Backend"}],
        "fixVersions": [{"name": "2024.1"}],
    }


def test_create_meta_lists_issue_types_and_their_fields(cloud_jira: FakeJira,
                                                        required_fields: dict[str, str]) -> None:
    with http(cloud_jira) as client:
        types = client.get("issue/createmeta/OPS/issuetypes", params={"maxResults": 2}).json()
        assert (types["startAt"], types["maxResults"], types["total"]) == (0, 2, 4)
        assert [t["name"] for t in types["issueTypes"]] == ["Epic", "Story"]
        rest = client.get("issue/createmeta/OPS/issuetypes", params={"startAt": 2}).json()["issueTypes"]
        bug_id = next(t["id"] for t in rest if t["name"] == "Bug")

        page = client.get(f"issue/createmeta/OPS/issuetypes/{bug_id}").json()
        fields = {f["fieldId"]: f for f in page["fields"]}
        assert page["total"] == len(fields)
        task_fields = client.get("issue/createmeta/OPS/issuetypes/10002").json()["fields"]
        unknown = client.get("issue/createmeta/NOPE/issuetypes")
    assert unknown.status_code == 400

    assert (fields["summary"]["required"], fields["description"]["required"]) == (True, False)
    assert fields["components"]["schema"] == {"type": "array", "items": "component", "system": "components"}
    assert fields["components"]["required"] is True
    assert [v["name"] for v in fields["components"]["allowedValues"]] == ["Backend", "Frontend",
                                                                          "Infrastructure"]
    assert [v["name"] for v in fields["fixVersions"]["allowedValues"]] == ["2024.1"]
    schemas = {kind: fields[field_id]["schema"] for kind, field_id in required_fields.items()}
    assert {kind: (s["type"], s.get("items")) for kind, s in schemas.items()} == {
        "select": ("option", None), "multiselect": ("array", "option"),
        "cascadingselect": ("option-with-child", None), "user": ("user", None), "number": ("number", None),
        "date": ("date", None), "text": ("string", None), "labels": ("array", "string"),
    }
    assert all(s["custom"].startswith("com.atlassian.jira.plugin.system.customfieldtypes:")
               and s["customId"] == int(required_fields[k].split("_")[1]) for k, s in schemas.items())
    area = fields[required_fields["cascadingselect"]]
    assert [(v["value"], [c["value"] for c in v.get("children", [])]) for v in area["allowedValues"]] == [
        ("Payments", ["Cards", "Wallets"]), ("Search", [])]
    assert fields[required_fields["user"]]["autoCompleteUrl"].endswith("/rest/api/2/user/search?query=")
    assert all(fields[f]["required"] for f in required_fields.values())
    # The fields were put on the Bug's screen only.
    assert {f["fieldId"] for f in task_fields}.isdisjoint(required_fields.values())


def test_create_names_every_missing_required_field(cloud_jira: FakeJira,
                                                   required_fields: dict[str, str]) -> None:
    answer = create(cloud_jira, "OPS", "Bug")
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert errors[required_fields["select"]] == "Severity is required."
    assert errors["components"] == "Components is required."
    assert set(errors) == {*required_fields.values(), "components", "fixVersions"}
    assert cloud_jira.issues() == []


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("select", {"value": "S9"}, "Option value 'S9' is not valid"),
        ("select", {"id": "1"}, "Option id '1' is not valid"),
        ("select", "S1", "Could not find valid 'id' or 'value' in the Parent Option object."),
        ("multiselect", {"value": "iOS"}, "data was not an array"),
        ("multiselect", [{"value": "Windows"}], "Option value 'Windows' is not valid"),
        ("cascadingselect", {"value": "Search", "child": {"value": "Cards"}},
         "Option value 'Cards' is not valid"),
        ("cascadingselect", {"value": "Payments", "child": "Cards"},
         "Could not find valid 'id' or 'value' in the Child Option object."),
        ("user", {"accountId": "nobody"}, "Specify a valid value for Reviewer"),
        ("number", "three", "Operation value must be a number"),
        ("date", "01/05/2024", "Error parsing date string: 01/05/2024"),
        ("text", "x" * 256, "It exceeds the allowed limit of 255 characters."),
        ("labels", ["two words"], "contains spaces"),
        ("components", [{"name": "Nope"}], "Component name 'Nope' is not valid"),
        ("fixVersions", [{"name": "1999"}], "Version name '1999' is not valid"),
        ("fixVersions", {"name": "2024.1"}, "data was not an array"),
    ],
)
def test_create_refuses_values_a_field_does_not_take(cloud_jira: FakeJira, required_fields: dict[str, str],
                                                     kind: str, value: Any, message: str) -> None:
    fields = valid_bug_fields(required_fields, cloud_jira.person_account_id)
    field_id = required_fields.get(kind, kind)
    fields[field_id] = value
    answer = create(cloud_jira, "OPS", "Bug", **fields)
    assert answer.status_code == 400
    assert list(answer.json()["errors"]) == [field_id]
    assert message in answer.json()["errors"][field_id]


def test_create_takes_every_kind_of_field_by_id(cloud_jira: FakeJira,
                                                required_fields: dict[str, str]) -> None:
    fields = valid_bug_fields(required_fields, cloud_jira.person_account_id)
    key = created_key(cloud_jira, "OPS", "Bug", **fields)
    snapshot = cloud_jira.issue(key)
    assert snapshot is not None
    assert snapshot["custom"] == {
        required_fields["select"]: "S2", required_fields["multiselect"]: ["iOS", "Web"],
        required_fields["cascadingselect"]: ("Payments", "Wallets"),
        required_fields["user"]: cloud_jira.person_account_id, required_fields["number"]: 3.0,
        required_fields["date"]: "2024-05-01", required_fields["text"]: "ACME",
        required_fields["labels"]: ["vip", "eu"],
    }
    assert (snapshot["components"], snapshot["fix_versions"]) == (["Backend"], ["2024.1"])
    shown = jira_library(cloud_jira).issue(key).raw["fields"]
    assert shown[required_fields["cascadingselect"]]["child"]["value"] == "Wallets"
    assert shown[required_fields["user"]]["accountId"] == cloud_jira.person_account_id
    assert shown["fixVersions"][0]["name"] == "2024.1"
    # A field by its name is not a field Jira knows.
    assert "Severity" in create(cloud_jira, "OPS", "Bug", Severity={"value": "S1"}).json()["errors"]


def test_data_center_create_meta_pages_in_values_as_the_library_reads_them(dc_jira: FakeJira) -> None:
    field_id = dc_jira.add_custom_field("Root cause", "select", ["Code", "Config"])
    dc_jira.add_create_field("OPS", field_id)
    jira = jira_library(dc_jira)
    assert [t.name for t in jira.project_issue_types("OPS")] == ["Epic", "Story", "Task", "Bug"]
    fields = {f.fieldId: f for f in jira.project_issue_fields("OPS", "10004")}
    assert fields[field_id].required is True
    assert fields["components"].name == "Component/s"
    with http(dc_jira) as client:
        page = client.get("issue/createmeta/OPS/issuetypes/10004", params={"maxResults": 3}).json()
    assert (len(page["values"]), page["total"], page["isLast"]) == (3, len(fields), False)
    refused = create(dc_jira, **{field_id: None})
    assert refused.json()["errors"] == {field_id: "Root cause is required."}


# -- assignability -----------------------------------------------------------------------------------


@pytest.fixture
def team(cloud_jira: FakeJira) -> FakeJira:
    cloud_jira.add_user("acc-ann", "Ann Active", "ann@example.com")
    cloud_jira.add_user("acc-olly", "Olly Outsider", "olly@example.com")
    cloud_jira.add_user("acc-quinn", "Quinn Quit", "quinn@example.com")
    return cloud_jira


def test_assignable_search_lists_only_who_the_project_takes(team: FakeJira) -> None:
    team.make_unassignable("acc-olly", "OPS")
    team.deactivate_user("acc-quinn")

    def assignable(**params: str) -> list[str]:
        with http(team) as client:
            answer = client.get("user/assignable/search", params=params)
        assert answer.status_code == 200, answer.text
        return [u["accountId"] for u in answer.json()]

    assert assignable(project="OPS", query="a") == ["acc-ann"]
    assert assignable(project="OPS", query="olly") == []
    assert assignable(project="PAY", query="olly") == ["acc-olly"]
    assert assignable(project="PAY", query="quinn") == []
    assert assignable(project="OPS", accountId="acc-ann") == ["acc-ann"]
    with http(team) as client:
        assert client.get("user/assignable/search", params={"query": "ann"}).status_code == 400
        assert client.get("user/assignable/search", params={"project": "OPS"}).status_code == 400
        users = client.get("user/search", params={"query": "quinn"}).json()
    assert [(u["accountId"], u["active"]) for u in users] == [("acc-quinn", False)]
    found = jira_library(team).search_assignable_users_for_issues(query="ann", project="OPS")
    assert [u.accountId for u in found] == ["acc-ann"]


def test_creating_or_assigning_someone_jira_will_not_take_is_refused(team: FakeJira) -> None:
    team.make_unassignable("acc-olly", "OPS")
    team.deactivate_user("acc-quinn")
    for account in ("acc-olly", "acc-quinn"):
        refused = create(team, assignee={"accountId": account})
        assert refused.status_code == 400
        assert refused.json()["errors"] == {"assignee": f"User '{account}' cannot be assigned issues."}
    key = created_key(team, assignee={"accountId": "acc-ann"})
    with http(team) as client:
        put = client.put(f"issue/{key}/assignee", json={"accountId": "acc-olly"})
    assert put.json() == {"errorMessages": [],
                          "errors": {"assignee": "User 'acc-olly' cannot be assigned issues."}}
    assert team.issue(key)["assignee"] == "acc-ann"  # type: ignore[index]
    assert created_key(team, "PAY", assignee={"accountId": "acc-olly"})
    team.reset()
    assert created_key(team, assignee={"accountId": "acc-quinn"})  # reset reactivates


def test_a_ticket_hidden_from_the_bot_answers_as_a_deleted_one_until_reset(cloud_jira: FakeJira) -> None:
    key = created_key(cloud_jira, labels=["secret"])
    other = created_key(cloud_jira, labels=["secret"])
    ticket_id = cloud_jira.issue(key)["id"]  # type: ignore[index]
    cloud_jira.hide_from_bot(key)
    with http(cloud_jira) as client:
        for answer in (client.get(f"issue/{key}"), client.get(f"issue/{ticket_id}"),
                       client.put(f"issue/{key}", json={"fields": {"summary": "x"}}),
                       client.post(f"issue/{key}/comment", json={"body": "x"}),
                       client.get(f"issue/{key}/transitions"),
                       client.post(f"issue/{key}/remotelink",
                                   json={"globalId": "g", "object": {"url": "u", "title": "t"}})):
            assert answer.status_code == 404, answer.text
            assert answer.json()["errorMessages"] == ["Issue does not exist or you do not have permission to "
                                                      "see it."]
        by_label = client.get("search/jql", params={"jql": "labels = secret", "fields": "key"}).json()
        by_id = client.get("search/jql", params={"jql": f"id in ({ticket_id})"})
    assert [i["key"] for i in by_label["issues"]] == [other]
    assert by_id.status_code == 400  # as for an id that does not exist: JQL leaks nothing
    assert f"An issue with key '{ticket_id}' does not exist for field 'id'." in by_id.json()["errorMessages"]
    cloud_jira.person_transition(key, "Done")  # people still work on it, and no deletion is sent
    assert status_of(cloud_jira, key) == "Done"
    cloud_jira.webhooks.drain(5)
    assert cloud_jira.webhooks.sent
    assert all(b'"jira:issue_deleted"' not in body for _, body, _ in cloud_jira.webhooks.sent)
    cloud_jira.show_to_bot(key)
    with http(cloud_jira) as client:
        assert client.get(f"issue/{key}").status_code == 200
    cloud_jira.hide_from_bot(key)
    cloud_jira.reset()  # the issues go, and the switch with them
    assert cloud_jira._state.hidden == set()


def test_data_center_assignable_search_takes_a_username(dc_jira: FakeJira) -> None:
    dc_jira.add_user("ann", "Ann Active", "ann@example.com")
    dc_jira.add_user("olly", "Olly Outsider", "olly@example.com")
    dc_jira.make_unassignable("olly", "OPS")
    with http(dc_jira) as client:
        users = client.get("user/assignable/search", params={"project": "OPS", "username": "an"}).json()
        everyone = client.get("user/assignable/search", params={"project": "OPS"}).json()
    assert [(u["name"], u["key"]) for u in users] == [("ann", users[0]["key"])]
    assert all("accountId" not in u for u in users)
    assert "olly" not in {u["name"] for u in everyone}
    assert create(dc_jira, assignee={"name": "olly"}).json()["errors"] == {
        "assignee": "User 'olly' cannot be assigned issues."}


# -- hidden e-mail addresses ---------------------------------------------------------------------------


def test_hidden_emails_are_absent_everywhere_but_an_exact_search_still_finds(
        team: FakeJira, jira_webhooks: WebhookInbox) -> None:
    team.hide_emails = True
    with http(team) as client:
        searched = client.get("user/search", params={"query": "ann@example.com"}).json()
        by_prefix = client.get("user/search", params={"query": "ann@"}).json()
        assignable = client.get("user/assignable/search", params={"project": "OPS", "query": "ann"}).json()
        myself = client.get("myself").json()
        key = created_key(team, assignee={"accountId": "acc-ann"})
        shown = client.get(f"issue/{key}").json()["fields"]
    assert [u["accountId"] for u in searched] == ["acc-ann"]
    assert by_prefix == []
    hook = jira_webhooks.wait(1)[0].json()
    users = [*searched, *assignable, shown["assignee"], shown["reporter"], hook["user"]]
    assert all("emailAddress" not in user for user in users)
    assert myself["emailAddress"] == EMAIL
    team.reset()
    shown_again = http(team).get("user/search", params={"query": "ann"}).json()
    assert shown_again[0]["emailAddress"] == "ann@example.com"


# -- Jira's limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"summary": "😀" * 128}, "summary", "Summary must be less than 255 characters."),  # 256 UTF-16 units
        ({"description": "d" * 32768}, "description",
         "The entered text is too long. It exceeds the allowed limit of 32,767 characters."),
        ({"labels": ["two words"]}, "labels", "The label 'two words' contains spaces which is invalid."),
    ],
)
def test_jira_limits_on_create(cloud_jira: FakeJira, fields: dict[str, Any], field: str,
                               message: str) -> None:
    answer = create(cloud_jira, **fields)
    assert (answer.status_code, answer.json()["errors"]) == (400, {field: message})


def test_jira_limits_on_edits_and_comments(cloud_jira: FakeJira) -> None:
    key = created_key(cloud_jira, description="d" * 32767)
    with http(cloud_jira) as client:
        edit = client.put(f"issue/{key}", json={"fields": {"description": "d" * 32768}})
        comment = client.post(f"issue/{key}/comment", json={"body": "c" * 32768})
    assert edit.json()["errors"] == {"description": "The entered text is too long. It exceeds the allowed "
                                                    "limit of 32,767 characters."}
    assert "32,767" in comment.json()["errors"]["comment"]
    assert cloud_jira.comments(key) == []


def test_per_issue_write_limit_holds_back_that_issue_only(cloud_jira: FakeJira) -> None:
    assert cloud_jira.issue_write_limits is None  # off unless a test switches it on
    busy, calm = created_key(cloud_jira), created_key(cloud_jira)
    cloud_jira.issue_write_limits = ((3, 60.0), *CLOUD_ISSUE_WRITE_LIMITS)
    with http(cloud_jira) as client:
        for n in range(3):
            assert client.post(f"issue/{busy}/comment", json={"body": f"note {n}"}).status_code == 201
        limited = client.put(f"issue/{busy}", json={"fields": {"summary": "Renamed"}})
        other = client.put(f"issue/{calm}", json={"fields": {"summary": "Renamed"}})
        read = client.get(f"issue/{busy}")
    assert limited.status_code == 429
    assert limited.headers["RateLimit-Reason"] == "jira-per-issue-on-write"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["errorMessages"] == ["Rate limit exceeded."]
    assert cloud_jira.issue(busy)["summary"] == "It broke"  # type: ignore[index]
    assert (other.status_code, read.status_code) == (204, 200)
    cloud_jira.reset()
    assert cloud_jira.issue_write_limits is None


# -- Data Center 9 ---------------------------------------------------------------------------------------


def test_data_center_9_speaks_like_data_center(dc_jira: FakeJira) -> None:
    with http(dc_jira) as client:
        info = client.get("serverInfo").json()
        basic = httpx.get(f"{dc_jira.url}/rest/api/2/myself", auth=(EMAIL, TOKEN), timeout=5)
        for _ in range(3):
            created_key(dc_jira, labels=["dc"])
        page = client.get("search", params={"jql": "labels = dc", "startAt": 1, "maxResults": 1}).json()
        enhanced = client.get("search/jql", params={"jql": "labels = dc"})
        myself = client.get("myself").json()
    assert (info["deploymentType"], info["versionNumbers"][0]) == ("Server", 9)
    assert basic.status_code == 401
    assert (page["startAt"], page["maxResults"], page["total"], len(page["issues"])) == (1, 1, 3, 1)
    assert enhanced.status_code == 404
    assert {"name", "key", "emailAddress"} <= set(myself) and "accountId" not in myself
    assert jira_library(dc_jira).deploymentType == "Server"


@pytest.mark.parametrize(("version", "reachable"), [("9.12.15", 120), ("10.3.1", 100)])
def test_data_center_user_search_reaches_at_most_its_cap(version: str, reachable: int) -> None:
    fake = start_fake_jira(deployment="DataCenter", pat=PAT, version=version)
    try:
        for n in range(120):
            fake.add_user(f"dev{n:03d}", f"Developer {n}", f"dev{n}@example.com")
        with http(fake) as client:
            everyone = [u["name"] for start in range(0, 200, 50) for u in client.get(
                "user/search", params={"username": "dev", "startAt": start, "maxResults": 50}).json()]
            tail = client.get("user/search",
                              params={"username": "dev", "startAt": 98, "maxResults": 20}).json()
    finally:
        fake.stop()
    assert len(everyone) == reachable
    assert len(tail) == (20 if reachable > 100 else 2)  # JRASERVER-78660's example


def test_data_center_webhooks_name_users_and_carry_the_url_token_or_a_signature() -> None:
    received: list[tuple[str, dict[str, str], bytes]] = []

    async def hook(request: Request) -> Response:
        received.append((request.url.query, dict(request.headers), await request.body()))
        return Response(status_code=204)

    target = FakeServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
    unsigned = start_fake_jira(deployment="DataCenter", pat=PAT, webhook_url=f"{target.url}/hook?token=t0k")
    signed = start_fake_jira(deployment="DataCenter", pat=PAT, webhook_url=f"{target.url}/hook",
                             webhook_secret=SECRET, version="10.3.1")
    try:
        unsigned.person_create("OPS", "from DC")
        assert unsigned.webhooks.drain(5)
        signed.person_create("OPS", "from DC, signed")
        assert signed.webhooks.drain(5)
    finally:
        unsigned.stop()
        signed.stop()
        target.stop()
    (query, headers, body), (signed_query, signed_headers, signed_body) = received
    assert (query, "x-hub-signature" in headers) == ("token=t0k", False)
    assert signed_query == "" and verify_signature(SECRET, signed_body, signed_headers["x-hub-signature"])
    assert "x-atlassian-webhook-identifier" not in headers | signed_headers  # Cloud's header only
    with pytest.raises(ValueError, match="cannot sign webhooks"):  # a secret came with Data Center 10
        start_fake_jira(deployment="DataCenter", pat=PAT, webhook_secret=SECRET, version="9.12.15")
    user = httpx.Response(200, content=body).json()["user"]
    assert (user["name"], user["key"].startswith("JIRAUSER"), user["emailAddress"]) == (
        "pat.person", True, "pat.person@example.com")
    assert "accountId" not in user


# -- team-managed projects -------------------------------------------------------------------------------


def test_team_managed_projects_have_no_components_and_statuses_of_their_own(cloud_jira: FakeJira) -> None:
    own = (("Backlog", "new"), ("Doing", "indeterminate"), ("Done", "done"))
    cloud_jira.add_project("TEAM", team_managed=True, statuses=own)
    with http(cloud_jira) as client:
        project = client.get("project/TEAM").json()
        refused = create(cloud_jira, "TEAM", components=[{"name": "Backend"}])
        key = created_key(cloud_jira, "TEAM")
        ops_key = created_key(cloud_jira, "OPS")
        meta = client.get("issue/createmeta/TEAM/issuetypes/10002").json()["fields"]
        statuses = client.get("status").json()
    assert (project["simplified"], project["style"], project["components"]) == (True, "next-gen", [])
    assert refused.json()["errors"] == {
        "components": "Field 'components' cannot be set. It is not on the appropriate screen, or unknown."}
    assert "components" not in {f["fieldId"] for f in meta}

    team_done = next(s for s in statuses if s["name"] == "Done" and "scope" in s)
    assert team_done["scope"] == {"type": "PROJECT", "project": {"id": project["id"]}}
    assert team_done["id"] != next(s["id"] for s in statuses if s["name"] == "Done" and "scope" not in s)
    assert status_of(cloud_jira, key) == "Backlog"
    done = next(t for t in transitions(cloud_jira, key) if t["to"]["name"] == "Done")
    assert (done["isGlobal"], done["to"]["id"]) == (True, team_done["id"])
    assert take(cloud_jira, key, done["id"]).status_code == 204
    assert take(cloud_jira, ops_key, "31").status_code == 204
    jql = http(cloud_jira).get("search/jql", params={"jql": "status = Done", "fields": "status"}).json()
    assert {i["key"] for i in jql["issues"]} == {key, ops_key}


# -- bulk create -------------------------------------------------------------------------------------------


def bulk_item(summary: str, **fields: Any) -> dict[str, Any]:
    return {"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": summary,
                       **fields}}


def test_bulk_create_makes_each_valid_issue_and_reports_each_refused_one(cloud_jira: FakeJira,
                                                                        jira_webhooks: WebhookInbox) -> None:
    field_id = cloud_jira.add_custom_field("Severity", "select", ["S1", "S2"])
    cloud_jira.add_create_field("OPS", field_id)
    items = [bulk_item("first", **{field_id: {"value": "S1"}}), bulk_item("second"),
             bulk_item("third", **{field_id: {"value": "S2"}}, labels=["no spaces"])]
    with http(cloud_jira) as client:
        answer = client.post("issue/bulk", json={"issueUpdates": items})
    assert answer.status_code == 201
    body = answer.json()
    assert [set(i) for i in body["issues"]] == [{"id", "key", "self"}]
    assert body["errors"] == [
        {"status": 400, "failedElementNumber": 1,
         "elementErrors": {"errorMessages": [], "status": 400,
                           "errors": {field_id: "Severity is required."}}},
        {"status": 400, "failedElementNumber": 2,
         "elementErrors": {"errorMessages": [], "status": 400,
                           "errors": {"labels": "The label 'no spaces' contains spaces which is invalid."}}},
    ]
    assert [i["summary"] for i in cloud_jira.issues()] == ["first"]
    (hook,) = jira_webhooks.wait(1)
    assert (hook.json()["webhookEvent"], hook.json()["issue"]["key"]) == ("jira:issue_created",
                                                                         body["issues"][0]["key"])


def test_bulk_create_through_the_library_and_its_limits(cloud_jira: FakeJira,
                                                        jira_webhooks: WebhookInbox) -> None:
    jira = jira_library(cloud_jira)
    results = jira.create_issues([bulk_item("a")["fields"], bulk_item("")["fields"],
                                  bulk_item("c")["fields"]], prefetch=False)
    assert [r["status"] for r in results] == ["Success", "Error", "Success"]
    assert results[1]["error"] == {"summary": "You must specify a summary of the issue."}
    assert len(jira_webhooks.wait(2)) == 2
    with http(cloud_jira) as client:
        none_valid = client.post("issue/bulk", json={"issueUpdates": [bulk_item("")]})
        too_many = client.post("issue/bulk", json={"issueUpdates": [bulk_item(f"n{n}") for n in range(51)]})
        fifty = client.post("issue/bulk", json={"issueUpdates": [bulk_item(f"n{n}") for n in range(50)]})
    assert (none_valid.status_code, none_valid.json()["issues"]) == (400, [])
    assert none_valid.json()["errors"][0]["failedElementNumber"] == 0
    assert too_many.status_code == 400
    assert "50" in too_many.json()["errorMessages"][0]
    assert (fifty.status_code, len(fifty.json()["issues"])) == (201, 50)
    assert len(cloud_jira.issues()) == 52
