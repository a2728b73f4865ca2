"""The fake Sentry's switches for real Sentry as plans and versions differ (issue 14): each one is
driven over real HTTP with httpx, apart from our client, and checked against the shape Sentry's
own code gives (the sources are cited where the fake decides)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncer.fakes.base import WebhookInbox
from syncer.fakes.sentry import FakeSentry, start_fake_sentry

TOKEN = "realism-token"
SECRET = "realism-secret"
APP_ID = "0d9e4c1a-2222-4222-8333-444455556666"
INSTALLATION = "9b7c1d2e-bbbb-4bbb-8ccc-ddddeeeeffff"
MULTI_PROJECT = {"detail": "You do not have the multi project stream feature enabled"}
NEXT_LINK = re.compile(r'<(?P<url>[^>]+)>; rel="next"; results="(?P<results>true|false)"; '
                       r'cursor="(?P<cursor>[^"]+)"')


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


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {issue["id"] for issue in response.json()}


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def hooks(fake: FakeSentry) -> list[tuple[str, str, Any]]:
    return [(resource, p["action"], p["actor"]["id"]) for resource, p in fake.emitted()]


# ------------------------------------------------------------------ 1. multi-project views


def test_without_global_views_only_one_project_per_list(fake: FakeSentry, http: httpx.Client) -> None:
    billing = fake.file_issue(project="billing-api")
    web = fake.file_issue(project="web-app")
    billing_project, web_project = billing["project"]["id"], web["project"]["id"]
    everything = {billing["id"], web["id"]}
    assert ids(http.get("organizations/acme/issues/", params={"project": "-1"})) == everything

    fake.global_views = False
    for params in ({"project": "-1"}, {}, [("project", billing_project), ("project", web_project)]):
        refused = http.get("organizations/acme/issues/", params=params)
        assert (refused.status_code, refused.json()) == (400, MULTI_PROJECT), params
    assert ids(http.get("organizations/acme/issues/", params={"project": billing_project})) == {billing["id"]}

    by_group = [("group", billing["id"]), ("group", web["id"])]
    assert http.get("organizations/acme/issues/", params=[*by_group, ("project", "-1")]).status_code == 400
    # One project per lookup works, and answers only that project's issues.
    assert ids(http.get("organizations/acme/issues/", params=[*by_group, ("project", web_project)])) == {
        web["id"]
    }

    bulk = http.put("organizations/acme/issues/", params=[("id", billing["id"]), ("id", web["id"])],
                    json={"status": "resolved"})
    assert (bulk.status_code, bulk.json()) == (400, MULTI_PROJECT)
    one = http.put("organizations/acme/issues/",
                   params=[("id", billing["id"]), ("id", web["id"]), ("project", billing_project)],
                   json={"status": "resolved"})
    assert one.status_code == 200
    assert fake.issue(billing["id"])["status"] == "resolved"
    assert fake.issue(web["id"])["status"] == "unresolved"


def test_an_organisation_with_one_project_needs_no_global_views(fake: FakeSentry, http: httpx.Client) -> None:
    fake.global_views = False
    issue = fake.file_issue(project="billing-api")
    assert ids(http.get("organizations/acme/issues/", params={"project": "-1"})) == {issue["id"]}
    assert ids(http.get("organizations/acme/issues/")) == {issue["id"]}


def test_a_project_the_token_cannot_see_is_refused(fake: FakeSentry, http: httpx.Client) -> None:
    fake.file_issue()
    assert http.get("organizations/acme/issues/", params={"project": "999"}).status_code == 403
    assert http.get("organizations/acme/issues/", params={"project": "billing"}).status_code == 400


def test_the_organisation_names_its_features_when_asked(fake: FakeSentry, http: httpx.Client) -> None:
    plain = http.get("organizations/acme/")
    assert plain.status_code == 200
    assert plain.json()["slug"] == "acme"
    assert "features" not in plain.json()  # newer Sentry lists them only on request
    flags = {"include_feature_flags": 1}
    assert "global-views" in http.get("organizations/acme/", params=flags).json()["features"]
    fake.global_views = False
    assert "global-views" not in http.get("organizations/acme/", params=flags).json()["features"]


# ------------------------------------------------------------------ 2. the search window


def test_default_window_hides_issues_not_seen_for_90_days(fake: FakeSentry, http: httpx.Client) -> None:
    old = fake.file_issue(title="OldError: x", first_seen=ago(days=100))
    recent = fake.file_issue(title="RecentError: y", first_seen=ago(hours=2))
    listing = "organizations/acme/issues/"
    assert ids(http.get(listing)) == {old["id"], recent["id"]}  # the switch is off by default

    fake.default_search_window = True
    assert ids(http.get(listing)) == {recent["id"]}
    assert ids(http.get(listing, params={"statsPeriod": "24h"})) == {recent["id"]}
    assert ids(http.get(listing, params={"statsPeriod": "1h"})) == set()
    assert ids(http.get(listing, params={"statsPeriod": "120d"})) == {old["id"], recent["id"]}
    span = {"start": ago(days=101).isoformat(), "end": ago(days=99).isoformat()}
    assert ids(http.get(listing, params=span)) == {old["id"]}
    # The window is the events an issue had: a lookup by id and a short id ignore it.
    assert ids(http.get(listing, params={"group": old["id"]})) == {old["id"]}
    assert ids(http.get(listing, params={"query": old["shortId"]})) == {old["id"]}


def test_bad_windows_are_refused_as_sentry_words_it(fake: FakeSentry, http: httpx.Client) -> None:
    listing = "organizations/acme/issues/"
    soon = http.get(listing, params={"statsPeriod": "soon"})
    assert (soon.status_code, soon.json()) == (400, {"detail": "Invalid statsPeriod: 'soon'"})
    only_start = http.get(listing, params={"start": ago(days=1).isoformat()})
    assert (only_start.status_code, only_start.json()) == (400, {"detail": "start and end are both required"})
    backwards = http.get(listing, params={"start": ago(days=1).isoformat(), "end": ago(days=2).isoformat()})
    assert backwards.json() == {"detail": "start must be before end"}


def test_absolute_dates_in_the_query(fake: FakeSentry, http: httpx.Client) -> None:
    early = fake.file_issue(title="EarlyError: a", first_seen="2026-01-02T03:04:04Z")
    late = fake.file_issue(title="LateError: b", first_seen="2026-01-02T03:04:05Z")
    listing = "organizations/acme/issues/"
    assert ids(http.get(listing, params={"query": "firstSeen:>=2026-01-02T03:04:05Z"})) == {late["id"]}
    assert ids(http.get(listing, params={"query": "firstSeen:<2026-01-02T03:04:05Z"})) == {early["id"]}
    assert ids(http.get(listing, params={"query": "lastSeen:>2026-01-02T03:04:04Z"})) == {late["id"]}
    assert http.get(listing, params={"query": "lastSeen:>yesterday-ish"}).status_code == 400
