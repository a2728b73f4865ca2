"""Jira Data Center 9 through the real stack, on its own terms: a personal access token, `/search` with
`startAt`/`total`, people by `name`, and webhooks that are not signed (the secret rides in the URL as
`?token=`) and carry no delivery identifier. The shared tests marked BOTH_DEPLOYMENTS run the create,
close, reopen and reconcile paths here as well; these tests check what only Data Center does."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from syncer.fakes.base import FakeServer
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.store.schema import DeliveryState
from tests.conftest import JIRA_WEBHOOK_SECRET
from tests.harness import DATA_CENTER, deliveries, link_of
from tests.test_status_sync import linked_issue, settle, wait_jira, wait_sentry

pytestmark = pytest.mark.parametrize("fake_jira", [pytest.param(DATA_CENTER, id="datacenter")], indirect=True)


def test_a_ticket_made_closed_and_reopened_on_data_center_goes_by_its_rules(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    assert fake_jira.deployment == "Server"  # what Data Center calls itself in serverInfo
    issue_id, key = linked_issue(fake_sentry, fake_jira, engine)

    fake_jira.person_transition(key, "Done")  # a person, named by `name` in the webhook
    wait_sentry(fake_sentry, issue_id, "resolved")
    settle(engine, fake_sentry, fake_jira)
    fake_sentry.person_unresolve(issue_id)
    wait_jira(fake_jira, key, "To Do")
    settle(engine, fake_sentry, fake_jira)

    # Search went to Data Center's endpoint (Cloud's /search/jql is a 404 there).
    assert fake_jira.calls.count(path=r"/search/jql") == 0
    jira_rows = deliveries(engine, "jira")
    assert jira_rows and all(d.state not in DeliveryState.UNFINISHED for d in jira_rows)
    # No X-Atlassian-Webhook-Identifier on Data Center: each delivery is known by its body's hash.
    assert all(d.delivery_key.startswith("sha256:") for d in jira_rows)
    # Our own transition back to To Do was recognised as ours when Jira echoed it (user `name`).
    assert any("our own" in d.outcome for d in jira_rows), [d.outcome for d in jira_rows]
    link = link_of(engine, issue_id)
    assert link is not None and (link.sentry_status, link.jira_status) == ("unresolved", "To Do")


def test_an_unsigned_data_center_webhook_needs_the_url_token_and_a_replay_is_a_duplicate(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, web: FakeServer
) -> None:
    _, key = linked_issue(fake_sentry, fake_jira, engine)
    fake_jira.webhooks.enabled = False
    before = len(deliveries(engine, "jira"))
    fake_jira.person_comment(key, "looked at it")  # a change syncer has nothing to do for
    body = json.dumps({
        "timestamp": 1_700_000_000_000, "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_commented", "user": {"name": "pat.person", "key": "JIRAUSER10001"},
        "issue": fake_jira.issue_json(key),
    }).encode()
    url = f"{web.url}/webhooks/jira"

    def post(query: str) -> httpx.Response:
        return httpx.post(url + query, content=body, headers={"Content-Type": "application/json"}, timeout=10)

    refused, guessed = post(""), post("?token=guess")
    first, again = post(f"?token={JIRA_WEBHOOK_SECRET}"), post(f"?token={JIRA_WEBHOOK_SECRET}")

    assert (refused.status_code, guessed.status_code) == (401, 401)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == {"delivery": first.json()["delivery"], "duplicate": True}
    assert len(deliveries(engine, "jira")) == before + 1


def test_a_data_center_10_webhook_signed_with_the_secret_is_taken_without_a_token(
    stack: dict[str, Any], engine: Engine, web: FakeServer
) -> None:
    from syncer.fakes.jira import start_fake_jira

    # Data Center 10 signs like Cloud (X-Hub-Signature); the URL then carries no token.
    signed = start_fake_jira(deployment=DATA_CENTER, pat="another-pat", version="10.3.1",
                             webhook_url=f"{web.url}/webhooks/jira", webhook_secret=JIRA_WEBHOOK_SECRET)
    try:
        signed.person_create("OPS", "from Data Center 10")
        assert signed.webhooks.drain(10)
        [(headers, _body, status)] = signed.webhooks.sent
    finally:
        signed.stop()
    assert status == 202 and headers["X-Hub-Signature"].startswith("sha256=")
    [row] = [d for d in deliveries(engine, "jira") if d.resource == "jira:issue_created"]
    assert row.delivery_key.startswith("sha256:")
