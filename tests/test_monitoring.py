"""The Grafana dashboard and the Prometheus alert rules under deploy/: they parse, and every metric
they name is one the real `syncer web` serves at /metrics after real work (tickets, a retry, a dead
letter, a reconcile run that found drift)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.metrics import Metric
from syncer.store import deliveries, migrate
from syncer.store.engine import make_engine
from syncer.store.schema import utcnow
from tests.harness import letters, wait_for
from tests.test_cli import run
from tests.test_status_sync import linked_issue, settle

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "syncer.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bsyncer_[a-z0-9_]+\b")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", ())]


def test_the_dashboard_is_grafana_json_with_a_query_on_every_panel() -> None:
    board = dashboard()
    assert board["uid"] == "syncer" and isinstance(board["schemaVersion"], int)
    assert [v["type"] for v in board["templating"]["list"]] == ["datasource"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        place = panel["gridPos"]
        assert set(place) == {"h", "w", "x", "y"} and place["x"] + place["w"] <= 24
    titles = " ".join(p["title"] for p in panels).lower()
    for shown in ("webhooks", "latency", "inbox depth", "oldest", "tickets made", "api calls", "429",
                  "dead letters", "drift", "last successful run"):
        assert shown in titles, shown


def test_the_alert_rules_have_prometheus_rule_structure() -> None:
    loaded = yaml.safe_load(ALERTS.read_text())
    assert set(loaded) == {"groups"}
    for group in loaded["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
    names = []
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert {"summary", "description"} <= set(rule["annotations"])
        assert rule["expr"].count("(") == rule["expr"].count(")")
        names.append(rule["alert"])
    assert len(names) == len(set(names))
    # One alert for each fault of the README's table that needs a person.
    assert {"SyncerDatabaseDown", "SyncerBrokerUnreachable", "SyncerInboxFallingBehind", "SyncerApiFailing",
            "SyncerRateLimited", "SyncerDeadLetters", "SyncerTicketsUnreachable", "SyncerReconcileStale",
            "SyncerWebhooksRejected"} <= set(names)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    # The failure modes' series raise their alerts, and a healthy deployment's raise none.
    tested = subprocess.run(["promtool", "test", "rules", "alerts.test.yml"], capture_output=True, text=True,
                            timeout=60, check=False, cwd=ALERTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_the_dashboard_and_alerts_name_is_served(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine,
    process_env: dict[str, str],
) -> None:
    # Real work, so that each counter has been added to at least once.
    _, key = linked_issue(fake_sentry, fake_jira, engine, project="billing-api")
    linked_issue(fake_sentry, fake_jira, engine, project="ghost-api", title="nobody's")  # left unassigned
    fake_jira.faults.append(Fault("POST", r"^/rest/api/2/issue/?$", status=503, times=1))  # retried
    linked_issue(fake_sentry, fake_jira, engine, project="billing-api", title="after a 503")
    fake_jira.faults.append(Fault("POST", r"^/rest/api/2/issue/?$", status=400, times=1,
                                  body={"errorMessages": ["refused"], "errors": {}}))
    refused = fake_sentry.file_issue(project="billing-api", title="refused by Jira")
    wait_for(lambda: any(refused["id"] in d.payload for d in letters(engine)), 30, what="a dead letter")
    fake_jira.webhooks.enabled = False  # a change whose webhook never comes: reconcile finds the drift
    fake_jira.person_transition(key, "Done")
    fake_jira.webhooks.enabled = True
    settle(engine, fake_sentry, fake_jira)
    reconciled = run(process_env, "reconcile", timeout=120)
    assert reconciled.returncode in (0, 1), reconciled.stderr  # 2 would be a usage or config error

    page = httpx.get(f"{stack['web'].url}/metrics", timeout=10).text
    served = set()
    for family in text_string_to_metric_families(page):
        served.add(family.name)
        served.update(sample.name for sample in family.samples)
    assert "syncer_database_up 1.0" in page
    exprs = dashboard_exprs() + [rule["expr"] for rule in rules()]
    named = {name for expr in exprs for name in METRIC.findall(expr)}
    assert named, "no metric found in the dashboard or the rules"
    assert named - served == set()
    # And each is one syncer declares (a histogram's series add _bucket, _sum, _count).
    declared = {m.value for m in Metric}
    assert {re.sub(r"_(bucket|sum|count)$", "", name) for name in named} <= declared


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_inbox_age_is_the_oldest_unfinished_delivery(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'age.db'}"
    if database == "postgresql":
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    migrate.upgrade(engine)
    assert "syncer_inbox_oldest_seconds 0.0" in metrics.render(engine).decode()
    old, done = (deliveries.store(engine, source="sentry", key=key, resource="issue", action="created",
                                  payload=b"{}") for key in ("a", "b"))
    with engine.begin() as connection:  # a waiting delivery of 10 minutes ago, a finished one older still
        connection.execute(text("UPDATE deliveries SET received_at = :at WHERE id = :id"),
                           {"at": utcnow() - timedelta(minutes=10), "id": old.delivery_id})
        connection.execute(text("UPDATE deliveries SET received_at = :at, state = 'done' WHERE id = :id"),
                           {"at": utcnow() - timedelta(hours=5), "id": done.delivery_id})
    (age,) = [s.value for f in text_string_to_metric_families(metrics.render(engine).decode())
              for s in f.samples if s.name == "syncer_inbox_oldest_seconds"]
    assert 600 <= age < 660
    engine.dispose()


@pytest.mark.parametrize(("status", "counted"), [(200, "ok"), (204, "ok"), (302, "ok"), (404, "4xx"),
                                                 (429, "429"), (503, "5xx")])
def test_api_calls_are_counted_by_status_class(status: int, counted: str) -> None:
    counters = metrics.WorkerCounters(None)
    calls = metrics.CountedCalls("jira", counters)
    calls.before("GET", "https://jira.invalid/rest/api/2/myself")
    calls.after("GET", "https://jira.invalid/rest/api/2/myself", status, {})
    assert counters.read() == {f"syncer_api_calls_total|side=jira|status={counted}": 1}
