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

from syncer.fakes.base import WebhookInbox, hmac_sha256_hex
from syncer.fakes.sentry import SENTRY_ACTOR, FakeSentry, start_fake_sentry
from tests.conftest import INSTALLATION_UUID as INSTALLATION
from tests.conftest import SENTRY_APP_ID as APP_ID
from tests.conftest import SENTRY_SECRET as SECRET
from tests.conftest import SENTRY_TOKEN as TOKEN

MULTI_PROJECT = {"detail": "You do not have the multi project stream feature enabled"}
NEXT_LINK = re.compile(r'<(?P<url>[^>]+)>; rel="next"; results="(?P<results>true|false)"; '
                       r'cursor="(?P<cursor>[^"]+)"')


@pytest.fixture(scope="module")
def inbox(fake_sentry: FakeSentry) -> Iterator[WebhookInbox]:
    """The session's fake Sentry delivers to this module's own receiver while the module runs."""
    receiver = WebhookInbox().start()
    previous, fake_sentry.webhooks.url = fake_sentry.webhooks.url, receiver.url
    yield receiver
    fake_sentry.webhooks.url = previous
    receiver.stop()


@pytest.fixture
def fake(fake_sentry: FakeSentry, inbox: WebhookInbox) -> FakeSentry:
    fake_sentry.reset()  # every switch back to its default, no issues
    inbox.clear()
    return fake_sentry


@pytest.fixture(scope="module")
def http(fake_sentry: FakeSentry) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{fake_sentry.url}/api/0/", headers={"Authorization": f"Bearer {TOKEN}"},
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


# ------------------------------------------------------------------ 3. older self-hosted versions


def test_legacy_event_alert_names_the_issue_only_in_its_urls(fake: FakeSentry, inbox: WebhookInbox) -> None:
    issue = fake.file_issue()
    fake.send_legacy_event_alert(issue["id"], rule="Old rule")
    _, alert = inbox.wait(2)
    assert alert.headers["sentry-hook-resource"] == "event_alert"
    assert alert.headers["sentry-hook-signature"] == hmac_sha256_hex(SECRET, alert.body)
    body = alert.json()
    assert (body["action"], body["actor"]) == ("triggered", SENTRY_ACTOR)
    assert body["data"]["triggered_rule"] == "Old rule"
    event = body["data"]["event"]
    assert "issue_id" not in event
    assert event["issue_url"] == f"{fake.url}/api/0/issues/{issue['id']}/"
    assert f"/issues/{issue['id']}/events/{event['event_id']}/" in event["web_url"]

    fake.legacy_event_alerts = True  # every alert of an old version looks so
    assert "issue_id" not in fake.trigger_alert(issue["id"])
    assert fake.trigger_alert(issue["id"], legacy=False)["issue_id"] == issue["id"]


def test_linking_an_issue_twice_is_a_500_before_late_2024(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    path = f"sentry-app-installations/{INSTALLATION}/external-issues/"
    body = {"issueId": int(issue["id"]), "webUrl": "https://jira.example.com/browse/PAY-1",
            "project": "PAY", "identifier": "PAY-1"}
    first = http.post(path, json=body).json()
    fake.external_issue_upsert = False
    again = http.post(path, json={**body, "identifier": "PAY-2"})
    assert again.status_code == 500
    assert again.json()["detail"] == "Internal Error"
    assert re.fullmatch(r"[0-9a-f]{32}", again.json()["errorId"])
    assert fake.external_issues(issue["id"]) == [first]  # the first link stays as it was

    # Real Sentry lists an issue's links, and deleting one lets the next post create it anew.
    listed = http.get(f"organizations/acme/issues/{issue['id']}/external-issues/")
    assert listed.json() == [first]
    assert http.get(f"issues/{issue['id']}/external-issues/").json() == [first]
    assert http.delete(f"{path}{first['id']}/").status_code == 204
    gone = http.delete(f"{path}{first['id']}/")
    assert (gone.status_code, gone.content) == (404, b"")
    relinked = http.post(path, json={**body, "identifier": "PAY-2"})
    assert relinked.status_code == 200
    assert relinked.json()["id"] != first["id"]
    assert relinked.json()["displayName"] == "PAY#PAY-2"


def test_no_unresolved_webhooks_before_may_2024(fake: FakeSentry) -> None:
    issue = fake.file_issue()
    fake.person_resolve(issue["id"])
    fake.unresolved_webhooks = False
    fake.regress(issue["id"])
    assert fake.issue(issue["id"])["substatus"] == "regressed"
    assert [action for _, action, _ in hooks(fake)] == ["created", "resolved"]


# ------------------------------------------------------------------ 4. base URLs: a path prefix, a region


def test_self_hosted_under_a_path_and_saas_web_links_on_the_organisation_host() -> None:
    fake = start_fake_sentry(token=TOKEN, client_secret=SECRET, path_prefix="/sentry/",
                             organization_url="https://acme.sentry.io")
    try:
        assert fake.url == f"{fake.origin}/sentry"
        issue = fake.file_issue()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        listed = httpx.get(f"{fake.url}/api/0/organizations/acme/issues/", headers=auth, params={"limit": 1})
        assert ids(listed) == {issue["id"]}
        assert listed.headers["x-sentry-rate-limit-limit"].isdigit()
        next_page = NEXT_LINK.search(listed.headers["link"])
        assert next_page is not None
        assert next_page["url"].startswith(f"{fake.url}/api/0/organizations/acme/issues/?")
        # A client that drops the prefix reaches no API.
        assert httpx.get(f"{fake.origin}/api/0/organizations/acme/issues/", headers=auth).status_code == 404

        assert issue["permalink"] == f"https://acme.sentry.io/issues/{issue['id']}/"
        ((_, created),) = fake.emitted()
        data = created["data"]["issue"]
        assert data["url"] == f"{fake.url}/api/0/organizations/acme/issues/{issue['id']}/"
        assert data["web_url"] == issue["permalink"]
        assert data["project_url"] == f"https://acme.sentry.io/issues/?project={issue['project']['id']}"
        alert = fake.trigger_alert(issue["id"])
        assert alert["issue_url"].startswith(f"{fake.url}/api/0/")
        assert alert["web_url"].startswith(f"https://acme.sentry.io/issues/{issue['id']}/events/")
        links = httpx.get(f"{fake.url}/api/0/organizations/acme/", headers=auth).json()["links"]
        assert links == {"organizationUrl": "https://acme.sentry.io", "regionUrl": fake.url}
    finally:
        fake.stop()


# ------------------------------------------------------------------ 5. installations


def test_installation_webhooks_are_signed_and_shaped_as_sentry_sends_them(
    fake: FakeSentry, inbox: WebhookInbox
) -> None:
    fake.uninstall(by="bob@example.com")
    fake.install(by="carol@example.com", installation_uuid="11111111-2222-4333-8444-555555555555")
    deleted, created = inbox.wait(2)
    for hook in (deleted, created):
        assert hook.headers["sentry-hook-resource"] == "installation"
        assert hook.headers["sentry-hook-signature"] == hmac_sha256_hex(SECRET, hook.body)
    assert deleted.json() == {
        "action": "deleted",
        "installation": {"uuid": INSTALLATION},
        "data": {"installation": {"app": {"uuid": APP_ID, "slug": "syncer", "sentryAppId": 1},
                                  "organization": {"slug": "acme", "id": 1},
                                  "uuid": INSTALLATION, "status": "pending_deletion"}},
        "actor": {"type": "user", "id": 2, "name": "Bob Example"},
    }
    body = created.json()
    new_uuid = "11111111-2222-4333-8444-555555555555"
    assert (body["action"], body["installation"]["uuid"]) == ("created", new_uuid)
    assert body["data"]["installation"]["status"] == "installed"
    assert fake.installation_uuid == new_uuid


def test_an_uninstalled_installation_answers_as_sentry_does(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    fake.uninstall()
    before = len(fake.emitted())
    link = {"issueId": int(issue["id"]), "webUrl": "https://jira.example.com/browse/PAY-1",
            "project": "PAY", "identifier": "PAY-1"}
    external = f"sentry-app-installations/{INSTALLATION}/external-issues/"
    posted = http.post(external, json=link)
    assert posted.status_code == 404
    assert posted.json() == {"detail": "Could not find given sentry app installation"}
    assert http.delete(f"{external}1/").status_code == 404
    refused = http.get(f"organizations/acme/issues/{issue['id']}/")
    assert refused.status_code == 403
    assert refused.json() == {"detail": "You do not have permission to perform this action."}
    fake.person_resolve(issue["id"])
    assert len(fake.emitted()) == before  # no webhooks for an app that is not installed

    fake.install()
    assert http.post(external, json=link).status_code == 200
    fake.uninstall(revoke_token=True)
    gone = http.get(f"organizations/acme/issues/{issue['id']}/")
    assert (gone.status_code, gone.json()) == (401, {"detail": "Invalid token"})


# ------------------------------------------------------------------ 6. merges


def test_a_merged_away_id_reads_as_the_issue_it_was_merged_into(
    fake: FakeSentry, http: httpx.Client
) -> None:
    source = fake.file_issue(title="KeyError: 'plan'", count=3, tags={"customer": {"acme": 2, "globex": 1}})
    target = fake.file_issue(title="KeyError: plan", count=5, tags={"customer": {"acme": 4}})
    fake.person_comment(source["id"], "seen in checkout")
    link = {"issueId": int(source["id"]), "webUrl": "https://jira.example.com/browse/PAY-1",
            "project": "PAY", "identifier": "PAY-1"}
    external = f"sentry-app-installations/{INSTALLATION}/external-issues/"
    assert http.post(external, json=link).status_code == 200
    before = len(fake.emitted())

    merged = fake.merge([source["id"]], target["id"])
    assert len(fake.emitted()) == before  # Sentry sends no webhook for a merge
    assert (merged["id"], merged["count"]) == (target["id"], "8")
    read = http.get(f"organizations/acme/issues/{source['id']}/")
    assert read.status_code == 200
    assert read.json()["id"] == target["id"]  # another id than the one asked for
    assert http.get(f"issues/{source['id']}/").json()["id"] == target["id"]
    notes = http.get(f"issues/{source['id']}/notes/").json()
    assert [n["data"]["text"] for n in notes] == ["seen in checkout"]
    tags = http.get(f"organizations/acme/issues/{target['id']}/tags/").json()
    assert {v["value"]: v["count"] for v in tags[0]["topValues"]} == {"acme": 6, "globex": 1}
    assert fake.external_issues(target["id"]) == []  # the source's link went with it

    # A write to the old id lands on the target; lookups by id no longer find the old one.
    written = http.put(f"organizations/acme/issues/{source['id']}/", json={"status": "resolved"})
    assert written.json()["id"] == target["id"]
    assert fake.issue(target["id"])["status"] == "resolved"
    listing = "organizations/acme/issues/"
    assert ids(http.get(listing, params=[("group", source["id"]), ("group", target["id"])])) == {target["id"]}
    assert ids(http.get(listing, params={"query": ""})) == {target["id"]}
    assert http.put(listing, params={"id": source["id"]}, json={"status": "unresolved"}).status_code == 204
    assert http.post(external, json=link).status_code == 404  # the external-issue endpoint does not redirect


def test_bulk_merge_keeps_the_issue_seen_most(fake: FakeSentry, http: httpx.Client) -> None:
    small = fake.file_issue(count=2)
    big = fake.file_issue(count=9)
    other = fake.file_issue(project="web-app")
    answer = http.put("organizations/acme/issues/", params=[("id", small["id"]), ("id", big["id"])],
                      json={"merge": 1})
    assert answer.json() == {"merge": {"parent": big["id"], "children": [small["id"]]}}
    assert fake.issue(small["id"])["id"] == big["id"]
    across = http.put("organizations/acme/issues/", params=[("id", big["id"]), ("id", other["id"])],
                      json={"merge": 1})
    assert across.status_code == 400
    assert across.json() == {"detail": "Merging across multiple projects is not supported"}
    with pytest.raises(ValueError, match="multiple projects"):
        fake.merge([other["id"]], big["id"])


# ------------------------------------------------------------------ 7. tags: top values, and all of one key


def test_tags_list_only_the_top_values_and_the_values_endpoint_pages_through_all(
    fake: FakeSentry, http: httpx.Client
) -> None:
    customers = {f"customer-{n:02d}": 100 - n for n in range(12)} | {"rare-corp": 1}
    issue = fake.file_issue(count=sum(customers.values()), tags={"customer": customers, "env": "prod"})
    tags_path = f"organizations/acme/issues/{issue['id']}/tags/"
    (customer, env) = http.get(tags_path).json()
    assert (customer["key"], env["key"]) == ("customer", "env")
    top = [v["value"] for v in customer["topValues"]]
    assert top == [f"customer-{n:02d}" for n in range(10)]  # the ten most seen, most seen first
    assert customer["totalValues"] == sum(customers.values())  # every event counts, rarer values too
    assert "rare-corp" not in top
    assert len(http.get(tags_path, params={"key": "customer"}).json()[0]["topValues"]) == 9
    assert len(http.get(tags_path, params={"limit": 3}).json()[0]["topValues"]) == 3

    # The values of one key page through everything, following the Link header's cursor.
    seen: list[str] = []
    params: dict[str, Any] = {"per_page": 5, "sort": "count"}
    while True:
        page = http.get(f"{tags_path}customer/values/", params=params)
        assert page.status_code == 200
        seen += [v["value"] for v in page.json()]
        following = NEXT_LINK.search(page.headers["link"])
        assert following is not None
        if following["results"] != "true":
            break
        params["cursor"] = following["cursor"]
    assert seen == list(customers)  # by count, every value, the rare one last
    newest_first = http.get(f"{tags_path}customer/values/").json()  # the default order: -id
    assert len(newest_first) == len(customers)
    assert {k: newest_first[0][k] for k in ("key", "value", "name", "count")} == {
        "key": "customer", "value": "rare-corp", "name": "rare-corp", "count": 1}
    assert newest_first[0]["firstSeen"].endswith("Z")
    # A search on the rare value still finds the issue.
    searched = http.get("organizations/acme/issues/", params={"query": "customer:rare-corp"})
    assert ids(searched) == {issue["id"]}
    assert http.get(f"{tags_path}nope/values/").status_code == 404


# ------------------------------------------------------------------ 8. statuses and substatuses


def last_hook(fake: FakeSentry) -> dict[str, Any]:
    return fake.emitted()[-1][1]


def test_archived_until_a_condition_is_met_counts_down_then_escalates(
    fake: FakeSentry, http: httpx.Client
) -> None:
    issue = fake.file_issue(level="info")  # priority low
    path = f"organizations/acme/issues/{issue['id']}/"
    archived = http.put(path, json={"status": "ignored", "statusDetails": {"ignoreCount": 5}}).json()
    assert archived["substatus"] == "archived_until_condition_met"
    assert archived["statusDetails"] == {
        "ignoreCount": 5, "ignoreUntil": None, "ignoreUserCount": None, "ignoreUserWindow": None,
        "ignoreWindow": None, "actor": archived["statusDetails"]["actor"],
    }
    assert archived["statusDetails"]["actor"]["name"] == "syncer"  # our app's proxy user
    ignored, alias = fake.emitted()[-2:]
    assert [ignored[1]["action"], alias[1]["action"]] == ["ignored", "archived"]
    assert ignored[1]["data"]["issue"]["statusDetails"]["ignoreCount"] == 5

    assert fake.record_events(issue["id"], 2)["statusDetails"]["ignoreCount"] == 3  # what is left to go
    escalated = fake.record_events(issue["id"], 3)
    assert (escalated["status"], escalated["substatus"], escalated["statusDetails"]) == (
        "unresolved", "escalating", {})
    assert escalated["priority"] == "medium"  # an escalation raises an unlocked priority a level
    hook = last_hook(fake)
    assert (hook["action"], hook["actor"], hook["data"]["issue"]["substatus"]) == (
        "unresolved", SENTRY_ACTOR, "escalating")


def test_other_snooze_conditions(fake: FakeSentry, http: httpx.Client) -> None:
    by_users = fake.file_issue()
    fake.person_archive(by_users["id"], "archived_until_condition_met",
                        details={"ignoreUserCount": 2, "ignoreUserWindow": 60})
    assert fake.issue(by_users["id"])["statusDetails"]["ignoreUserWindow"] == 60
    assert fake.record_events(by_users["id"], new_users=1)["status"] == "ignored"
    assert fake.record_events(by_users["id"], new_users=1)["substatus"] == "escalating"

    for_a_while = fake.file_issue()
    path = f"organizations/acme/issues/{for_a_while['id']}/"
    details = http.put(path, json={"status": "ignored", "statusDetails": {"ignoreDuration": 30}}).json()

    until = datetime.fromisoformat(details["statusDetails"]["ignoreUntil"].replace("Z", "+00:00"))
    assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)

    expired = fake.file_issue()
    fake.person_archive(expired["id"], "archived_until_condition_met",
                        details={"ignoreUntil": ago(minutes=1).isoformat()})
    before = len(fake.emitted())
    woke = fake.record_events(expired["id"])
    assert (woke["status"], woke["substatus"]) == ("unresolved", "ongoing")
    assert len(fake.emitted()) == before  # a snooze that ran out un-archives without a webhook
    fresh = f"organizations/acme/issues/{fake.file_issue()['id']}/"
    bad = http.put(fresh, json={"status": "ignored", "statusDetails": {"ignoreCount": "many"}})
    assert bad.status_code == 400


def test_every_substatus_can_be_driven(fake: FakeSentry) -> None:
    issue = fake.file_issue()
    assert issue["substatus"] == "new"
    fake.person_archive(issue["id"], "archived_forever")
    assert (fake.issue(issue["id"])["substatus"], fake.issue(issue["id"])["statusDetails"]) == (
        "archived_forever", {})
    fake.person_unresolve(issue["id"])
    fake.person_archive(issue["id"], "archived_until_escalating")
    assert fake.issue(issue["id"])["statusDetails"] == {"ignoreUntilEscalating": True}
    assert fake.escalate(issue["id"])["substatus"] == "escalating"
    before = len(fake.emitted())
    assert fake.become_ongoing(issue["id"])["substatus"] == "ongoing"
    assert len(fake.emitted()) == before  # new/regressed/escalating -> ongoing sends nothing
    fake.person_resolve(issue["id"])
    regressed = fake.record_events(issue["id"])
    assert (regressed["status"], regressed["substatus"]) == ("unresolved", "regressed")
    assert (last_hook(fake)["action"], last_hook(fake)["data"]["issue"]["substatus"]) == (
        "unresolved", "regressed")


def test_resolutions_and_their_webhooks(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    path = f"organizations/acme/issues/{issue['id']}/"

    def resolution() -> tuple[str, dict[str, Any]]:
        hook = last_hook(fake)
        assert hook["action"] == "resolved"
        return hook["data"]["resolution_type"], hook["data"]["issue"]["statusDetails"]

    fake.person_resolve(issue["id"], in_release="billing@1.2.0", by="bob@example.com")
    kind, details = resolution()
    assert (kind, details["inRelease"], details["actor"]["email"]) == ("in_release", "billing@1.2.0",
                                                                       "bob@example.com")
    fake.person_resolve(issue["id"], in_next_release=True)
    assert resolution()[0] == "in_next_release"
    assert resolution()[1]["inNextRelease"] is True
    in_commit = {"inCommit": {"commit": "a1b2c3", "repository": "acme/api"}}
    answer = http.put(path, json={"status": "resolved", "statusDetails": in_commit})
    assert answer.json()["statusDetails"]["inCommit"]["id"] == "a1b2c3"
    kind, details = resolution()
    assert kind == "in_commit"
    assert "actor" not in details  # a commit resolution names the commit, not who set it
    fake.person_unresolve(issue["id"])
    fake.resolve_by_commit(issue["id"], "d4e5f6")
    assert resolution()[0] == "with_commit"
    assert last_hook(fake)["actor"] == SENTRY_ACTOR
    fake.person_unresolve(issue["id"])
    fake.person_resolve(issue["id"])
    assert resolution() == ("now", {})


# ------------------------------------------------------------------ 9. priority


def test_priority_is_set_locked_and_sends_no_webhook(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue(level="warning")
    assert (issue["priority"], issue["priorityLockedAt"]) == ("medium", None)
    path = f"organizations/acme/issues/{issue['id']}/"
    before = len(fake.emitted())
    changed = http.put(path, json={"priority": "low"}).json()
    assert changed["priority"] == "low"
    assert changed["priorityLockedAt"].endswith("Z")
    assert len(fake.emitted()) == before  # Sentry has no webhook for a priority change
    by_priority = http.get("organizations/acme/issues/", params={"query": "issue.priority:low"})
    assert ids(by_priority) == {issue["id"]}
    assert http.put(path, json={"priority": "urgent"}).status_code == 400
    fake.person_archive(issue["id"], "archived_until_escalating")
    assert fake.escalate(issue["id"])["priority"] == "low"  # a person's choice stays
    fake.person_set_priority(issue["id"], "high")
    assert fake.issue(issue["id"])["priority"] == "high"
    assert len(fake.emitted()) == before + 3  # ignored, archived, unresolved: none for the priorities

    fake.issue_priority = False  # versions before issue priority
    old = http.put(path, json={"priority": "low"})
    assert old.status_code == 200
    assert "priority" not in old.json()
    fake.issue_priority = True
    assert fake.issue(issue["id"])["priority"] == "high"  # the older version ignored the field


# ------------------------------------------------------------------ 10. whole issue vs delta


def test_single_put_answers_the_issue_and_bulk_put_a_delta(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    single = http.put(f"organizations/acme/issues/{issue['id']}/", json={"status": "resolved"}).json()
    assert single == fake.issue(issue["id"])
    listing = "organizations/acme/issues/"
    bulk = http.put(listing, params={"id": issue["id"]}, json={"status": "unresolved"}).json()
    assert bulk == {"status": "unresolved", "statusDetails": {}}
    archived = http.put(listing, params={"id": issue["id"]},
                        json={"status": "ignored", "substatus": "archived_until_escalating"}).json()
    assert archived == {"status": "ignored", "statusDetails": {"ignoreUntilEscalating": True},
                        "inbox": None, "substatus": "archived_until_escalating"}
    prioritised = http.put(listing, params={"id": issue["id"]}, json={"priority": "low"})
    assert prioritised.json() == {"priority": "low"}
    assigned = http.put(listing, params={"id": issue["id"]}, json={"assignedTo": "team:1"}).json()
    assert assigned == {"assignedTo": {"type": "team", "id": "1", "name": "payments"}}


# ------------------------------------------------------------------ 11. comments


def test_a_persons_comments_arrive_as_comment_webhooks(fake: FakeSentry, inbox: WebhookInbox) -> None:
    issue = fake.file_issue(project="billing-api")
    note = fake.person_comment(issue["id"], "looking into it", by="bob@example.com")
    fake.person_edit_comment(issue["id"], note["id"], "fixed in 1.2", by="bob@example.com")
    with pytest.raises(ValueError):
        fake.person_edit_comment(issue["id"], note["id"], "not mine", by="carol@example.com")
    fake.person_delete_comment(issue["id"], note["id"], by="bob@example.com")
    _, created, updated, deleted = inbox.wait(4)
    bob = {"type": "user", "id": 2, "name": "Bob Example"}
    expected_text = {"created": "looking into it", "updated": "fixed in 1.2", "deleted": "fixed in 1.2"}
    for hook in (created, updated, deleted):
        assert hook.headers["sentry-hook-resource"] == "comment"
        assert hook.headers["sentry-hook-signature"] == hmac_sha256_hex(SECRET, hook.body)
        body = hook.json()
        assert body["actor"] == bob
        assert body["data"] == {"comment_id": int(note["id"]), "issue_id": int(issue["id"]),
                                "project_slug": "billing-api", "timestamp": note["dateCreated"],
                                "comment": expected_text[body["action"]]}
    assert [h.json()["action"] for h in (created, updated, deleted)] == ["created", "updated", "deleted"]
    assert fake.notes(issue["id"]) == []


def test_notes_our_token_writes_come_back_with_our_app_as_actor(fake: FakeSentry, http: httpx.Client) -> None:
    issue = fake.file_issue()
    theirs = fake.person_comment(issue["id"], "a person's note")
    notes = f"organizations/acme/issues/{issue['id']}/notes/"
    ours = http.post(notes, json={"text": "Jira ticket: PAY-1"}).json()
    edited = http.put(f"{notes}{ours['id']}/", json={"text": "Jira ticket: PAY-2"})
    assert (edited.status_code, edited.json()["data"]) == (200, {"text": "Jira ticket: PAY-2"})
    assert http.put(f"{notes}{theirs['id']}/", json={"text": "hijack"}).status_code == 404  # not ours
    assert http.put(f"{notes}{ours['id']}/", json={}).status_code == 400
    assert http.delete(f"issues/{issue['id']}/notes/{ours['id']}/").status_code == 204
    assert http.delete(f"{notes}{ours['id']}/").status_code == 404
    ours_app = {"type": "application", "id": APP_ID, "name": "syncer"}
    comment_hooks = [p for resource, p in fake.emitted() if resource == "comment"]
    assert [(p["action"], p["actor"]) for p in comment_hooks] == [
        ("created", {"type": "user", "id": 1, "name": "Alice Example"}),
        ("created", ours_app), ("updated", ours_app), ("deleted", ours_app),
    ]
    assert comment_hooks[2]["data"]["comment"] == "Jira ticket: PAY-2"
    assert [n["data"]["text"] for n in fake.notes(issue["id"])] == ["a person's note"]
