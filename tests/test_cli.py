"""The command line as an operator uses it: real subprocesses, real database, real fakes."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from syncer.errors import AmbiguousError, PermanentError, TransientError, classify_failure
from syncer.fakes.base import Fault
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.retry import RetryPolicy, backoff_seconds
from syncer.store import migrate
from syncer.store.schema import DeadLetter, Delivery, DeliveryState
from tests.conftest import JIRA_TOKEN, SENTRY_SECRET, SENTRY_TOKEN, post_sentry
from tests.harness import BEAT_READY, RedisServer, SyncerProcess, free_port, letters, wait_for

REPO = Path(__file__).resolve().parent.parent


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def test_check_config_prints_the_routing_table_and_no_secret(process_env: dict[str, str]) -> None:
    done = run(process_env, "check-config")
    assert done.returncode == 0, done.stderr
    assert "[2] billing" in done.stdout and "team payments: PAY" in done.stdout
    everything = done.stdout + done.stderr
    for secret in (SENTRY_SECRET, SENTRY_TOKEN, JIRA_TOKEN, process_env["SYNCER_JIRA_WEBHOOK_SECRET"]):
        assert secret not in everything
    assert "(set)" in done.stdout


def test_check_config_names_the_bad_key_and_exits_1(process_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[defaults]\njira_project = "OPS"\n\n[[routes]]\nwhen = { levle = "error" }\nteam = "x"\n')
    done = run({**process_env, "SYNCER_CONFIG": str(bad)}, "check-config")
    assert done.returncode == 1
    assert "bad.toml" in done.stderr and "routes[0]" in done.stderr and "levle" in done.stderr


def test_a_malformed_variable_is_named(process_env: dict[str, str]) -> None:
    done = run({**process_env, "SYNCER_PORT": "eighty"}, "check-config")
    assert done.returncode == 2
    assert "SYNCER_PORT" in done.stderr


def test_a_missing_required_variable_stops_the_worker(process_env: dict[str, str]) -> None:
    env = {k: v for k, v in process_env.items() if k != "SYNCER_SENTRY_TOKEN"}
    done = run(env, "worker")
    assert done.returncode == 2
    assert "SYNCER_SENTRY_TOKEN" in done.stderr


def test_processes_refuse_a_schema_that_is_behind(process_env: dict[str, str], tmp_path: Path) -> None:
    env = {**process_env, "SYNCER_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    for command in ("web", "worker", "beat"):
        done = run(env, command)
        assert done.returncode == 2, (command, done.stderr)
        assert "syncer db upgrade" in done.stderr
    upgraded = run(env, "db", "upgrade")
    assert upgraded.returncode == 0 and f"schema at {migrate.head_revision()}" in upgraded.stdout


def test_backoff_grows_is_capped_jittered_and_honours_retry_after() -> None:
    rng = random.Random(7)
    waits = [backoff_seconds(n, cap=60, rng=rng) for n in range(1, 12)]
    assert waits[0] <= 2 and waits[3] > waits[0]
    assert max(waits) <= 60 and min(waits[6:]) >= 30  # capped, but never bunched at zero
    assert backoff_seconds(1, retry_after=120, cap=60, rng=rng) >= 120  # the server's word wins
    assert len({round(backoff_seconds(5, rng=rng), 3) for _ in range(20)}) > 1  # jitter


def test_a_retry_policy_tries_as_often_as_it_says_never_sooner_than_asked() -> None:
    policy = RetryPolicy(attempts=3, base=1.0, cap=30.0)
    tries: list[int] = []
    waits: list[float] = []

    def refused() -> str:
        tries.append(1)
        raise TransientError("busy", retry_after=5)

    with pytest.raises(TransientError):
        policy.call(refused, sleep=waits.append)
    assert len(tries) == 3 and len(waits) == 2 and min(waits) >= 5  # the last failure is the caller's
    assert policy.call(lambda: "read", sleep=waits.append) == "read"
    assert not policy.exhausted(2) and policy.exhausted(3)
    assert not RetryPolicy(attempts=None).exhausted(10**6)


def test_one_table_maps_transport_and_database_failures() -> None:
    dropped = httpx.RemoteProtocolError("peer closed")
    assert type(classify_failure(dropped, "Sentry", "PUT", "/x")) is AmbiguousError  # may have happened
    assert type(classify_failure(dropped, "Sentry", "GET", "/x")) is TransientError
    assert type(classify_failure(httpx.ConnectError("refused"), "Sentry", "PUT", "/x")) is TransientError
    assert type(classify_failure(httpx.InvalidURL("bad"), "Sentry", "GET", "/x")) is PermanentError
    down = OperationalError("SELECT 1", None, ConnectionRefusedError())
    assert type(classify_failure(down)) is TransientError
    assert classify_failure(IntegrityError("INSERT", None, ValueError())) is None  # a bug, or expected
    assert classify_failure(ValueError("ours")) is None


def test_transient_failures_are_retried_then_succeed(
    stack: dict[str, Any], fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine
) -> None:
    fake_jira.faults.append(Fault("POST", r"^/rest/api/2/issue/?$", status=503, times=2))
    issue = fake_sentry.file_issue(project="billing-api", title="Jira is having a bad minute")
    wait_for(
        lambda: any(f"sentry-{issue['id']}" in t["labels"] for t in fake_jira.issues()),
        60,
        what="the ticket after two 503s",
    )
    assert fake_jira.calls.count("POST", r"^/rest/api/2/issue/?$") == 3


def test_permanent_failure_becomes_a_dead_letter_that_can_be_retried_and_dropped(
    stack: dict[str, Any],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    engine: Engine,
    process_env: dict[str, str],
) -> None:
    fake_jira.faults.append(
        Fault(
            "POST",
            r"^/rest/api/2/issue/?$",
            status=400,
            times=1,
            body={"errorMessages": [], "errors": {"components": "Component 'Billing' is not valid"}},
        )
    )
    issue = fake_sentry.file_issue(project="billing-api", title="refused by Jira")

    def its_letters() -> list[DeadLetter]:
        return [d for d in letters(engine) if issue["id"] in d.payload]

    (letter,) = wait_for(its_letters, 30, what="a dead letter")
    assert "400" in letter.error and issue["id"] in letter.payload
    listed = run(process_env, "dead-letters", "list")
    assert listed.returncode == 0 and f"{letter.id:>6}" in listed.stdout and "400" in listed.stdout
    assert letter.subject.startswith(f"sentry issue {issue['id']}: issue.")  # whose, and which event
    assert letter.subject in listed.stdout
    retried = run(process_env, "dead-letters", "retry", str(letter.id))
    assert retried.returncode == 0, retried.stderr
    wait_for(
        lambda: any(f"sentry-{issue['id']}" in t["labels"] for t in fake_jira.issues()),
        30,
        what="the ticket after the retry",
    )
    assert run(process_env, "dead-letters", "drop", str(letter.id)).returncode == 1  # not open any more
    with Session(engine) as session:
        delivery = session.get(Delivery, letter.delivery_id)
        assert delivery is not None and delivery.state == DeliveryState.DONE


@pytest.mark.slow
def test_dev_runs_all_three_on_an_embedded_broker_and_stops_on_ctrl_c(
    process_env: dict[str, str], fake_sentry: FakeSentry, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **process_env,
        "SYNCER_DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
        "SYNCER_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing answers: embedded broker
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncer", "dev", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, interval=0.3, what="syncer dev to be ready")
        payload = {
            "action": "created",
            "installation": {"uuid": "x"},
            "data": {"comment_id": 3, "issue_id": 7},
        }
        answer = post_sentry(f"http://127.0.0.1:{port}", payload, resource="comment")
        assert answer.status_code == 202
        from syncer.store.engine import make_engine

        dev_engine = make_engine(env["SYNCER_DATABASE_URL"])

        def processed() -> bool:
            with Session(dev_engine) as session:
                row = session.get(Delivery, answer.json()["delivery"])
                return row is not None and row.state == DeliveryState.IGNORED

        wait_for(processed, 60, interval=0.3, what="the dev worker to process the delivery")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "sqla+sqlite" in out
    assert not re.search(r"Traceback", out), out


@pytest.mark.slow
def test_sandbox_tells_the_story(tmp_path: Path) -> None:
    # A broker of its own: the session's worker listens on the session's Redis and would take its tasks.
    broker = RedisServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    env["SYNCER_BROKER_URL"] = broker.url
    try:
        done = subprocess.run(
            [sys.executable, "-m", "syncer", "sandbox", "--once", "--port", str(free_port())],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        broker.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(
        re.search(r"ticket PAY-\d+ .*team payments, route billing, assignee acc-driver", x) for x in lines
    ), done.stdout
    assert any(
        re.search(r"ticket WEB-\d+ .*team web, route frontend, assignee acc-alice\b", x) for x in lines
    ), done.stdout
    assert any("no ticket: route client-errors" in x for x in lines), done.stdout
    assert any("no ticket: route noise" in x for x in lines), done.stdout
    # The Slack side: the notify route's issue waits in its team's channel, posted there.
    assert any("no ticket yet: sentry issue" in x for x in lines), done.stdout
    assert any(re.search(r"slack #payments-alerts \d+\.\d+ posted: ValueError: price below zero", x)
               for x in lines), done.stdout


def _hold(port: int) -> socket.socket | None:
    """Listen on `port` if it is free; None when another process holds it already (taken either way)."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", port))
    except OSError:
        holder.close()
        return None
    holder.listen()
    return holder


def test_web_binds_dollar_port(process_env: dict[str, str]) -> None:
    port = free_port()
    env = {**process_env, "PORT": str(port), "SYNCER_PORT": str(free_port())}
    web = subprocess.Popen(
        [sys.executable, "-m", "syncer", "web", "--host", "127.0.0.1"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert web.poll() is None, web.communicate()[0]
                return False

        wait_for(healthy, timeout=30, what="syncer web on $PORT")
    finally:
        web.terminate()
        web.wait(timeout=20)


def test_web_and_dev_name_a_taken_port_and_how_to_choose_another(process_env: dict[str, str]) -> None:
    port = free_port()
    holder = _hold(port)
    try:
        for command in (["web", "--host", "127.0.0.1", "--port", str(port)], ["dev", "--port", str(port)]):
            done = run(process_env, *command)
            assert done.returncode == 2, done.stdout + done.stderr
            assert f"port {port} on 127.0.0.1 is taken" in done.stderr and "--port" in done.stderr
    finally:
        if holder:
            holder.close()


@pytest.mark.slow
def test_sandbox_moves_off_a_taken_port_on_its_own_broker(tmp_path: Path) -> None:
    holder = _hold(8000)  # taken by us, or by whatever holds it on this machine already
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}  # no broker named
    try:
        done = subprocess.run(
            [sys.executable, "-m", "syncer", "sandbox", "--once", "--issues", "1"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        if holder:
            holder.close()
    assert done.returncode == 0, done.stdout + done.stderr
    moved = re.search(r"port 8000 is taken; using (\d+)", done.stderr)
    assert moved, done.stderr
    assert f"web on http://127.0.0.1:{moved.group(1)}, broker sqla+sqlite" in done.stdout, done.stdout
    assert re.search(r"ticket PAY-\d+ .*team payments", done.stdout), done.stdout


def test_each_deployment_keeps_its_own_beat_schedule(
    process_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two syncers on one host (staging beside production, a sandbox) must not share last-run times."""
    from syncer.cli.main import beat_schedule_path
    from syncer.settings import load_settings

    beat = SyncerProcess("beat", ["beat"], process_env, tmp_path).start(ready_line=BEAT_READY, timeout=60)
    try:
        # Not on a terminal, the beat logs JSON lines: the path ends where the JSON string does.
        said = re.search(r"beat: last-run times in ([^\s\"]+)", beat.output())
        assert said is not None, beat.output()[-2000:]
        wait_for(
            lambda: any(Path(said[1]).parent.glob(Path(said[1]).name + "*")), 30, what="the schedule file"
        )
    finally:
        beat.stop()
    for name, value in process_env.items():
        monkeypatch.setenv(name, value)
    ours = load_settings()
    assert said[1] == str(beat_schedule_path(ours))
    other = ours.model_copy(update={"database_url": "postgresql://syncer:hunter2@db.internal/staging"})
    assert beat_schedule_path(other) != beat_schedule_path(ours)
    assert beat_schedule_path(ours.model_copy()) == beat_schedule_path(ours)
    assert "hunter2" not in str(beat_schedule_path(other))
