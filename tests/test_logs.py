"""Logs of real processes: one JSON object a line when they do not write to a terminal, carrying what
lets one event be followed from the web tier through the worker and through reconciliation
(`delivery_id`, `sentry_issue_id`, `jira_key`, `cause`); text when asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from tests.harness import REPO, RedisServer, SyncerProcess, free_port, start_worker, wait_for


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every log line of `output` as the object it is; Celery's start-up banner, which it prints
    rather than logs, is the only text allowed around them."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_one_delivery_is_followed_from_web_to_worker_in_json_lines(
    clean: None, fake_sentry: FakeSentry, fake_jira: FakeJira, process_env: dict[str, str], tmp_path: Path
) -> None:
    broker = RedisServer().start()  # a queue of its own: the session's worker must not take this one
    # DEBUG: the web tier's line per stored delivery (at INFO it would cost intake CPU per webhook).
    env = {**process_env, "SYNCER_BROKER_URL": broker.url, "SYNCER_LOG_LEVEL": "DEBUG"}
    port = free_port()
    web = SyncerProcess("web", ["web", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path).start()
    worker: SyncerProcess | None = None
    hooks = (fake_sentry.webhooks.url, fake_jira.webhooks.url)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 60, what="syncer web")
        worker = start_worker("logs", env, tmp_path, concurrency=2)
        fake_sentry.webhooks.url = f"http://127.0.0.1:{port}/webhooks/sentry"
        fake_jira.webhooks.url = f"http://127.0.0.1:{port}/webhooks/jira"
        issue = fake_sentry.file_issue(project="billing-api", title="followed through the logs")

        def done() -> dict[str, Any] | None:
            assert worker is not None
            return next((line for line in json_lines(worker.output())
                         if line.get("sentry_issue_id") == issue["id"] and line.get("state") == "done"), None)

        line = wait_for(done, 60, what="the worker's line for the delivery, done")
        delivery_id = line["delivery_id"]
        assert line["cause"] == f"delivery:{delivery_id}"
        assert line["jira_key"] and line["jira_key"] in line["event"]  # "created OPS-1 for team ..."
        assert line["level"] == "info" and line["logger"] == "syncer.sync.deliveries" and line["timestamp"]

        stored = [x for x in json_lines(web.output()) if x.get("delivery_id") == delivery_id]
        assert stored and stored[0]["source"] == "sentry" and "stored" in stored[0]["event"]

        ready = [x for x in json_lines(worker.output()) if x["event"] == "syncer worker ready"]
        assert len(ready) == 1 and ready[0]["hostname"].startswith("logs@")
        # Celery's own lines come through the same renderer.
        assert any(x["logger"].startswith("celery") for x in json_lines(worker.output()))
    finally:
        fake_sentry.webhooks.url, fake_jira.webhooks.url = hooks
        if worker is not None:
            worker.stop()
        web.stop()
        broker.stop()


def reconcile(env: dict[str, str], log_format: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", "reconcile", "--dry-run", "--json"],
        env={**env, "SYNCER_LOG_FORMAT": log_format}, capture_output=True, text=True, timeout=120,
        check=False, cwd=REPO,
    )


def test_a_reconcile_run_is_named_in_its_lines_as_in_its_audit_cause(
    clean: None, process_env: dict[str, str]
) -> None:
    done = reconcile(process_env, "json")
    assert done.returncode == 0, done.stderr
    (summary,) = [x for x in json_lines(done.stderr) if x["event"].startswith("reconcile ")]
    run = summary["event"].split()[1].rstrip(":")
    assert summary["cause"] == f"reconcile:{run}" and summary["logger"] == "syncer.sync.reconcile.run"
    assert "delivery_id" not in summary  # fields nobody bound are left out, not null

    text = reconcile(process_env, "text")
    assert text.returncode == 0, text.stderr
    (line,) = [x for x in text.stderr.splitlines() if "reconcile " in x and "links" in x]
    assert not line.startswith("{") and "cause=reconcile:" in line
