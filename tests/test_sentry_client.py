"""SentryClient against the fake Sentry over real HTTP: every method, pagination, and how each kind
of failure maps onto syncer.errors."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from syncer.core.issue import SentryIssue
from syncer.errors import AmbiguousError, PermanentError, TransientError
from syncer.fakes.base import Fault
from syncer.fakes.sentry import FakeSentry, start_fake_sentry
from syncer.sentry.client import SentryClient

TOKEN = "client-test-token-c0ffee"
INSTALLATION = "3e1f6a2b-1234-4abc-9def-0123456789ab"
LIST_PATH = r"/organizations/acme/issues/$"
SINCE = datetime.now(UTC) - timedelta(days=30)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSentry]:
    server = start_fake_sentry(token=TOKEN, installation_uuid=INSTALLATION)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh(fake: FakeSentry) -> None:
    fake.reset()


@pytest.fixture(scope="module")
def client(fake: FakeSentry) -> Iterator[SentryClient]:
    with SentryClient(fake.url, "acme", TOKEN) as sentry:
        yield sentry


def list_calls(fake: FakeSentry) -> list[dict[str, list[str]]]:
    return [parse_qs(c.query, keep_blank_values=True) for c in fake.calls.calls("GET", LIST_PATH)]


# ------------------------------------------------------------------ the methods


def test_get_issue(fake: FakeSentry, client: SentryClient) -> None:
    filed = fake.file_issue(project="billing-api", title="KeyError: 'plan'", count=5, user_count=2,
                            assigned_to="user:bob@example.com")
    issue = client.get_issue(filed["id"])
    assert isinstance(issue, SentryIssue)
    assert (issue.id, issue.short_id, issue.title) == (filed["id"], "BILLING-API-1", "KeyError: 'plan'")
    assert (issue.status, issue.project_slug) == ("unresolved", "billing-api")
    assert (issue.count, issue.user_count) == (5, 2)
    assert issue.assigned_to is not None
    assert issue.assigned_to.email == "bob@example.com"
    assert issue.permalink == filed["permalink"]
    assert fake.calls.count("GET") == 1


def test_update_issue(fake: FakeSentry, client: SentryClient) -> None:
    filed = fake.file_issue()
    resolved = client.update_issue(filed["id"], status="resolvedInNextRelease")
    assert resolved.status == "resolved"
    assert resolved.status_details["inNextRelease"] is True
    assigned = client.update_issue(filed["id"], assigned_to="team:1")
    assert assigned.assigned_to is not None
    assert (assigned.assigned_to.type, assigned.assigned_to.name) == ("team", "payments")
    cleared = client.update_issue(filed["id"], assigned_to="")
    assert cleared.assigned_to is None
    archived = client.update_issue(filed["id"], status="ignored", status_details={"untilEscalating": True})
    assert (archived.status, archived.substatus) == ("ignored", "archived_until_escalating")
    assert fake.issue(filed["id"])["status"] == "ignored"
    with pytest.raises(ValueError):
        client.update_issue(filed["id"])


def test_issue_tags(fake: FakeSentry, client: SentryClient) -> None:
    filed = fake.file_issue(tags={"environment": ["production", "staging"], "team": "payments"})
    assert client.issue_tags(filed["id"]) == {"environment": ["production", "staging"], "team": ["payments"]}


def test_add_note_is_safe_to_repeat(fake: FakeSentry, client: SentryClient) -> None:
    filed = fake.file_issue()
    client.add_note(filed["id"], "Jira ticket: PAY-7")
    client.add_note(filed["id"], "Jira ticket: PAY-7")  # Sentry answers 400 "already posted": done
    assert [n["data"]["text"] for n in fake.notes(filed["id"])] == ["Jira ticket: PAY-7"]
    assert fake.calls.count("POST") == 2


def test_link_external_issue_replaces_the_link(fake: FakeSentry, client: SentryClient) -> None:
    filed = fake.file_issue()
    for key in ("PAY-1", "PAY-2"):
        client.link_external_issue(INSTALLATION, filed["id"], web_url=f"https://jira.example.com/browse/{key}",
                                   project="PAY", identifier=key)
    (link,) = fake.external_issues(filed["id"])
    assert (link["displayName"], link["webUrl"]) == ("PAY#PAY-2", "https://jira.example.com/browse/PAY-2")
    with pytest.raises(PermanentError) as wrong:
        client.link_external_issue("another-installation", filed["id"], web_url="https://j.example.com/x",
                                   project="PAY", identifier="PAY-3")
    assert wrong.value.status == 404


def test_link_external_issue_replaces_the_link_on_versions_before_the_upsert(
    fake: FakeSentry, client: SentryClient
) -> None:
    fake.external_issue_upsert = False  # before getsentry/sentry#79844: a second post is a 500
    filed = fake.file_issue()
    for key in ("PAY-1", "PAY-1", "PAY-2"):  # a repeat of the same link, then a successor ticket
        client.link_external_issue(INSTALLATION, filed["id"], web_url=f"https://jira.example.com/browse/{key}",
                                   project="PAY", identifier=key)
    (link,) = fake.external_issues(filed["id"])
    assert (link["displayName"], link["webUrl"]) == ("PAY#PAY-2", "https://jira.example.com/browse/PAY-2")
    assert len(fake.calls.calls("DELETE", r"/external-issues/\d+/$")) == 1  # only PAY-1's, once
    # A 500 that is not the constraint (no link of ours there) is still a failure to retry.
    other = fake.file_issue()
    fake.faults.append(Fault("POST", r"/external-issues/$", status=500))
    with pytest.raises(TransientError):
        client.link_external_issue(INSTALLATION, other["id"], web_url="https://jira.example.com/browse/PAY-3",
                                   project="PAY", identifier="PAY-3")


def test_a_sentry_served_under_a_path_prefix_keeps_it_in_every_call() -> None:
    # Self-hosted behind a proxy at https://host/sentry/: "/api/0/" goes after the prefix, and the
    # pagination cursor is followed on the same prefixed path.
    fake = start_fake_sentry(token=TOKEN, installation_uuid=INSTALLATION, path_prefix="/sentry/")
    try:
        filed = [fake.file_issue(title=f"RuntimeError: behind a proxy {n}") for n in range(3)]
        with SentryClient(fake.url, "acme", TOKEN) as sentry:
            assert fake.url.endswith("/sentry")
            assert sentry.get_issue(filed[0]["id"]).id == filed[0]["id"]
            assert len(list(sentry.iter_issues("", since=SINCE, page_size=2))) == 3  # two pages
            sentry.link_external_issue(INSTALLATION, filed[0]["id"], web_url="https://jira.example.com/browse/OPS-1",
                                       project="OPS", identifier="OPS-1")
        paths = {call.path for call in fake.calls.calls()}
        assert paths and all(path.startswith("/sentry/api/0/") for path in paths), paths
    finally:
        fake.stop()


def test_base_url_may_already_name_the_api(fake: FakeSentry) -> None:
    filed = fake.file_issue()
    with SentryClient(f"{fake.url}/api/0/", "acme", TOKEN) as sentry:
        assert sentry.get_issue(filed["id"]).id == filed["id"]


# ------------------------------------------------------------------ pagination and batches


def test_iter_issues_follows_next_while_results_true(fake: FakeSentry, client: SentryClient) -> None:
    ids = fake.seed_issues(250)
    got = [issue.id for issue in client.iter_issues("is:unresolved", since=SINCE)]
    assert got == ids[::-1]  # newest first, each once
    calls = list_calls(fake)
    assert len(calls) == 3
    assert "cursor" not in calls[0]
    assert all(c["query"] == ["is:unresolved"] and c["limit"] == ["100"] for c in calls)
    assert calls[1]["cursor"] != calls[2]["cursor"]


def test_iter_issues_stops_on_results_false_at_an_exact_multiple(
    fake: FakeSentry, client: SentryClient
) -> None:
    fake.seed_issues(200)
    assert len(list(client.iter_issues("", since=SINCE))) == 200
    assert len(list_calls(fake)) == 2
    fake.calls.reset()
    assert list(client.iter_issues("is:resolved", since=SINCE)) == []
    assert len(list_calls(fake)) == 1


def test_iter_issues_page_size_is_capped(fake: FakeSentry, client: SentryClient) -> None:
    fake.seed_issues(30)
    assert len(list(client.iter_issues("", page_size=10, since=SINCE))) == 30
    assert len(list_calls(fake)) == 3
    list(client.iter_issues("", page_size=1000, since=SINCE))
    assert list_calls(fake)[-1]["limit"] == ["100"]


def test_issues_by_ids_batches_by_100_and_keeps_the_asked_order(
    fake: FakeSentry, client: SentryClient
) -> None:
    ids = fake.seed_issues(150) + fake.seed_issues(100, status="resolved")
    asked = [*ids[::-1], "999", "not-an-id", ids[0]]
    got = client.issues_by_ids(asked)
    assert [i.id for i in got] == ids[::-1]  # unknown and malformed ids left out, duplicates once
    calls = list_calls(fake)
    assert [len(c["group"]) for c in calls] == [100, 100, 51]
    assert all("query" not in c for c in calls)
    assert client.issues_by_ids([]) == []


def parse_link_header(header: str | None) -> dict[str, dict[str, str]]:
    """Sentry's Link header as the client reads it: httpx's `Response.links`, by rel."""
    response = httpx.Response(200, headers={"link": header} if header is not None else {})
    return {rel: {k: v for k, v in link.items() if k != "rel"} for rel, link in response.links.items()}


def test_parse_link_header() -> None:
    header = ('<https://sentry.io/api/0/organizations/acme/issues/?query=&cursor=0:0:1>; rel="previous"; '
              'results="false"; cursor="0:0:1", <https://sentry.io/api/0/organizations/acme/issues/?query=a,b'
              '&cursor=1:100:0>; rel="next"; results="true"; cursor="1:100:0"')
    links = parse_link_header(header)
    assert links["previous"]["results"] == "false"
    assert links["next"] == {"url": "https://sentry.io/api/0/organizations/acme/issues/?query=a,b&cursor=1:100:0",
                             "results": "true", "cursor": "1:100:0"}
    assert parse_link_header("") == {}
    assert parse_link_header(None) == {}


# ------------------------------------------------------------------ failures


def test_rejected_token_is_permanent_and_never_shown(fake: FakeSentry) -> None:
    secret = "sntrys_do-not-leak-this-0123456789"
    with SentryClient(fake.url, "acme", secret) as sentry:
        with pytest.raises(PermanentError) as caught:
            sentry.get_issue("1")
        assert secret not in repr(sentry)
    error = caught.value
    assert error.status == 401
    assert "Invalid token" in str(error)
    for text in (str(error), repr(error), repr(error.args)):
        assert secret not in text


def test_an_echoed_token_is_redacted(fake: FakeSentry, client: SentryClient) -> None:
    fake.faults.append(Fault("GET", r"/issues/", status=400, body={"detail": f"bad header Bearer {TOKEN}"}))
    with pytest.raises(PermanentError) as caught:
        client.get_issue("1")
    assert TOKEN not in str(caught.value)
    assert "[redacted]" in str(caught.value)


def test_429_with_only_the_sentry_reset_header_is_transient_with_the_wait(
    fake: FakeSentry, client: SentryClient
) -> None:
    reset = int(time.time()) + 30
    fake.faults.append(Fault("GET", r"/issues/", status=429,
                             headers={"X-Sentry-Rate-Limit-Reset": str(reset)}))
    with pytest.raises(TransientError) as caught:
        client.get_issue("1")
    assert not isinstance(caught.value, AmbiguousError)
    assert caught.value.status == 429
    assert caught.value.retry_after is not None
    assert reset - time.time() - 2 <= caught.value.retry_after <= reset - time.time() + 1


def test_503_on_a_write_is_ambiguous_and_on_a_read_transient(fake: FakeSentry, client: SentryClient) -> None:
    filed = fake.file_issue()
    fake.faults.append(Fault("PUT", r"/issues/", status=503))
    with pytest.raises(AmbiguousError) as put:
        client.update_issue(filed["id"], status="resolved")
    assert put.value.status == 503
    assert put.value.retry_after is None  # the rate-limit reset on every answer is no hint after a 5xx
    fake.faults.append(Fault("GET", r"/issues/", status=503))
    with pytest.raises(TransientError) as get:
        client.get_issue(filed["id"])
    assert not isinstance(get.value, AmbiguousError)


def test_not_found_is_permanent(client: SentryClient) -> None:
    with pytest.raises(PermanentError) as caught:
        client.get_issue("12345")
    assert caught.value.status == 404
    with pytest.raises(PermanentError):
        client.get_issue("../../admin")  # never sent: not an issue id


def test_timeouts_are_ambiguous_for_writes_and_transient_for_reads(fake: FakeSentry) -> None:
    filed = fake.file_issue()
    with SentryClient(fake.url, "acme", TOKEN, timeout=0.2) as sentry:
        fake.faults.append(Fault("PUT", r"/issues/", status=200, delay=1.0, after=True))
        with pytest.raises(AmbiguousError):
            sentry.update_issue(filed["id"], status="resolved")
        fake.faults.append(Fault("GET", r"/issues/", status=200, delay=1.0))
        with pytest.raises(TransientError) as read:
            sentry.get_issue(filed["id"])
        assert not isinstance(read.value, AmbiguousError)
    assert fake.issue(filed["id"])["status"] == "resolved"  # the PUT happened: the ambiguity was real


def test_a_dropped_connection_after_a_write_is_ambiguous(fake: FakeSentry, client: SentryClient) -> None:
    filed = fake.file_issue()
    fake.faults.append(Fault("POST", r"/notes/", after=True, drop=True))
    with pytest.raises(AmbiguousError):
        client.add_note(filed["id"], "Jira ticket: PAY-9")
    assert len(fake.notes(filed["id"])) == 1
    client.add_note(filed["id"], "Jira ticket: PAY-9")  # the retry meets the duplicate: done
    assert len(fake.notes(filed["id"])) == 1


def test_connection_refused_is_transient_even_for_writes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        SentryClient(f"http://127.0.0.1:{port}", "acme", TOKEN) as sentry,
        pytest.raises(TransientError) as caught,
    ):
        sentry.update_issue("1", status="resolved")
    assert not isinstance(caught.value, AmbiguousError)


def test_answers_that_are_not_json_or_not_issues_are_permanent() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tags/"):
            return httpx.Response(200, json={"not": "a list"})
        if request.url.path.endswith("/2/"):
            return httpx.Response(200, json={"id": "not-numeric"})
        return httpx.Response(200, text="<html>maintenance</html>", headers={"Content-Type": "text/html"})

    with SentryClient("https://sentry.example.com", "acme", TOKEN,
                      transport=httpx.MockTransport(answer)) as sentry:
        with pytest.raises(PermanentError, match="not JSON"):
            sentry.get_issue("1")
        with pytest.raises(PermanentError, match="unusable issue"):
            sentry.get_issue("2")
        with pytest.raises(PermanentError):
            sentry.issue_tags("3")


# ------------------------------------------------------------------ plans and partial answers


def test_without_multi_project_reads_it_asks_per_project_and_learns_that_once(fake: FakeSentry) -> None:
    fake.global_views = False
    billing = fake.seed_issues(2, project="billing-api")
    web = fake.seed_issues(1, project="web-app")
    projects = {**dict.fromkeys(billing, "billing-api"), **dict.fromkeys(web, "web-app"), "77": "gone"}
    with SentryClient(fake.url, "acme", TOKEN) as fresh:
        found = fresh.issues_by_ids([*billing, *web, "77"], projects=projects)
        assert [i.id for i in found] == [*billing, *web]
        assert fresh.multi_project is False
        assert fake.calls.count("GET", r"/projects/$") == 1
        fake.calls.reset()
        assert len(fresh.issues_by_ids(billing, projects=projects)) == 2
        assert [c.get("project") for c in list_calls(fake)] == [["1"]]  # no refused read the second time
        assert sorted(i.id for i in fresh.iter_issues("", since=SINCE)) == sorted([*billing, *web])
    assert fake.calls.count("GET", r"/projects/$") == 0  # read once for the client's life


def test_the_tags_list_names_the_keys_with_rarer_values_and_those_page_through(
    fake: FakeSentry, client: SentryClient
) -> None:
    issue = fake.file_issue(tags={"url": {f"/page/{n}": 500 - n for n in range(150)}, "env": "prod"})
    top, more = client.issue_tag_listing(issue["id"])
    assert (len(top["url"]), top["env"], more) == (10, ["prod"], {"url"})
    every = client.issue_tag_values(issue["id"], "url")
    assert len(every) == 150 and every[:2] == ["/page/0", "/page/1"]  # most seen first
    assert fake.calls.count("GET", r"/tags/url/values/") == 2  # 100 a page
