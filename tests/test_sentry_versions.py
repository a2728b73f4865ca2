"""Sentry as older self-hosted versions and other generations of webhooks send it, through the real
stack: the fake Sentry with a version's switch on, the real web app, a real worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.store import installations
from syncer.store.schema import DeliveryState
from tests.conftest import post_sentry
from tests.harness import deliveries, letters, link_of, private_stack, wait_for
from tests.test_cli import run
from tests.test_intake import post_jira
from tests.test_tickets import wait_delivery_done, wait_ticket


@pytest.fixture
def sentry(stack: dict[str, Any], fake_sentry: FakeSentry) -> Iterator[FakeSentry]:
    """The session's fake Sentry; whatever version switch a test flips is put back afterwards."""
    yield fake_sentry
    fake_sentry.reset()


def _web_url(fake: FakeSentry) -> str:
    """The web app the fake delivers its webhooks to."""
    assert fake.webhooks.url is not None
    return fake.webhooks.url.removesuffix("/webhooks/sentry")


# --- event_alert before 2022 ------------------------------------------------------------------------


def test_an_alert_of_before_2022_names_its_issue_by_url_and_gets_its_ticket(
    sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    sentry.webhooks.enabled = False  # only the alert reaches syncer: the issue's ticket must come from it
    issue = sentry.file_issue(project="billing-api", title="KeyError: 'plan' (old Sentry)")
    sentry.webhooks.enabled = True
    sentry.legacy_event_alerts = True
    alert = sentry.trigger_alert(issue["id"])
    assert "issue_id" not in alert  # the body as Sentry before getsentry/sentry#31222 sends it

    ticket = wait_ticket(fake_jira, engine, issue["id"], timeout=60)

    assert ticket["summary"].startswith("KeyError")
    (delivery,) = wait_delivery_done(engine, timeout=60)
    assert delivery.resource == "event_alert" and delivery.state == DeliveryState.DONE
    assert letters(engine) == []


# --- bodies of another generation -------------------------------------------------------------------

# Sentry's legacy WebHooks plugin (getsentry/sentry sentry_plugins/webhooks, get_group_data).
LEGACY_PLUGIN_BODY = {
    "id": "4100000001",
    "project": "billing-api",
    "project_name": "billing-api",
    "project_slug": "billing-api",
    "logger": None,
    "level": "error",
    "culprit": "billing.invoices in compute_total",
    "message": "ZeroDivisionError: division by zero",
    "url": "https://sentry.example.com/organizations/acme/issues/4100000001/?referrer=webhooks_plugin",
    "triggering_rules": ["Send a notification for new issues"],
    "event": {"event_id": "612e5ffe74b9421f8e0f74da884ed301", "level": "error", "tags": []},
}

# What a Jira workflow post function ("trigger a webhook") sends: Jira 5's body, no webhookEvent.
JIRA5_TRANSITION_BODY = {
    "timestamp": 1764201600000,
    "transition": {"workflowId": 20347, "workflowName": "Software Workflow", "transitionId": 31,
                   "transitionName": "Done", "from_status": "To Do", "to_status": "Done"},
    "comment": "",
    "user": {"name": "someone", "key": "someone"},
    "issue": {"id": "10001", "key": "OPS-1",
              "fields": {"status": {"name": "Done", "statusCategory": {"key": "done"}}}},
}


def test_signed_bodies_of_another_generation_are_refused_at_intake_naming_the_format(
    stack: dict[str, Any], engine: Engine
) -> None:
    web = stack["web"].url
    answer = post_sentry(web, LEGACY_PLUGIN_BODY, resource="issue")
    assert answer.status_code == 422
    assert "legacy WebHooks plugin" in answer.json()["detail"]

    answer = post_jira(web, JIRA5_TRANSITION_BODY)
    assert answer.status_code == 422
    assert "Jira 5" in answer.json()["detail"] and "post-function" in answer.json()["detail"]

    # Nothing stored, so nothing for a worker to turn into a dead letter.
    assert deliveries(engine) == [] and letters(engine) == []
    assert link_of(engine, LEGACY_PLUGIN_BODY["id"]) is None
    # The platform's own bodies still pass, whatever their data holds.
    platform = {"action": "critical", "installation": {"uuid": "x"}, "actor": {},
                "data": {"project_slug": "billing-api", "metric_alert": {}}}
    assert post_sentry(web, platform, resource="metric_alert").status_code == 202
    wait_for(lambda: [d.state for d in deliveries(engine)] == [DeliveryState.IGNORED], 30,
             what="the platform body to be recorded as ignored")



# --- installations ------------------------------------------------------------------------------------


def _installation_webhook(fake: FakeSentry, action: str, status: str) -> dict[str, Any]:
    """`installation.<action>` as Sentry sends it (SentryAppInstallationSerializer in data), by hand:
    the fake itself stops serving once uninstalled, and here the token outlives the installation."""
    installation = {"app": {"uuid": fake.app_id, "slug": fake.app_slug, "sentryAppId": 1},
                    "organization": {"slug": fake.org, "id": 1}, "uuid": fake.installation_uuid,
                    "status": status}
    return {"action": action, "installation": {"uuid": fake.installation_uuid},
            "data": {"installation": installation},
            "actor": {"type": "user", "id": 2, "name": "Bob Example"}}


def test_a_deleted_installation_stops_external_issue_links_until_installed_again(
    sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, process_env: dict[str, str]
) -> None:
    web = _web_url(sentry)
    before = sentry.file_issue(project="billing-api", title="RuntimeError: before the uninstall")
    wait_ticket(fake_jira, engine, before["id"], timeout=60)
    assert len(sentry.external_issues(before["id"])) == 1

    answer = post_sentry(web, _installation_webhook(sentry, "deleted", "pending_deletion"),
                         resource="installation")
    assert answer.status_code == 202
    wait_for(lambda: (found := installations.state(engine, sentry.installation_uuid)) is not None
             and found.deleted_at is not None, 30, what="the deletion to be recorded")

    ready = httpx.get(f"{web}/readyz", timeout=10)
    assert ready.status_code == 200
    assert "deleted" in ready.json()["detail"]["sentry_installation"]
    checked = run(process_env, "check-config")
    assert checked.returncode == 1
    assert f"installation {sentry.installation_uuid} deleted" in checked.stderr

    during = sentry.file_issue(project="billing-api", title="RuntimeError: while uninstalled")
    ticket = wait_ticket(fake_jira, engine, during["id"], timeout=60)
    assert sentry.external_issues(during["id"]) == []  # no call that needs the installation
    (note,) = sentry.notes(during["id"])
    assert ticket["key"] in note["data"]["text"]
    assert letters(engine) == []

    sentry.install()  # installation.created, signed by the fake
    wait_for(lambda: (found := installations.state(engine, sentry.installation_uuid)) is not None
             and found.deleted_at is None, 30, what="the new installation to be recorded")
    assert "detail" not in httpx.get(f"{web}/readyz", timeout=10).json()
    after = sentry.file_issue(project="billing-api", title="RuntimeError: installed again")
    wait_ticket(fake_jira, engine, after["id"], timeout=60)
    assert len(sentry.external_issues(after["id"])) == 1
    assert run(process_env, "check-config").returncode == 0


# --- external issues before late 2024 -----------------------------------------------------------------


def test_an_ambiguous_external_issue_post_on_a_version_before_the_upsert_ends_linked(
    sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    sentry.external_issue_upsert = False  # before getsentry/sentry#79844: posting twice is a 500
    # The first post is made, then the connection drops: the worker cannot know it went through.
    sentry.faults.append(Fault("POST", r"/external-issues/$", status=201, after=True, drop=True))
    issue = sentry.file_issue(project="billing-api", title="RuntimeError: linked over a flaky network")

    ticket = wait_ticket(fake_jira, engine, issue["id"], timeout=90)

    (external,) = sentry.external_issues(issue["id"])
    assert external["displayName"].endswith(ticket["key"])
    posts = sentry.calls.calls("POST", r"/external-issues/$")
    assert len(posts) == 2  # the ambiguous one, and the retry Sentry refused with its 500
    assert letters(engine) == []


# --- Sentry's issue priority ----------------------------------------------------------------------


def test_sentry_priority_sets_the_ticket_priority_and_an_escalation_raises_it(
    sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    # An error (by level "High") that Sentry rates low: [priorities] low = "Low" wins over the level.
    issue = sentry.file_issue(project="billing-api", title="RuntimeError: rare and harmless", priority="low")
    ticket = wait_ticket(fake_jira, engine, issue["id"], timeout=60)
    assert fake_jira.issue(ticket["key"])["priority"] == "Low"

    sentry.person_archive(issue["id"], "archived_until_escalating")
    sentry.escalate(issue["id"])  # Sentry raises the priority a level: low -> medium (issues/priority.py)
    assert sentry.issue(issue["id"])["priority"] == "medium"

    wait_for(lambda: fake_jira.issue(ticket["key"])["priority"] == "Medium", 60,
             what="the ticket's priority to follow Sentry's")
    wait_for(lambda: (link := link_of(engine, issue["id"])) is not None and link.sentry_priority == "medium",
             30, what="the link to record the priority followed")
    assert letters(engine) == []


# --- a region's API host, the organisation's web host, a path prefix ----------------------------------


@pytest.fixture(scope="module")
def regional(
    environment: None, engine: Engine, process_env: dict[str, str], fake_jira: FakeJira,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FakeSentry]:
    """A Sentry whose API is on a host of its own under a path (as a region's, or a self-hosted
    install behind a proxy at /sentry/) while people open issues on the organisation's host, and a
    worker configured for it: SYNCER_SENTRY_URL the API's base, SYNCER_SENTRY_WEB_URL the web's."""
    from syncer.fakes.sentry import start_fake_sentry
    from tests.conftest import INSTALLATION_UUID, ORG, SENTRY_APP_ID, SENTRY_SECRET, SENTRY_TOKEN

    fake = start_fake_sentry(org=ORG, token=SENTRY_TOKEN, client_secret=SENTRY_SECRET, app_id=SENTRY_APP_ID,
                             installation_uuid=INSTALLATION_UUID, path_prefix="/sentry/",
                             organization_url=ORGANIZATION_URL)
    env = {**process_env, "SYNCER_SENTRY_URL": fake.url, "SYNCER_SENTRY_WEB_URL": ORGANIZATION_URL}
    try:
        with private_stack(engine, env, fake, fake_jira, tmp_path_factory.mktemp("regional"),
                           "regional-worker"):
            yield fake
    finally:
        fake.stop()


ORGANIZATION_URL = "https://acme.sentry.io"


def test_a_regional_or_prefixed_sentry_files_tickets_that_link_to_the_organisations_pages(
    clean: None, regional: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = regional.file_issue(project="billing-api", title="RuntimeError: filed in the EU")

    ticket = wait_ticket(fake_jira, engine, issue["id"], timeout=60)

    # Every call went to the API's base, under its path.
    assert all(call.path.startswith("/sentry/api/0/") for call in regional.calls.calls())
    assert len(regional.external_issues(issue["id"])) == 1
    # The links a person follows from Jira go to the organisation's host, not the API's.
    (remote,) = fake_jira.remote_links(ticket["key"])
    assert remote["object"]["url"].startswith(f"{ORGANIZATION_URL}/")
    assert ORGANIZATION_URL in ticket["description"] and regional.url not in ticket["description"]
