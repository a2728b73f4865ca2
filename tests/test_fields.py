"""Fields on create: the policy's `fields` reach Jira in the shapes each field's schema asks for, a
create Jira refuses for its fields becomes a dead letter in Jira's words, and a team-managed project
gets its tickets without components. Through the real stack (fake Sentry → web → worker → fake
Jira, whose create checks every shape), with the teams and routes of tests/fixtures/policies/service.toml.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.core.fields import Person, convert, missing_required
from syncer.core.routing import field_settings
from syncer.errors import ConfigError
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.jira.client import JiraClient
from syncer.jira.createmeta import CreateMeta, FieldMeta
from syncer.metrics import Metric
from syncer.policy import parse_policy
from syncer.store.schema import Delivery, DeliveryState, LinkState
from tests.harness import (
    FAKE_JIRA_EMAIL,
    FAKE_JIRA_PAT,
    FAKE_JIRA_TOKEN,
    audit_of,
    letters,
    link_of,
    wait_for,
)

# The custom fields service.toml's teams name (by name, and one by id: customfield_19005).
CUSTOM = {
    "root_cause": ("customfield_19001", "Root cause", "select", ["Unknown", "Code", "Config"]),
    "platforms": ("customfield_19002", "Platforms", "multiselect", ["Web", "API", "Mobile"]),
    "hardware": ("customfield_19003", "Hardware", "cascadingselect",
                 {"Disk": ["SSD", "HDD"], "Network": ["Wi-Fi", "Ethernet"]}),
    "lead": ("customfield_19004", "Incident lead", "user", []),
    "points": ("customfield_19005", "Story points", "number", []),
    "due": ("customfield_19006", "Due by", "date", []),
    "tags": ("customfield_19007", "Tags", "labels", []),
    "notes": ("customfield_19008", "Notes", "text", []),
    "severity": ("customfield_19009", "Severity", "select", ["Sev 1", "Sev 2"]),
}
ID = {key: spec[0] for key, spec in CUSTOM.items()}
CREATE = r"^/rest/api/2/issue/?$"
FIELDS_META = r"^/rest/api/2/issue/createmeta/FRM/issuetypes/\d+$"


@pytest.fixture(scope="session")
def form_site(fake_jira: FakeJira) -> None:
    """Projects, versions, people and custom fields outlive the fake's reset(); screens do not."""
    fake_jira.add_project("FRM", ["Intake"], "Forms")
    fake_jira.add_project("FRQ", [], "Strict forms")
    fake_jira.add_project("SQD", name="Squad", team_managed=True)
    fake_jira.add_version("FRM", "1.0")
    fake_jira.add_user("acc-lead", "Lee Lead", "lead@example.com")
    for field_id, name, kind, options in CUSTOM.values():
        fake_jira.add_custom_field(name, kind, options, field_id=field_id)


@pytest.fixture
def screens(stack: dict[str, Any], form_site: None, fake_jira: FakeJira) -> FakeJira:
    """FRM's create screen, the same for every test (the worker caches screens): "Root cause"
    required, the other custom fields optional."""
    for key, field_id in ID.items():
        if key != "severity":
            fake_jira.add_create_field("FRM", field_id, required=key == "root_cause")
    return fake_jira


def ticket_of(fake_jira: FakeJira, engine: Engine, sentry_id: str) -> dict[str, Any]:
    wait_for(lambda: (link := link_of(engine, sentry_id)) is not None and link.state == LinkState.ACTIVE
             and link.sentry_link_done, 30, what=f"a linked ticket for {sentry_id}")
    found = [t for t in fake_jira.issues() if f"sentry-{sentry_id}" in t["labels"]]
    assert len(found) == 1, found
    return found[0]


def test_the_teams_fields_fill_a_required_select_and_reach_jira_in_their_shapes(
    screens: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="forms-web", title="KeyError: 'email'")
    ticket = ticket_of(screens, engine, issue["id"])
    custom = ticket["custom"]
    assert custom[ID["root_cause"]] == "Unknown"  # required: without it Jira refuses the create
    assert custom[ID["platforms"]] == ["Web", "API"]  # "web" written, Jira's spelling sent
    assert custom[ID["hardware"]] == ("Disk", "SSD")  # "Disk / SSD"
    assert custom[ID["lead"]] == "acc-lead"  # an e-mail, found as an account
    assert custom[ID["points"]] == 3
    assert custom[ID["due"]] == "2026-03-01"  # a TOML date
    assert custom[ID["tags"]] == ["sentry-fed", "triage"]
    assert custom[ID["notes"]] == "Filed by syncer"
    assert ticket["fix_versions"] == ["1.0"]
    assert ticket["components"] == ["Intake"]
    assert set(ticket["labels"]) == {"sentry", "forms", "from-fields", f"sentry-{issue['id']}"}


def test_a_routes_fields_win_over_the_teams_and_the_screen_is_read_once(
    screens: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    screens.calls.reset()
    issues = [fake_sentry.file_issue(project="forms-code-api", title=f"TypeError {n}") for n in range(3)]
    for issue in issues:
        ticket = ticket_of(screens, engine, issue["id"])
        assert ticket["custom"][ID["root_cause"]] == "Code"  # the route's, not the team's "unknown"
        assert ticket["custom"][ID["hardware"]] == ("Network", "Wi-Fi")  # { value, child }
        assert ticket["custom"][ID["platforms"]] == ["Web", "API"]  # the team's, where the route is silent
    # Create-meta is read per project and issue type, not per ticket (the first test may have read it).
    assert screens.calls.count("GET", FIELDS_META) <= 1
    assert screens.calls.count("POST", CREATE) == 3


def test_a_required_field_left_unset_is_a_dead_letter_in_jiras_words(
    screens: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    screens.add_create_field("FRQ", ID["severity"], required=True)
    screens.add_create_field("FRQ", ID["root_cause"], required=True)
    issue = fake_sentry.file_issue(project="strict-api", title="ValueError: bad form")
    letter = wait_for(lambda: next(iter(letters(engine)), None), 30, what="a dead letter")
    error = letter.error
    assert error.startswith("FieldsRefused: Jira refused (400) the ticket in FRQ/Bug for its fields")
    # Jira's words per field, the field's name and allowed values, and where to set it.
    root_cause = f'"Root cause" ({ID["root_cause"]}): Root cause is required.'
    assert f'{root_cause} (allowed: "Unknown", "Code", "Config")' in error
    assert f'"Severity" ({ID["severity"]}): Severity is required. (allowed: "Sev 1", "Sev 2")' in error
    assert 'routes[8] "strict-forms" or [teams.strict] or [defaults]' in error
    # The configured value syncer could not send, and why.
    assert '"Sev 9" is not one of its values' in error
    # Never a retry loop: one attempt, one create.
    with Session(engine) as session:
        delivery = session.exec(select(Delivery).where(Delivery.id == letter.delivery_id)).one()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DEAD, 1)
    assert screens.calls.count("POST", CREATE) == 1
    assert not [t for t in screens.issues() if f"sentry-{issue['id']}" in t["labels"]]


def scraped(stack: dict[str, Any], name: str) -> dict[str, float]:
    """The web app's `/metrics`: the samples of `name`, by their `problem` label."""
    body = httpx.get(f"{stack['web'].url}/metrics", timeout=10).text
    return {line.split('problem="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in body.splitlines() if line.startswith(name + "{")}


def test_a_dead_letter_names_the_fields_even_for_a_team_that_sets_none(
    screens: FakeJira, fake_sentry: FakeSentry, engine: Engine
) -> None:
    screens.add_create_field("OPS", ID["root_cause"], required=True)
    fake_sentry.file_issue(project="ghost-api", title="ValueError: nobody's")  # team ghosts: no fields
    letter = wait_for(lambda: next(iter(letters(engine)), None), 30, what="a dead letter")
    assert f'"Root cause" ({ID["root_cause"]}): Root cause is required. (allowed: "Unknown", "Code", ' \
        in letter.error
    assert 'routes[5] "unowned" or [teams.ghosts] or [defaults]' in letter.error


def test_a_team_managed_project_gets_its_ticket_without_components(
    screens: FakeJira, fake_sentry: FakeSentry, engine: Engine, stack: dict[str, Any]
) -> None:
    issue = fake_sentry.file_issue(project="squad-app", title="RuntimeError: squad")
    ticket = ticket_of(screens, engine, issue["id"])
    assert (ticket["project"], ticket["components"]) == ("SQD", [])
    created = [a for a in audit_of(engine, issue["id"]) if a.action == "created"]
    assert len(created) == 1
    assert 'components ["Backend"] left out: the create screen of SQD/Bug has no Components field' \
        in created[0].detail
    assert screens.calls.count("POST", CREATE) == 1  # not refused first and tried again
    assert scraped(stack, Metric.TICKET_FIELDS_LEFT_OUT) == {"no_components": 1.0}


# --- the client's create-meta, on Cloud and Data Center ----------------------------------------------


def test_create_meta_is_paged_and_cached_on_cloud(cloud_jira: FakeJira) -> None:
    for n in range(60):  # more than one page of fields (50)
        cloud_jira.add_create_field("OPS", cloud_jira.add_custom_field(f"Extra {n}", "text"), required=False)
    client = JiraClient(cloud_jira.url, email=FAKE_JIRA_EMAIL, token=FAKE_JIRA_TOKEN, timeout=5)
    meta = client.create_meta("OPS", "bug")
    assert (meta.issue_type, meta.issue_type_id) == ("Bug", "10004")
    assert meta.find("extra 59") is not None and meta.find("summary") is not None
    assert meta.has("components")
    client.create_meta("OPS", "Bug")
    assert cloud_jira.calls.count("GET", r"/createmeta/OPS/issuetypes/10004$") == 2  # two pages, once
    client.forget_create_meta("OPS", "Bug")
    client.create_meta("OPS", "Bug")
    assert cloud_jira.calls.count("GET", r"/createmeta/OPS/issuetypes/10004$") == 4


def test_create_meta_on_data_center_and_a_user_field_by_name(dc_jira: FakeJira) -> None:
    lead = dc_jira.add_custom_field("Incident lead", "user")
    dc_jira.add_create_field("OPS", lead, required=True)
    client = JiraClient(dc_jira.url, pat=FAKE_JIRA_PAT, timeout=5)
    meta = client.create_meta("OPS", "Bug")
    assert meta.find("Component/s") is not None  # Data Center's name for components
    converted = convert(field_settings(parse_policy(
        '[defaults]\njira_project = "OPS"\nfields = { "Incident lead" = "pat.person" }\n', "t"), None, None),
        meta, person=Person, user_ref=client.user_ref)
    assert converted.values == {lead: {"name": "pat.person"}} and not converted.problems


# --- precedence and shapes, without the sites ------------------------------------------------------


def _meta(*fields: FieldMeta) -> CreateMeta:
    return CreateMeta("OPS", "Bug", "10004", fields)


def _field(field_id: str, name: str, kind: str, *, items: str | None = None, required: bool = False,
           allowed: list[dict[str, Any]] | None = None) -> FieldMeta:
    return FieldMeta(field_id, name, required, False, kind, items, None,
                     tuple(allowed) if allowed is not None else None)


def test_route_over_team_over_defaults_field_by_field_even_by_name_and_id() -> None:
    policy = parse_policy("""
[defaults]
jira_project = "OPS"
fields = { "Root cause" = "Config", Notes = "from defaults", "Story points" = 1 }
[teams.a]
fields = { customfield_1 = "Code", Notes = "from team" }
[[routes]]
when = {}
team = "a"
fields = { notes = "from route" }
""", "t")
    meta = _meta(
        _field("customfield_1", "Root cause", "option", required=True,
               allowed=[{"value": "Code"}, {"value": "Config"}]),
        _field("customfield_2", "Notes", "string"),
        _field("customfield_3", "Story points", "number"),
        _field("customfield_4", "Team", "option", required=True, allowed=[{"value": "Core"}]),
    )
    converted = convert(field_settings(policy, "a", policy.routes[0]), meta, person=Person, user_ref=dict)
    assert converted.values == {"customfield_1": {"value": "Code"}, "customfield_2": "from route",
                                "customfield_3": 1}
    assert converted.set_by["customfield_1"].source == "teams.a"
    assert converted.set_by["customfield_2"].source == "routes[0]"
    assert [f.id for f in missing_required(meta, converted.values)] == ["customfield_4"]


def test_a_later_tables_good_value_clears_an_earlier_ones_problem() -> None:
    meta = _meta(_field("customfield_1", "Root cause", "option", allowed=[{"value": "Code"}]))
    policy = parse_policy('[defaults]\njira_project = "OPS"\nfields = { "Root cause" = "Nope" }\n'
                          '[teams.a]\nfields = { "Root cause" = "code" }\n', "t")
    assert convert(field_settings(policy, None, None), meta, person=Person, user_ref=dict).problems
    converted = convert(field_settings(policy, "a", None), meta, person=Person, user_ref=dict)
    assert (converted.values, converted.problems) == ({"customfield_1": {"value": "Code"}}, [])


def test_values_that_cannot_fit_are_problems_naming_the_table() -> None:
    meta = _meta(
        _field("customfield_1", "Points", "number"),
        _field("customfield_2", "Due", "date"),
        _field("customfield_3", "Tags", "array", items="string"),
        _field("labels", "Labels", "array", items="string"),
        _field("customfield_5", "Kind", "option-with-child",
               allowed=[{"value": "Disk", "children": [{"value": "SSD"}]}]),
    )
    policy = parse_policy('[defaults]\njira_project = "OPS"\n[defaults.fields]\nPoints = "many"\n'
                          'Due = "tomorrow"\nLabels = ["two words"]\n'
                          'Kind = { value = "Disk", child = "Tape" }\nNothing = "x"\n', "t")
    problems = {p.key: str(p) for p in convert(field_settings(policy, None, None), meta, person=Person,
                                                user_ref=dict).problems}
    assert problems["Points"] == 'defaults.fields: "Points" (customfield_1): "many" is not a number'
    assert "write it as 2026-03-01" in problems["Due"]
    assert "Jira refuses spaces in labels" in problems["Labels"]
    assert '"Tape" is not a value under "Disk" (allowed: "SSD")' in problems["Kind"]
    assert "is not a field of the create screen of OPS/Bug" in problems["Nothing"]


@pytest.mark.parametrize(("fields", "message"), [
    ('{ summary = "x" }', '"summary" cannot be set here: syncer writes the summary'),
    ('{ Assignee = "a@example.com" }', "use the assignee key"),
    ("{ Flag = true }", "true/false is no Jira field's value"),
    ("{ Platforms = [] }", "an empty array sets nothing"),
    ('{ Kind = { value = "A", kid = "B" } }', "a table is a cascading select"),
])
def test_fields_the_policy_cannot_set_are_refused_at_load(fields: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"defaults\.fields") as refused:
        parse_policy(f'[defaults]\njira_project = "OPS"\nfields = {fields}\n', "t.toml")
    assert message in str(refused.value)


@pytest.mark.parametrize(("meta_field", "value", "sent"), [
    (_field("f", "When", "datetime"), "2026-03-01T09:30:00Z", "2026-03-01T09:30:00.000+0000"),
    (_field("f", "When", "datetime"), "2026-03-01T09:30:00", "2026-03-01T09:30:00.000+0000"),
    (_field("f", "Watchers", "array", items="user"), ("a@example.com", "acc-2"),
     [{"accountId": "acc-a@example.com"}, {"accountId": "acc-2"}]),
    (_field("f", "Affects", "array", items="version", allowed=[{"name": "1.0"}, {"name": "2.0"}]), "2.0",
     [{"name": "2.0"}]),
    (_field("f", "Team group", "group"), "jira-devs", {"name": "jira-devs"}),
    (_field("f", "Estimate", "number"), "2.5", 2.5),
    (_field("f", "Level", "option-with-child", allowed=[{"value": "A / B"}]), "A / B", {"value": "A / B"}),
])
def test_more_shapes(meta_field: FieldMeta, value: Any, sent: Any) -> None:
    from syncer.core.fields import shape

    def person(who: str) -> Person:
        return Person(f"acc-{who}" if "@" in who else who)

    assert shape(meta_field, value, person=person, user_ref=lambda a: {"accountId": a}) == sent
