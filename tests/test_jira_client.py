"""JiraClient against the fake Jira over real HTTP: results, the error taxonomy, and Jira's traps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from syncer.errors import AmbiguousError, ConfigError, PermanentError, TransientError
from syncer.fakes.base import Fault, WebhookInbox
from syncer.fakes.jira import FakeJira, start_fake_jira
from syncer.jira.client import JiraClient, NoWay, jql_quote
from syncer.jira.screens import ScreenRefused
from syncer.jira.webhooks import parse_event, verify_signature
from syncer.jira.workflow import Goal

EMAIL, TOKEN, PAT, SECRET = "bot@example.com", "s3cr3t-api-token", "s3cr3t-pat", "hook-secret"
FIELDS = {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "ZeroDivisionError"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookInbox]:
    inbox = WebhookInbox().start()
    yield inbox
    inbox.stop()


@pytest.fixture(scope="module")
def cloud_fake(receiver: WebhookInbox) -> Iterator[FakeJira]:
    fake = start_fake_jira(email=EMAIL, token=TOKEN, webhook_url=receiver.url, webhook_secret=SECRET)
    yield fake
    fake.stop()


@pytest.fixture
def fake(cloud_fake: FakeJira, receiver: WebhookInbox) -> FakeJira:
    cloud_fake.reset()
    cloud_fake.require_resolution = False
    receiver.clear()
    return cloud_fake


@pytest.fixture(scope="module")
def client(cloud_fake: FakeJira) -> JiraClient:
    return JiraClient(cloud_fake.url, email=EMAIL, token=TOKEN, timeout=(2.0, 2.0))


@pytest.fixture(scope="module")
def server_fake() -> Iterator[FakeJira]:
    fake = start_fake_jira(deployment="Server", pat=PAT)
    yield fake
    fake.stop()


@pytest.fixture
def server(server_fake: FakeJira) -> FakeJira:
    server_fake.reset()
    return server_fake


@pytest.fixture(scope="module")
def server_client(server_fake: FakeJira) -> JiraClient:
    return JiraClient(server_fake.url, pat=PAT)


def no_secrets(error: BaseException) -> None:
    text = f"{error!s} {error!r} {error.__cause__!s}"
    for secret in (TOKEN, PAT, "Authorization", "Basic "):
        assert secret not in text


# -- basics --------------------------------------------------------------------------------------------


def test_credentials_are_required() -> None:
    with pytest.raises(ConfigError):
        JiraClient("http://jira.invalid", email=EMAIL)


def test_who_and_where(client: JiraClient, server_client: JiraClient) -> None:
    assert (client.deployment, client.bot_account_id()) == ("Cloud", "bot-account-id")
    assert (server_client.deployment, server_client.bot_account_id()) == ("Server", "syncer-bot")


def test_refused_credentials_name_what_to_set_for_the_site(fake: FakeJira, server: FakeJira) -> None:
    """A PAT is a Data Center credential and Cloud's API token is not: each 401 says what to set."""
    basic_on_dc = JiraClient(server.url, email=EMAIL, token=TOKEN, timeout=(2.0, 2.0))
    pat_on_cloud = JiraClient(fake.url, pat=PAT, timeout=(2.0, 2.0))
    with pytest.raises(PermanentError) as on_dc:
        basic_on_dc.get_ticket("OPS-1")
    with pytest.raises(PermanentError) as on_cloud:
        pat_on_cloud.get_ticket("OPS-1")
    assert on_dc.value.status == on_cloud.value.status == 401
    assert "set SYNCER_JIRA_PAT" in str(on_dc.value)
    assert "SYNCER_JIRA_EMAIL and SYNCER_JIRA_TOKEN" in str(on_cloud.value)
    no_secrets(on_dc.value)
    no_secrets(on_cloud.value)


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_create_then_read(deployment: str, fake: FakeJira, client: JiraClient, server: FakeJira,
                          server_client: JiraClient) -> None:
    jira = client if deployment == "Cloud" else server_client
    fields = {**FIELDS, "labels": ["sentry-42"], "components": [{"name": "Backend"}]}
    issue_id, key = jira.create_issue(fields)
    ticket = jira.get_ticket(key)
    assert ticket is not None
    assert (ticket.id, ticket.key, ticket.status, ticket.status_category) == (issue_id, key, "To Do", "new")
    assert (ticket.labels, ticket.project_key) == (("sentry-42",), "OPS")
    assert jira.get_ticket(issue_id) == ticket


def test_names_instead_of_dicts_cost_no_extra_calls(fake: FakeJira, client: JiraClient) -> None:
    client.create_issue({"project": "OPS", "issuetype": "Bug", "summary": "short form"})
    assert fake.calls.count("GET") == 0
    assert fake.calls.count("POST", r"/issue$") == 1


def test_a_missing_ticket_is_none(fake: FakeJira, client: JiraClient) -> None:
    assert client.get_ticket("OPS-99999") is None


def test_a_moved_ticket_is_found_by_id_and_old_key(fake: FakeJira, client: JiraClient) -> None:
    issue_id, key = client.create_issue(FIELDS)
    new_key = fake.person_move(key, "PAY")
    assert [(t.id, t.key) for t in client.tickets_by_ids([issue_id])] == [(issue_id, new_key)]
    moved = client.get_ticket(key)
    assert moved is not None
    assert moved.key == new_key


@pytest.mark.parametrize("ref", ["OPS-1/../x", "OPS 1", "", "1?fields=x"])
def test_refs_are_checked_before_any_call(fake: FakeJira, client: JiraClient, ref: str) -> None:
    with pytest.raises(PermanentError):
        client.get_ticket(ref)
    assert fake.calls.count() == 0


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_threads_share_a_client(deployment: str, fake: FakeJira, server: FakeJira) -> None:
    jira_fake = fake if deployment == "Cloud" else server
    jira = (JiraClient(fake.url, email=EMAIL, token=TOKEN) if deployment == "Cloud"
            else JiraClient(server.url, pat=PAT))
    issue_id, _ = jira.create_issue(FIELDS)
    with ThreadPoolExecutor(4) as pool:
        tickets = list(pool.map(lambda _: jira.get_ticket(issue_id), range(16)))
        found = list(pool.map(lambda _: jira.tickets_by_ids([issue_id]), range(8)))
    assert all(len(f) == 1 for f in found)  # each thread's connection knows which search to use
    assert all(t is not None and t.id == issue_id for t in tickets)
    assert jira_fake.calls.count("GET", "serverInfo") == 1  # asked once, told to the other threads


# -- errors --------------------------------------------------------------------------------------------


def test_wrong_token_is_permanent_and_secret_free(fake: FakeJira) -> None:
    jira = JiraClient(fake.url, email=EMAIL, token="wrong-" + TOKEN)
    with pytest.raises(PermanentError) as raised:
        jira.get_ticket("OPS-1")
    assert raised.value.status == 401
    assert "wrong-" not in str(raised.value)
    no_secrets(raised.value)


def test_validation_errors_name_the_field(fake: FakeJira, client: JiraClient) -> None:
    with pytest.raises(PermanentError) as raised:
        client.create_issue({**FIELDS, "components": [{"name": "Nope"}]})
    assert raised.value.status == 400
    assert "components: Component name 'Nope' is not valid" in str(raised.value)
    no_secrets(raised.value)
    assert raised.value.__cause__ is None  # a chained JIRAError would print headers in tracebacks


def test_rate_limit_is_transient_with_the_servers_wait(fake: FakeJira, client: JiraClient) -> None:
    fake.faults.append(Fault("POST", r"/issue$", status=429, headers={"Retry-After": "7"}))
    with pytest.raises(TransientError) as raised:
        client.create_issue(FIELDS)
    assert not isinstance(raised.value, AmbiguousError)
    assert raised.value.retry_after == 7
    assert fake.calls.count("POST", r"/issue$") == 1  # the library did not retry on its own


def test_unavailable_on_a_write_is_ambiguous(fake: FakeJira, client: JiraClient) -> None:
    fake.faults.append(Fault("POST", r"/issue$", status=503))
    with pytest.raises(AmbiguousError) as raised:
        client.create_issue(FIELDS)
    assert raised.value.status == 503


def test_unavailable_on_a_read_is_transient(fake: FakeJira, client: JiraClient) -> None:
    fake.faults.append(Fault("GET", r"/issue/", status=503))
    with pytest.raises(TransientError) as raised:
        client.get_ticket("OPS-1")
    assert not isinstance(raised.value, AmbiguousError)


def test_a_write_that_happened_but_failed_is_ambiguous_and_findable(fake: FakeJira,
                                                                    client: JiraClient) -> None:
    fake.faults.append(Fault("POST", r"/issue$", status=500, after=True))
    with pytest.raises(AmbiguousError):
        client.create_issue({**FIELDS, "labels": ["sentry-77"]})
    assert [t.labels for t in client.find_by_label("sentry-77")] == [("sentry-77",)]


def test_timeouts(fake: FakeJira) -> None:
    jira = JiraClient(fake.url, email=EMAIL, token=TOKEN, timeout=(1.0, 0.3))
    jira.bot_account_id()  # connect first: the faults below are for the calls under test
    fake.faults.append(Fault("POST", r"/issue$", delay=1.0, after=True, status=201))
    with pytest.raises(AmbiguousError) as create:
        jira.create_issue(FIELDS)
    fake.faults.append(Fault("GET", r"/issue/", delay=1.0))
    with pytest.raises(TransientError) as read:
        jira.get_ticket("OPS-1")
    assert not isinstance(read.value, AmbiguousError)
    no_secrets(create.value)
    no_secrets(read.value)


def test_a_dropped_connection_is_ambiguous_for_writes(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    fake.faults.append(Fault("POST", r"/comment$", drop=True, after=True))
    with pytest.raises(AmbiguousError):
        client.add_comment(key, "once?")
    assert [c["body"] for c in fake.comments(key)] == ["once?"]


def test_an_unreachable_jira_is_transient() -> None:
    jira = JiraClient("http://127.0.0.1:9", email=EMAIL, token=TOKEN, timeout=(0.5, 0.5))
    with pytest.raises(TransientError) as raised:
        jira.get_ticket("OPS-1")
    no_secrets(raised.value)


# -- users ---------------------------------------------------------------------------------------------


@pytest.fixture
def people(fake: FakeJira) -> FakeJira:
    fake.add_user("acc-alice", "Alice Example", "alice@example.com")
    fake.add_user("acc-alice-smith", "Alice Smith", "alice.smith@example.com")
    fake.add_user("acc-twin-1", "Twin One", "twin@example.com")
    fake.add_user("acc-twin-2", "Twin Two", "TWIN@example.com")
    fake.add_user("acc-hidden", "Hidden Person", "hidden@example.com", email_visible=False)
    fake.add_user("acc-gone", "Gone Person", "gone@example.com", active=False)
    return fake


@pytest.mark.parametrize(
    ("wanted", "account", "reason"),
    [
        ("alice@example.com", "acc-alice", "exact match"),
        ("Alice@Example.COM", "acc-alice", "exact match"),
        ("alice.smith@example.com", "acc-alice-smith", "exact match"),
        ("alice@", None, "no Jira user with that e-mail"),  # a prefix of both Alices, exact for none
        ("alice", None, "no Jira user with that e-mail"),
        ("nobody@example.com", None, "no Jira user with that e-mail"),
        ("twin@example.com", None, "ambiguous"),
        ("hidden@example.com", None, "no Jira user with that e-mail"),
        ("gone@example.com", None, "deactivated"),
    ],
)
def test_find_account_demands_one_exact_email(people: FakeJira, client: JiraClient, wanted: str,
                                              account: str | None, reason: str) -> None:
    match = client.find_account(wanted)
    assert match.account_id == account
    assert reason in match.reason


def test_find_account_on_server_matches_the_username(server: FakeJira, server_client: JiraClient) -> None:
    server.add_user("alice", "Alice Example", "alice@example.com")
    server.add_user("alice2", "Alice Other", "alice.other@example.com")
    assert server_client.find_account("alice").account_id == "alice"
    assert server_client.find_account("alice.other@example.com").account_id == "alice2"
    assert server_client.find_account("ali").account_id is None


@pytest.mark.parametrize(
    ("wanted", "account", "problem"),
    [
        ("alice@example.com", "acc-alice", ""),
        ("alice@", None, "unknown"),  # a prefix of both Alices, exact for none
        ("nobody@example.com", None, "unknown"),
        ("twin@example.com", None, "ambiguous"),
        ("gone@example.com", None, "deactivated"),  # left out of the assignable search, not of user search
        ("alice.smith@example.com", None, "not_assignable"),  # a user, but not assignable in OPS
        ("hidden@example.com", None, "email_hidden"),  # found, but Jira will not show whose address
    ],
)
def test_find_assignable_demands_one_exact_email_assignable_in_the_project(
    people: FakeJira, client: JiraClient, wanted: str, account: str | None, problem: str
) -> None:
    people.make_unassignable("acc-alice-smith", "OPS")
    people.calls.reset()

    match = client.find_assignable("OPS", wanted)

    assert (match.account_id, match.problem) == (account, problem), match.reason
    searches = people.calls.calls("GET", r"/user/assignable/search$")
    assert searches and all("project=OPS" in c.query for c in searches)
    if problem == "not_assignable":
        assert "not assignable in OPS" in match.reason
    if problem == "email_hidden":
        assert "[people]" in match.reason


def test_find_assignable_is_per_project(people: FakeJira, client: JiraClient) -> None:
    people.make_unassignable("acc-alice", "PAY")
    assert client.find_assignable("OPS", "alice@example.com").account_id == "acc-alice"
    assert client.find_assignable("PAY", "alice@example.com").problem == "not_assignable"


def test_a_deactivated_user_is_not_assignable(people: FakeJira, client: JiraClient) -> None:
    people.deactivate_user("acc-alice")
    assert client.check_assignable("OPS", "acc-alice").problem == "deactivated"
    assert client.find_assignable("OPS", "alice@example.com").account_id is None


def test_check_assignable_takes_an_account_id_as_it_is(people: FakeJira, client: JiraClient) -> None:
    people.hide_emails = True
    people.make_unassignable("acc-alice-smith", "OPS")
    people.calls.reset()
    assert client.check_assignable("OPS", "acc-hidden").account_id == "acc-hidden"
    assert people.calls.count() == 1  # one question: the assignable search given the accountId
    assert client.check_assignable("OPS", "acc-alice-smith").problem == "not_assignable"
    unknown = client.check_assignable("OPS", "acc-nobody")
    assert unknown.problem == "unknown" and "acc-nobody" in unknown.reason


def test_assignable_on_data_center_goes_by_username(server: FakeJira, server_client: JiraClient) -> None:
    server.add_user("alice", "Alice Example", "alice@example.com")
    server.add_user("alice2", "Alice Other", "alice.other@example.com")
    server.make_unassignable("alice2", "PAY")
    assert server_client.find_assignable("OPS", "alice").account_id == "alice"
    assert server_client.find_assignable("OPS", "alice.other@example.com").account_id == "alice2"
    assert server_client.find_assignable("PAY", "alice.other@example.com").problem == "not_assignable"
    assert server_client.check_assignable("PAY", "alice").account_id == "alice"  # not alice2: exact only
    assert server_client.check_assignable("PAY", "alice2").problem == "not_assignable"
    assert server_client.check_assignable("PAY", "al").problem == "unknown"
    searches = server.calls.calls("GET", r"/user/assignable/search$")
    assert searches and all("username=" in c.query and "query=" not in c.query for c in searches)


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_assign_and_unassign(deployment: str, fake: FakeJira, client: JiraClient, server: FakeJira,
                             server_client: JiraClient) -> None:
    jira, jira_fake = (client, fake) if deployment == "Cloud" else (server_client, server)
    _, key = jira.create_issue(FIELDS)
    jira.assign(key, jira_fake.person_account_id)
    assert jira_fake.issue(key)["assignee"] == jira_fake.person_account_id  # type: ignore[index]
    jira.assign(key, None)
    assert jira_fake.issue(key)["assignee"] is None  # type: ignore[index]


# -- workflow ------------------------------------------------------------------------------------------


def test_transition_to_picks_the_transition_by_its_target(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    assert client.transition_to(key, "won't do")
    ticket = client.get_ticket(key)
    assert ticket is not None
    assert (ticket.status, ticket.resolution) == ("Won't Do", "Won't Do")
    assert client.transition_to(key, "Done")
    assert fake.issue(key)["status"] == "Done"  # type: ignore[index]


def test_transition_to_the_current_status_does_nothing(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    fake.calls.reset()
    assert client.transition_to(key, "To Do") is False
    assert fake.calls.count("POST") == 0
    assert fake.calls.count() == 1  # one read gives the status and the transitions


def test_transition_to_supplies_the_resolution_a_screen_asks_for(fake: FakeJira, client: JiraClient) -> None:
    fake.require_resolution = True
    _, key = client.create_issue(FIELDS)
    with pytest.raises(PermanentError, match=r'requires "Resolution".*Cannot Reproduce.*close_resolution'):
        client.transition_to(key, "Done")
    assert client.transition_to(key, "Done", resolution="Cannot Reproduce", comment="closed from Sentry")
    assert (fake.issue(key)["status"], fake.issue(key)["resolution"]) == ("Done", "Cannot Reproduce")  # type: ignore[index]
    assert [c["body"] for c in fake.comments(key)] == ["closed from Sentry"]


def test_transition_to_leaves_the_resolution_to_a_screenless_workflow(fake: FakeJira,
                                                                      client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    assert client.transition_to(key, "Done", resolution="Duplicate")  # Jira would refuse the field
    assert fake.issue(key)["resolution"] == "Done"  # type: ignore[index]


def test_transition_to_an_unknown_status_names_it(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    with pytest.raises(PermanentError, match="'Shipped'"):
        client.transition_to(key, "Shipped")


def test_a_move_says_when_jira_made_it_on_jiras_own_clock(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    fake.clock_skew = -20.0  # Jira's clock runs behind ours

    moved = client.move_to(key, "Done")

    assert moved is not None and moved.transition.to_name == "Done" and moved.at is not None
    jira_now = datetime.now(UTC) - timedelta(seconds=20)
    # The answer's Date (whole seconds) less a second: never later than the change it reports.
    assert jira_now - timedelta(seconds=5) < moved.at <= jira_now
    assert moved.at <= fake.issue(key)["updated"]  # type: ignore[index]
    assert client.move_to(key, "Done") is None  # there already


def test_transitions_list_targets(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    by_target = {t.to_name: (t.name, t.to_category) for t in client.transitions(key)}
    assert by_target == {"In Progress": ("Start progress", "indeterminate"), "Done": ("Done", "done"),
                         "Won't Do": ("Won't do", "done")}


# -- walking a workflow --------------------------------------------------------------------------------


def status_moves(receiver: WebhookInbox, key: str, count: int) -> list[tuple[str, str]]:
    """The status changes of `key` the fake's webhooks told, (from, to), once `count` have come."""
    def moves() -> list[tuple[str, str]]:
        found = []
        for hook in receiver.received:
            event = hook.json()
            items = (event.get("changelog") or {}).get("items") or []
            if event["issue"]["key"] == key:
                found += [(i["fromString"], i["toString"]) for i in items if i["field"] == "status"]
        return found
    deadline = time.monotonic() + 10
    while len(moves()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return moves()


def test_a_strict_workflow_is_walked_step_by_step_and_the_map_remembered(
    fake: FakeJira, client: JiraClient, receiver: WebhookInbox
) -> None:
    fake.set_workflow("OPS", "strict")
    _, key = client.create_issue(FIELDS)

    moved = client.move_to(key, Goal("Done", setting="close_to"), resolution="Done", comment="closed")

    assert moved is not None and [t.to_name for t in moved.steps] == ["In Progress", "Done"]
    assert moved.via == ("In Progress",) and moved.transition.to_name == "Done"
    assert status_moves(receiver, key, 2) == [("To Do", "In Progress"), ("In Progress", "Done")]
    assert [c["body"] for c in fake.comments(key)] == ["closed"]  # once, with the last step
    assert client.move_to(key, "To Do") is not None  # Reopen, the one way out of Done

    # A second ticket walks the same way with what the first one showed: no transitions read.
    _, second = client.create_issue(FIELDS)
    ticket = client.get_ticket(second)
    fake.calls.reset()
    assert client.move_to(second, "Done", current=ticket) is not None
    assert fake.issue(second)["status"] == "Done"  # type: ignore[index]
    # One read of the start (a way of two steps begins from what Jira says now), then the POSTs.
    assert (fake.calls.count("GET"), fake.calls.count("POST")) == (1, 2)


def test_a_close_in_a_simple_workflow_is_one_post_once_its_transitions_are_known(
    fake: FakeJira, client: JiraClient
) -> None:
    _, first = client.create_issue(FIELDS)
    assert client.move_to(first, "Done") is not None  # learns To Do's transitions
    _, second = client.create_issue(FIELDS)
    ticket = client.get_ticket(second)
    fake.calls.reset()

    assert client.move_to(second, Goal("Done", fallback_category="done"), current=ticket) is not None

    # The transition straight to Done says the workflow has it: no statuses read, nothing else.
    assert (fake.calls.count("GET"), fake.calls.count("POST")) == (0, 1)


def test_a_walk_cut_short_goes_on_from_where_the_ticket_is(fake: FakeJira, client: JiraClient,
                                                           receiver: WebhookInbox) -> None:
    fake.set_workflow("OPS", "strict")
    _, key = client.create_issue(FIELDS)
    # The first step is made, its answer lost: to us, the walk died between its steps.
    fake.faults.append(Fault("POST", r"/transitions$", after=True, drop=True))
    with pytest.raises(AmbiguousError):
        client.move_to(key, "Done")
    assert fake.issue(key)["status"] == "In Progress"  # type: ignore[index]

    moved = client.move_to(key, "Done")

    assert moved is not None and [t.to_name for t in moved.steps] == ["Done"]
    assert status_moves(receiver, key, 2) == [("To Do", "In Progress"), ("In Progress", "Done")]


def test_a_status_the_workflow_lacks_falls_back_to_its_category(fake: FakeJira, client: JiraClient) -> None:
    fake.set_workflow("OPS", "strict", todo="Open", done="Closed")
    _, key = client.create_issue(FIELDS)

    closed = client.move_to(key, Goal("Done", fallback_category="done", avoid=frozenset({"Won't Do"})))
    assert closed is not None and closed.transition.to_name == "Closed"
    reopened = client.move_to(key, Goal("To Do", fallback_category="new"))
    assert reopened is not None and reopened.transition.to_name == "Open"
    assert fake.issue(key)["status"] == "Open"  # type: ignore[index]


def test_a_status_the_workflow_lacks_without_a_fallback_names_what_to_set(fake: FakeJira,
                                                                          client: JiraClient) -> None:
    fake.set_workflow("OPS", "strict")
    _, key = client.create_issue(FIELDS)
    fake.calls.reset()

    with pytest.raises(NoWay) as refused:
        client.move_to(key, Goal("Won't Do", setting="archive_to"))

    text = str(refused.value)
    assert key in text and "Won't Do" in text
    assert "its statuses: 'To Do', 'In Progress', 'Done'" in text
    assert "status.projects.OPS.archive_to" in text
    assert fake.calls.count("POST") == 0  # nothing moved on the way to nowhere


def test_a_required_screen_field_is_filled_from_the_policy_in_its_shape(fake: FakeJira,
                                                                        client: JiraClient) -> None:
    fake.set_workflow("OPS", "strict")
    cause = fake.add_custom_field("Root cause", "select", ["Code", "Config", "Sentry"])
    fake.add_version("OPS", "2.4")
    fake.add_transition_field("OPS", "Done", cause)
    fake.add_transition_field("OPS", "Done", "fixVersions")
    fake.add_transition_field("OPS", "Done", "resolution")
    _, key = client.create_issue(FIELDS)

    moved = client.move_to(key, "Done", resolution="Cannot Reproduce",
                           field_values={"root cause": "sentry", "fixVersions": "2.4"})

    assert moved is not None
    ticket = fake.issue(key)
    assert ticket is not None
    assert (ticket["status"], ticket["resolution"], ticket["fix_versions"]) == (
        "Done", "Cannot Reproduce", ["2.4"])
    assert ticket["custom"][cause] == "Sentry"


def test_a_required_screen_field_without_a_value_names_the_field_and_its_values(
    fake: FakeJira, client: JiraClient
) -> None:
    fake.set_workflow("OPS", "strict")
    cause = fake.add_custom_field("Root cause", "select", ["Code", "Config"])
    fake.add_transition_field("OPS", "Done", cause)
    _, key = client.create_issue(FIELDS)

    with pytest.raises(ScreenRefused) as refused:
        client.move_to(key, "Done")

    text = str(refused.value)
    assert f'requires "Root cause" ({cause})' in text and "it takes: \"Code\", \"Config\"" in text
    assert "[status.projects.OPS.transition_fields]" in text
    with pytest.raises(ScreenRefused, match='"Hardware" is not one of its values'):
        client.move_to(key, "Done", field_values={"Root cause": "Hardware"})


# -- search --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_tickets_by_ids_pages_in_hundreds(deployment: str, fake: FakeJira, server: FakeJira,
                                          client: JiraClient, server_client: JiraClient) -> None:
    jira_fake, jira = (fake, client) if deployment == "Cloud" else (server, server_client)
    keys = [jira_fake.person_create("OPS", f"n{n}", []) for n in range(250)]
    ids = [jira_fake.issue(k)["id"] for k in keys]  # type: ignore[index]
    jira_fake.calls.reset()
    tickets = jira.tickets_by_ids(ids)
    assert sorted(t.id for t in tickets) == sorted(ids)
    assert jira_fake.calls.count("POST", r"/search") == 3


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_tickets_by_ids_skips_deleted_tickets(deployment: str, fake: FakeJira, server: FakeJira,
                                              client: JiraClient, server_client: JiraClient) -> None:
    jira_fake, jira = (fake, client) if deployment == "Cloud" else (server, server_client)
    ids = [jira.create_issue(FIELDS)[0] for _ in range(4)]
    jira_fake.person_delete(ids[1])
    jira_fake.person_delete(ids[3])
    assert sorted(t.id for t in jira.tickets_by_ids(ids)) == [ids[0], ids[2]]
    assert jira.tickets_by_ids([ids[1]]) == []


def test_tickets_by_ids_refuses_non_ids(fake: FakeJira, client: JiraClient) -> None:
    with pytest.raises(PermanentError):
        client.tickets_by_ids(["10001) OR (project = OPS"])


def test_find_by_label_respects_search_lag(fake: FakeJira, client: JiraClient) -> None:
    fake.search_lag = 0.3
    issue_id, _ = client.create_issue({**FIELDS, "labels": ["sentry-500"]})
    assert client.find_by_label("sentry-500") == []  # Cloud search is eventually consistent
    time.sleep(0.35)
    assert [t.id for t in client.find_by_label("sentry-500")] == [issue_id]


def test_find_by_label_pages_and_quotes(fake: FakeJira, client: JiraClient) -> None:
    for n in range(130):
        fake.person_create("OPS", f"n{n}", ["wide"])
    assert len(client.find_by_label("wide")) == 130
    assert client.find_by_label('we"ird\\label') == []


def test_jql_quote() -> None:
    assert jql_quote('a"b\\c') == '"a\\"b\\\\c"'


# -- small writes --------------------------------------------------------------------------------------


def test_remote_link_upsert_keeps_one_link_per_global_id(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue(FIELDS)
    for title in ("first", "second"):
        client.upsert_remote_link(key, global_id="sentry:issue:42", url="https://sentry.example/42",
                                  title=title, summary="ZeroDivisionError")
    links = fake.remote_links(key)
    assert [(link["globalId"], link["object"]["title"]) for link in links] == [("sentry:issue:42", "second")]
    assert fake.calls.count("GET", "applinks") == 0


def test_comments_and_labels(fake: FakeJira, client: JiraClient) -> None:
    _, key = client.create_issue({**FIELDS, "labels": ["a"]})
    client.add_comment(key, "from Sentry")
    client.add_labels(key, ["b", "a"])
    client.add_labels(key, [])
    assert fake.issue(key)["labels"] == ["a", "b"]  # type: ignore[index]
    assert [c["body"] for c in fake.comments(key)] == ["from Sentry"]
    with pytest.raises(PermanentError, match="spaces"):
        client.add_labels(key, ["no spaces allowed"])


# -- our changes come back as webhooks -----------------------------------------------------------------


def test_webhooks_for_api_and_person_changes(
    fake: FakeJira, client: JiraClient, receiver: WebhookInbox
) -> None:
    _, key = client.create_issue({**FIELDS, "labels": ["sentry-1"]})
    client.transition_to(key, "Done")
    fake.person_transition(key, "To Do")
    receiver.wait(3)
    events = []
    for hook in receiver.received:
        headers, body = hook.headers, hook.body
        assert verify_signature(SECRET, body, headers["x-hub-signature"])
        assert not verify_signature("other", body, headers["x-hub-signature"])
        events.append(parse_event(json.loads(body)))
    assert [e.webhook_event for e in events] == ["jira:issue_created"] + ["jira:issue_updated"] * 2
    assert [e.user_id for e in events] == [client.bot_account_id()] * 2 + [fake.person_account_id]
    done, reopened = events[1].status_change(), events[2].status_change()
    assert done is not None
    assert reopened is not None
    assert (done.to_string, reopened.from_string, reopened.to_string) == ("Done", "Done", "To Do")
    assert events[2].ticket is not None
    assert (events[2].ticket.status_category, events[2].ticket.resolution) == ("new", "")


@pytest.mark.parametrize(
    "fault",
    [Fault("*", ".", status=500), Fault("*", ".", status=401), Fault("*", ".", drop=True)],
    ids=["500", "401", "drop"],
)
def test_error_messages_never_carry_secrets(fake: FakeJira, client: JiraClient, fault: Fault) -> None:
    fake.faults.append(fault)
    with pytest.raises((TransientError, PermanentError)) as raised:
        client.create_issue(FIELDS)
    no_secrets(raised.value)
