"""Sentry as older self-hosted versions and other generations of webhooks send it, through the real
stack: the fake Sentry with a version's switch on, the real web app, a real worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.store.schema import DeliveryState
from tests.conftest import post_sentry
from tests.harness import deliveries, letters, link_of, wait_for
from tests.test_intake import post_jira
from tests.test_tickets import wait_delivery_done, wait_ticket


@pytest.fixture
def sentry(stack: dict[str, Any], fake_sentry: FakeSentry) -> Iterator[FakeSentry]:
    """The session's fake Sentry; whatever version switch a test flips is put back afterwards."""
    yield fake_sentry
    fake_sentry.reset()


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

