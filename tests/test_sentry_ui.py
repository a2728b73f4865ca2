"""Sentry's own screens (UI components) through the real stack: the fake Sentry sends the requests
its issue page and alert-rule editor send (signed, to the webhook URL's host), the real web app
answers them, and the real worker files what a form asks for in the fake Jira."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.policy import load_policy
from syncer.sentry import ui
from syncer.store.schema import Delivery, DeliveryState, LinkState
from tests.conftest import FIXTURES
from tests.harness import audit_of, deliveries, link_of, links_of, wait_for

POLICY = FIXTURES / "policies" / "service.toml"


@pytest.fixture
def screens(stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira) -> FakeSentry:
    """The integration's schema as an admin pasted it; people and projects the forms name."""
    fake_sentry.screens.schema = ui.schema(load_policy(POLICY), "https://syncer.example.com")
    fake_jira.add_user("acc-alice", "Alice", "alice@example.com")
    return fake_sentry


def quietly_filed(fake_sentry: FakeSentry, **fields: Any) -> dict[str, Any]:
    """An issue whose `issue.created` never reaches syncer, so only the form files it."""
    fake_sentry.webhooks.enabled = False
    try:
        return fake_sentry.file_issue(**fields)
    finally:
        fake_sentry.webhooks.enabled = True


def tickets_for(fake_jira: FakeJira, sentry_id: str) -> list[dict[str, Any]]:
    return [t for t in fake_jira.issues() if f"sentry-{sentry_id}" in t["labels"]]


def settled(engine: Engine) -> bool:
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    return bool(rows) and all(r.state not in DeliveryState.UNFINISHED for r in rows)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncer", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, check=False)


# --- the schema -----------------------------------------------------------------------------------


def test_schema_command_prints_a_schema_sentrys_validator_accepts(tmp_path: Path) -> None:
    env = {"SYNCER_CONFIG": str(POLICY), "SYNCER_PUBLIC_URL": "https://syncer.example.com"}
    done = run_cli("sentry-app", "schema", env=env)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert ui.problems("https://syncer.example.com", schema) == []
    kinds = [element["type"] for element in schema["elements"]]
    assert kinds == ["issue-link", "alert-rule-action"]
    create = schema["elements"][0]["create"]
    assert create["uri"] == ui.CREATE
    defaults = {f["name"]: f.get("default") for f in create["required_fields"] + create["optional_fields"]}
    assert defaults["title"] == "issue.title" and defaults["description"] == "issue.description"
    assignee = next(f for f in create["optional_fields"] if f["name"] == "assignee")
    assert assignee["depends_on"] == ["team"]
    assert "https://syncer.example.com/webhooks/sentry" in done.stderr


def test_schema_problems_are_named() -> None:
    policy = load_policy(POLICY)
    good = ui.schema(policy, "https://syncer.example.com")
    assert ui.problems("http://syncer.example.com", good) == [
        "SYNCER_PUBLIC_URL: must be https (Sentry sends form values and signatures to it)"]
    broken = json.loads(json.dumps(good))
    broken["elements"][0]["create"]["uri"] = "https://elsewhere/x"
    broken["elements"][0]["create"]["required_fields"][0]["default"] = "issue.culprit"
    del broken["elements"][1]["title"]
    found = ui.problems("https://syncer.example.com", broken)
    assert any("issue-link.create.uri must be a path" in p for p in found)
    assert any("default: issue.title or issue.description only" in p for p in found)
    assert any("alert-rule-action needs a title" in p for p in found)


def test_check_config_refuses_a_public_url_sentry_cannot_use() -> None:
    base = {"SYNCER_CONFIG": str(POLICY)}
    done = run_cli("check-config", env={**base, "SYNCER_PUBLIC_URL": "http://syncer.example.com"})
    assert done.returncode == 1 and "must be https" in done.stderr
    done = run_cli("check-config", env={**base, "SYNCER_PUBLIC_URL": "https://syncer.example.com/app"})
    assert done.returncode == 1 and "origin only (no path)" in done.stderr
    done = run_cli("sentry-app", "schema", env=base)
    assert done.returncode == 2 and "SYNCER_PUBLIC_URL is not set" in done.stderr


# --- selects --------------------------------------------------------------------------------------


def test_team_select_puts_routings_pick_first_and_answers_fast(screens: FakeSentry) -> None:
    started = time.monotonic()
    answer = screens.screens.options("create", "team", project="ghost-app")
    assert time.monotonic() - started < 1.0
    assert answer.status_code == 200
    options = answer.json()
    assert options[0] == {"label": "ghosts (routing's pick)", "value": "ghosts", "default": True}
    assert {o["value"] for o in options} >= {"payments", "web", "ghosts"}
    # A project no route sends by project alone: no pick, every team, none marked.
    plain = screens.screens.options("create", "team", project="misc-app").json()
    assert not any(o.get("default") for o in plain)


def test_assignee_select_follows_the_chosen_team(screens: FakeSentry) -> None:
    options = screens.screens.options("create", "assignee", dependent={"team": "payments"}).json()
    assert {"label": "driver@example.com (the team's)", "value": "driver@example.com",
            "default": True} in options
    web = screens.screens.options("create", "assignee", dependent={"team": "web"}).json()
    assert any(o["value"] == "alice@example.com" and o.get("default") for o in web)


def test_requests_not_signed_with_the_client_secret_are_refused(
    screens: FakeSentry, web: Any, engine: Engine
) -> None:
    issue = quietly_filed(screens, project="misc-app", title="KeyError")
    body = json.dumps({"fields": {"title": "x", "team": "web"}, "issueId": int(issue["id"])}).encode()
    for path, method in ((ui.TEAMS, "GET"), (ui.CREATE, "POST"), (ui.ALERT_RULE_ACTION, "POST")):
        answer = httpx.request(method, f"{web.url}{path}", content=body if method == "POST" else None,
                               headers={"Sentry-App-Signature": "0" * 64}, timeout=10)
        assert answer.status_code == 401, path
        assert "Sentry-App-Signature" in answer.json()["message"]
    assert link_of(engine, issue["id"]) is None


# --- issue-link: create ---------------------------------------------------------------------------


def test_create_form_files_one_ticket_and_answers_its_identifier(
    screens: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = quietly_filed(screens, project="misc-app", title="KeyError: 'plan'")
    fields = {"title": "Checkout fails for annual plans", "description": "Seen by support",
              "team": "web", "priority": "Low"}
    answer = screens.screens.submit("create", issue["id"], fields, by="bob@example.com")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [ticket] = tickets_for(fake_jira, issue["id"])
    assert body == {"webUrl": f"{fake_jira.url}/browse/{ticket['key']}", "project": "WEB",
                    "identifier": ticket["key"]}
    assert ticket["project"] == "WEB" and ticket["summary"] == "Checkout fails for annual plans"
    assert ticket["priority"] == "Low" and ticket["description"].startswith("Seen by support")
    assert [e["displayName"] for e in screens.external_issues(issue["id"])] == [f"WEB#{ticket['key']}"]
    created = [a for a in audit_of(engine, issue["id"]) if a.action == "created"]
    assert created and "by Bob Example" in created[0].cause
    # Submitted again (a double click, a second person): the same ticket, nothing new.
    again = screens.screens.submit("create", issue["id"], {**fields, "title": "Another title"})
    assert again.status_code == 200 and again.json()["identifier"] == ticket["key"]
    assert len(tickets_for(fake_jira, issue["id"])) == 1


def test_create_form_racing_the_webhook_links_the_same_ticket(
    screens: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = screens.file_issue(project="ghost-app", title="TimeoutError")  # issue.created is sent too
    answer = screens.screens.submit("create", issue["id"], {"title": "TimeoutError", "team": "ghosts"})
    assert answer.status_code == 200, answer.text
    wait_for(lambda: settled(engine), 30, what="the webhook and the form to be processed")
    found = tickets_for(fake_jira, issue["id"])
    assert [t["key"] for t in found] == [answer.json()["identifier"]]


def test_create_form_with_a_team_the_policy_lacks_says_so(screens: FakeSentry, engine: Engine) -> None:
    issue = quietly_filed(screens, project="misc-app", title="KeyError")
    answer = screens.screens.submit("create", issue["id"], {"title": "x", "team": "nobody"})
    assert answer.status_code == 400
    assert "team 'nobody' is not in syncer's policy" in answer.json()["message"]
    assert link_of(engine, issue["id"]) is None


def test_form_bodies_sentry_would_not_send_are_refused_with_a_message(
    screens: FakeSentry, web: Any, engine: Engine
) -> None:
    from tests.conftest import sign_sentry

    for body in (b"not json", b'{"fields": {}, "issueId": "abc"}', b"[]"):
        answer = httpx.post(f"{web.url}{ui.CREATE}", content=body,
                            headers={"Sentry-App-Signature": sign_sentry(body)}, timeout=10)
        assert answer.status_code == 400, body
        assert answer.json()["message"]
    with Session(engine) as session:  # nothing stored, so nothing for a worker to file
        assert session.exec(select(Delivery).where(Delivery.resource == ui.RESOURCE)).all() == []


# --- issue-link: link -----------------------------------------------------------------------------


def test_ticket_search_and_link_form_link_both_ways_and_name_who(
    screens: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    key = fake_jira.person_create("OPS", "Checkout times out (annual plans)")
    fake_jira.person_create("OPS", "Unrelated flaky test")
    issue = quietly_filed(screens, project="misc-app", title="TimeoutError")
    # Reserved characters of Jira's text search are typed as they come.
    found = screens.screens.options("link", "ticket", query="checkout (annual)").json()
    assert found == [{"label": f"{key}: Checkout times out (annual plans)", "value": key}]
    by_key = screens.screens.options("link", "ticket", query=key.lower()).json()
    assert [o["value"] for o in by_key] == [key]
    answer = screens.screens.submit("link", issue["id"], {"ticket": key}, by="carol@example.com")
    assert answer.status_code == 200, answer.text
    assert answer.json()["identifier"] == key
    link = link_of(engine, issue["id"])
    assert link is not None and link.state == LinkState.ACTIVE and link.jira_key == key
    lines = [a for a in audit_of(engine, issue["id"]) if a.action == "linked_by_hand"]
    assert lines and "Carol Example" in lines[0].detail
    wait_for(lambda: fake_jira.remote_links(key), 15, what="the remote link on the ticket")
    assert len(tickets_for(fake_jira, issue["id"])) == 0  # nothing created


def test_linking_a_ticket_another_issue_has_says_which(
    screens: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    first = quietly_filed(screens, project="misc-app", title="KeyError")
    taken = screens.screens.submit("create", first["id"], {"title": "KeyError", "team": "web"})
    assert taken.status_code == 200
    key = taken.json()["identifier"]
    second = quietly_filed(screens, project="misc-app", title="TypeError")
    answer = screens.screens.submit("link", second["id"], {"ticket": key})
    assert answer.status_code == 400
    assert answer.json()["message"] == f"{key} is already linked to Sentry issue {first['id']}"
    assert link_of(engine, second["id"]) is None


def test_ticket_search_says_so_when_jira_is_too_slow(screens: FakeSentry, fake_jira: FakeJira) -> None:
    fake_jira.latency = 3.0
    try:
        started = time.monotonic()
        options = screens.screens.options("link", "ticket", query="OPS-12").json()
        took = time.monotonic() - started
    finally:
        fake_jira.latency = 0.0
    assert took < 1.5
    assert options[0] == {"label": "OPS-12 (not checked: Jira did not answer within 0.8s)", "value": "OPS-12"}
    assert "type the whole key" in options[1]["label"]


# --- alert-rule-action ----------------------------------------------------------------------------


def test_alert_rule_settings_are_checked_when_the_rule_is_saved(screens: FakeSentry) -> None:
    ok = screens.screens.save_alert_rule("Page web", {"mode": "create", "team": "web", "labels": "a,b"})
    assert ok.status_code == 200, ok.text
    bad = screens.screens.save_alert_rule("Broken", {"mode": "create", "team": "marketing"})
    assert bad.status_code == 400 and "team 'marketing'" in bad.json()["message"]
    spaced = screens.screens.save_alert_rule("Spaced", {"mode": "create", "labels": "two words"})
    assert spaced.status_code == 400 and "no spaces" in spaced.json()["message"]
    assert set(screens.screens.alert_rules) == {"Page web"}


def test_alert_rule_settings_drive_routing_of_its_alerts(
    screens: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    rule = "Page web"
    saved = screens.screens.save_alert_rule(
        rule, {"mode": "create", "team": "web", "priority": "Low", "labels": "from-alert"})
    assert saved.status_code == 200
    issue = quietly_filed(screens, project="misc-app", title="KeyError", level="error")
    screens.trigger_alert(issue["id"], rule=rule)
    wait_for(lambda: (link := link_of(engine, issue["id"])) is not None and link.state == LinkState.ACTIVE,
             30, what="the alert's ticket")
    [ticket] = tickets_for(fake_jira, issue["id"])
    assert ticket["project"] == "WEB" and ticket["priority"] == "Low" and "from-alert" in ticket["labels"]


def test_notify_only_alert_rule_files_nothing(
    screens: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    assert screens.screens.save_alert_rule("Just tell", {"mode": "notify"}).status_code == 200
    issue = quietly_filed(screens, project="misc-app", title="KeyError", level="error")
    screens.trigger_alert(issue["id"], rule="Just tell")
    wait_for(lambda: settled(engine), 30, what="the alert to be processed")
    with Session(engine) as session:
        [delivery] = session.exec(select(Delivery).where(Delivery.resource == "event_alert")).all()
    assert delivery.state == DeliveryState.IGNORED and "notify only" in delivery.outcome
    assert tickets_for(fake_jira, issue["id"]) == []


def test_route_explain_shows_an_alert_rules_settings(
    screens: FakeSentry, tmp_path: Path, process_env: dict[str, str]
) -> None:
    screens.screens.save_alert_rule("Page web", {"mode": "create", "team": "web", "priority": "Low"})
    issue = quietly_filed(screens, project="misc-app", title="KeyError", level="error")
    screens.webhooks.enabled = False
    try:
        screens.trigger_alert(issue["id"], rule="Page web")
    finally:
        screens.webhooks.enabled = True
    body = next(payload for resource, payload in reversed(screens.emitted()) if resource == "event_alert")
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(body))
    done = subprocess.run([sys.executable, "-m", "syncer", "route", "explain", str(path)],
                          capture_output=True, text=True, env=process_env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "then the alert rule 'Page web': team web; priority Low" in done.stdout
    assert "project     WEB" in done.stdout and "priority    Low" in done.stdout


# --- unlinked in Sentry ---------------------------------------------------------------------------


def test_link_removed_on_sentrys_issue_page_is_undone_by_reconcile(
    screens: FakeSentry, fake_jira: FakeJira, engine: Engine, runtime: Any
) -> None:
    from syncer.sync import reconcile

    issue = quietly_filed(screens, project="misc-app", title="KeyError")
    answer = screens.screens.submit("create", issue["id"], {"title": "KeyError", "team": "web"})
    assert answer.status_code == 200, answer.text
    wait_for(lambda: (link := link_of(engine, issue["id"])) is not None and link.sentry_link_done, 15,
             what="the Sentry side of the link")
    clean_run = reconcile.run(runtime)
    assert clean_run.drift["unlinked_in_sentry"] == 0
    screens.person_unlink_external_issue(issue["id"])
    report = reconcile.run(runtime)
    assert report.drift["unlinked_in_sentry"] == 1
    assert [link.state for link in links_of(engine, issue["id"])] == [LinkState.UNLINKED]
    lines = [a for a in audit_of(engine, issue["id"]) if a.action == "unlinked_in_sentry"]
    assert len(lines) == 1 and "unlinked on Sentry's issue page" in lines[0].detail
    assert reconcile.run(runtime).drift["unlinked_in_sentry"] == 0  # done once, not again


# --- enrichment -----------------------------------------------------------------------------------


def test_a_grown_issue_gets_one_comment_on_its_ticket_throttled(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    from syncer.runtime import Runtime
    from syncer.settings import Settings, current_settings
    from syncer.sync import reconcile

    settings = Settings(**{**current_settings().model_dump(),
                           "config": FIXTURES / "policies" / "enrichment.toml"})
    rt = Runtime(settings)
    issue = fake_sentry.file_issue(project="misc-app", title="KeyError", level="error")
    wait_for(lambda: (link := link_of(engine, issue["id"])) is not None and link.sentry_link_done, 30,
             what="the ticket")
    link = link_of(engine, issue["id"])
    assert link is not None and link.jira_key and link.noted_count == int(issue["count"])
    key = link.jira_key
    reconcile.run(rt)
    assert fake_jira.comments(key) == []  # not grown: nothing said
    fake_sentry.record_events(issue["id"], 9 * int(issue["count"]))
    reconcile.run(rt)
    [comment] = wait_for(lambda: fake_jira.comments(key), 10, what="the growth comment")
    assert f"events {int(issue['count'])} -> {10 * int(issue['count'])} (x10)" in comment["body"]
    assert any(a.action == "enriched" for a in audit_of(engine, issue["id"]))
    fake_sentry.record_events(issue["id"], 1, new_users=150)  # past users_at, within the day
    reconcile.run(rt)
    assert len(fake_jira.comments(key)) == 1
    rt.engine.dispose()


def test_a_new_release_says_nothing_when_new_release_is_off(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    issue = fake_sentry.file_issue(project="misc-app", title="KeyError", level="error", release="1.0")
    wait_for(lambda: (link := link_of(engine, issue["id"])) is not None and link.sentry_link_done, 30,
             what="the ticket")
    link = link_of(engine, issue["id"])
    assert link is not None and link.jira_key
    for release in ("1.0", "2.0"):
        fake_sentry.trigger_alert(issue["id"], release=release)
    def alerts() -> list[Delivery]:
        return [d for d in deliveries(engine, "sentry")
                if d.resource == "event_alert" and f'"issue_id":"{issue["id"]}"' in d.payload]

    wait_for(lambda: len(alerts()) == 2 and all(d.state not in DeliveryState.UNFINISHED for d in alerts()),
             60, what="the alerts")
    assert fake_jira.comments(link.jira_key) == []
    assert link_of(engine, issue["id"]).noted_release is None  # type: ignore[union-attr]


def test_growth_marks_and_throttle() -> None:
    from datetime import UTC, datetime, timedelta

    from syncer.core.growth import growth
    from syncer.policy import EnrichmentPolicy

    policy = EnrichmentPolicy(events_factor=10, users_at=(100, 1000), min_hours_between=24)
    now = datetime(2026, 12, 6, tzinfo=UTC)
    said = {"noted_count": 50, "noted_users": 20, "noted_at": now - timedelta(hours=25), "now": now}
    assert growth(policy, count=499, users=99, **said) is None
    assert growth(policy, count=500, users=20, **said) == "events 50 -> 500 (x10)"
    assert growth(policy, count=60, users=1500, **said) == "users reached 1,000 (now 1,500)"
    assert growth(policy, count=5000, users=1500, **{**said, "noted_at": now - timedelta(hours=2)}) is None
