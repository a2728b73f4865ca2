"""`syncer worker` as a supervisor of worker processes (syncer/worker/supervise.py): one per CPU by default,
all consuming; a child that dies is started again; SIGTERM stops them all after their running tasks,
a second signal at once; the supervisor's own death takes its children with it; a misconfiguration
stops it once, before any child starts. `--processes 1` is the Celery worker in the process itself.

Real processes on a broker of this module's own (a private Redis, so that the session's worker takes
none of this module's tasks), the real web app on a socket, the session's database and fakes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest
import redis
from celery import Celery
from sqlalchemy.engine import Engine

from syncer import metrics
from syncer.fakes.base import FakeServer
from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.settings import Settings
from syncer.store.schema import DeliveryState
from syncer.worker import supervise
from tests.conftest import clean_tables
from tests.harness import REPO, WORKER_READY, RedisServer, SyncerProcess, deliveries, start_worker, wait_for

# ------------------------------------------------------------------ the module's stack


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    web: FakeServer

    def supervisor(
        self, name: str, log_dir: Path, *args: str, env: dict[str, str] | None = None, processes: int = 2
    ) -> SyncerProcess:
        """`syncer worker` with one thread per process (so that a second task must go to another
        process), once `processes` of its children have logged that they are ready."""
        argv = ["worker", "--concurrency", "1", "--hostname", f"{name}@%h", *args]
        proc = SyncerProcess(name, argv, env or self.env, log_dir).start()
        wait_for(
            lambda: proc.output().count(WORKER_READY) >= processes or proc.proc.poll() is not None,  # type: ignore[union-attr]
            90,
            what=f"{processes} worker processes of {name} to be ready",
        )
        assert proc.proc is not None and proc.proc.poll() is None, proc.output()[-3000:]
        return proc


@pytest.fixture(scope="module")
def own(
    environment: None,
    engine: Engine,
    process_env: dict[str, str],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
) -> Iterator[Stack]:
    from syncer.settings import current_settings
    from syncer.web.app import create_app
    from syncer.worker import app as worker

    broker = RedisServer().start()
    env = {**process_env, "SYNCER_BROKER_URL": broker.url}
    settings = Settings(**{**current_settings().model_dump(), "broker_url": broker.url})
    client = redis.Redis.from_url(broker.url)
    web = FakeServer(
        create_app(settings, engine, worker.publisher(settings), client.ping, metrics.WorkerCounters(client))
    ).start()
    hooks = (fake_sentry.webhooks.url, fake_jira.webhooks.url)
    fake_sentry.webhooks.url = f"{web.url}/webhooks/sentry"
    fake_jira.webhooks.url = f"{web.url}/webhooks/jira"
    try:
        yield Stack(env, settings, web)
    finally:
        fake_sentry.webhooks.url, fake_jira.webhooks.url = hooks
        web.stop()
        broker.stop()


@pytest.fixture
def pstack(clean: None, own: Stack) -> Stack:
    return own


# ------------------------------------------------------------------ helpers


def children_of(pid: int) -> dict[int, str]:
    """Live (not zombie) child processes of `pid`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) == pid and stat[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_tickets(fake_jira: FakeJira, issues: list[dict[str, Any]], timeout: float = 60) -> None:
    def made() -> bool:
        labels = [label for ticket in fake_jira.issues() for label in ticket["labels"]]
        return all(labels.count(f"sentry-{issue['id']}") == 1 for issue in issues)

    wait_for(made, timeout, what=f"a ticket for each of {len(issues)} issues")


def processed_by_node(settings: Settings) -> dict[str, int]:
    """Celery's own count of `process_delivery` tasks per worker node (remote control: `stats`)."""
    from syncer.worker import app as worker

    probe = worker.configure(settings, Celery("syncer-test-probe"))
    try:
        stats = probe.control.inspect(timeout=3).stats() or {}
    finally:
        probe.close()
    return {node: s.get("total", {}).get("syncer.process_delivery", 0) for node, s in stats.items()}


def by_node_name(counts: dict[str, int], name: str) -> dict[str, int]:
    return {node.split("@")[0]: n for node, n in counts.items() if node.startswith(f"{name}-")}


# ------------------------------------------------------------------ one process per CPU, all consuming


def test_by_default_one_worker_process_per_cpu_and_every_one_takes_work(
    pstack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, tmp_path: Path
) -> None:
    cpus = supervise.cpu_count()
    if cpus < 2:
        pytest.skip("one CPU: `syncer worker` runs its one worker in-process")
    sup = pstack.supervisor("default", tmp_path, processes=cpus)
    try:
        children = children_of(sup.proc.pid)  # type: ignore[union-attr]
        assert len(children) == cpus
        names = sorted(cmd.split("--hostname ")[1].split("@")[0] for cmd in children.values())
        assert names == [f"default-{i}" for i in range(1, cpus + 1)]
        assert all("--processes 1" in cmd for cmd in children.values())

        # One thread each and every call slow: each process holds one delivery while the next one
        # arrives, so each must take one.
        fake_jira.latency = 0.5
        issues = [fake_sentry.file_issue(title=f"for worker process {i}") for i in range(cpus)]
        wait_tickets(fake_jira, issues)
        wait_for(
            lambda: all(d.state == DeliveryState.DONE for d in deliveries(engine, "sentry")),
            60,
            what="the deliveries done",
        )
        counts = by_node_name(processed_by_node(pstack.settings), "default")
        assert sorted(counts) == names and all(n >= 1 for n in counts.values()), counts
    finally:
        sup.stop()
    assert not any(running(pid) for pid in children)


# ------------------------------------------------------------------ a child dies


@pytest.mark.slow
def test_a_killed_worker_process_is_started_again_and_takes_work(
    pstack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, tmp_path: Path
) -> None:
    # The count from the environment this time (SYNCER_WORKER_PROCESSES), not --processes.
    sup = pstack.supervisor("phoenix", tmp_path, env={**pstack.env, "SYNCER_WORKER_PROCESSES": "2"})
    try:
        assert sup.proc is not None
        before = children_of(sup.proc.pid)
        (victim,) = [pid for pid, cmd in before.items() if "phoenix-1@" in cmd]
        (survivor,) = set(before) - {victim}
        os.kill(victim, signal.SIGKILL)
        noticed = f"worker 1 (pid {victim}) exited unexpectedly (killed by SIGKILL); restarting it in 1s"
        wait_for(lambda: noticed in sup.output(), 30, what="the supervisor to notice")
        wait_for(lambda: sup.output().count(WORKER_READY) >= 3, 60, what="the new worker process to be ready")
        after = children_of(sup.proc.pid)
        assert len(after) == 2 and survivor in after and victim not in after
        assert "worker 1 started (pid" in sup.output().split("restarting it in 1s")[1]

        fake_jira.latency = 0.5
        issues = [fake_sentry.file_issue(title=f"after the restart {i}") for i in range(2)]
        wait_tickets(fake_jira, issues)
        counts = by_node_name(processed_by_node(pstack.settings), "phoenix")
        assert counts.get("phoenix-1", 0) >= 1 and counts.get("phoenix-2", 0) >= 1, counts
    finally:
        sup.stop()


# ------------------------------------------------------------------ stopping


@pytest.mark.slow
def test_sigterm_lets_running_tasks_finish_then_every_process_exits_0(
    pstack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, tmp_path: Path
) -> None:
    sup = pstack.supervisor("graceful", tmp_path)
    assert sup.proc is not None
    children = children_of(sup.proc.pid)
    try:
        fake_jira.latency = 1.0  # the task is inside a Jira call when the signal comes
        issue = fake_sentry.file_issue(title="finished during the shutdown")
        wait_for(
            lambda: [d for d in deliveries(engine, "sentry") if d.state == DeliveryState.PROCESSING],
            30,
            what="a worker process to take the delivery",
        )
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.proc.wait(90) == 0
        assert not any(running(pid) for pid in children)
        (delivery,) = deliveries(engine, "sentry")
        assert delivery.state == DeliveryState.DONE  # the warm shutdown let it finish
        wait_tickets(fake_jira, [issue], timeout=1)
        assert "SIGTERM: warm shutdown" in sup.output()
    finally:
        sup.stop()


@pytest.mark.slow
def test_a_stopping_worker_hands_back_the_deliveries_of_a_message_it_has_not_started(
    pstack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, tmp_path: Path
) -> None:
    """A message of 8 deliveries (what the web tier publishes under load) takes 8 attempts in turn;
    a warm shutdown waits only for the one running, so that a platform's shutdown period covers
    one delivery attempt (deploy/kubernetes/worker.yaml). The other worker does the rest, once each."""
    from syncer.fakes.base import compact_json
    from syncer.store import deliveries as inbox
    from syncer.worker import app as worker

    fake_sentry.webhooks.enabled = False  # the test publishes them, in one message
    issues = [fake_sentry.file_issue(title=f"handed back {n}") for n in range(worker.MESSAGE_BATCH)]
    created = [p for _, p in fake_sentry.emitted() if p["action"] == "created"][-len(issues):]
    stored = inbox.store_many(engine, [
        inbox.Incoming(source="sentry", key=f"handed-back-{n}", resource="issue", action="created",
                       payload=compact_json(payload))
        for n, payload in enumerate(created)
    ])
    fake_jira.latency = 0.5  # every delivery several calls long: the message far longer than one
    first = start_worker("stopping", pstack.env, tmp_path, concurrency=1)
    publisher = worker.configure(pstack.settings, Celery("syncer-test-batch"))
    try:
        worker.publish_batch([s.delivery_id for s in stored], target=publisher)
        wait_for(lambda: fake_jira.calls.calls(), 30, what="the first delivery under way")
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(90) == 0
        done = [d for d in deliveries(engine, "sentry") if d.state == DeliveryState.DONE]
        assert 1 <= len(done) <= 2, [d.state for d in deliveries(engine, "sentry")]
        assert f"handing back {len(issues) - len(done)} deliveries not started" in first.output()

        second = start_worker("remaining", pstack.env, tmp_path, concurrency=4)
        try:
            wait_tickets(fake_jira, issues, timeout=120)
            wait_for(
                lambda: all(d.state == DeliveryState.DONE for d in deliveries(engine, "sentry")),
                60,
                what="every delivery done",
            )
        finally:
            second.stop()
    finally:
        first.stop()
        publisher.close()
        fake_jira.latency = 0.0


@pytest.mark.slow
def test_a_second_signal_is_a_cold_shutdown_and_a_third_kills(
    pstack: Stack, fake_sentry: FakeSentry, fake_jira: FakeJira, engine: Engine, tmp_path: Path
) -> None:
    sup = pstack.supervisor("impatient", tmp_path)
    assert sup.proc is not None
    children = children_of(sup.proc.pid)
    try:
        fake_jira.latency = 5.0  # a task that would keep the warm and the cold shutdown waiting
        fake_sentry.file_issue(title="abandoned by an impatient operator")
        wait_for(
            lambda: [d for d in deliveries(engine, "sentry") if d.state == DeliveryState.PROCESSING],
            30,
            what="a worker process to take the delivery",
        )
        sup.proc.send_signal(signal.SIGINT)
        wait_for(lambda: "SIGINT: warm shutdown" in sup.output(), 10, what="the first signal")
        sup.proc.send_signal(signal.SIGINT)
        wait_for(lambda: "Cold shutdown" in sup.output(), 10, what="Celery's cold shutdown")
        assert "SIGINT again: cold shutdown" in sup.output()
        sup.proc.send_signal(signal.SIGINT)
        assert sup.proc.wait(60) == 0
        assert "SIGINT a third time: killing" in sup.output() and "(killed by SIGKILL)" in sup.output()
        assert not any(running(pid) for pid in children)
    finally:
        sup.stop()
        fake_jira.latency = 0.0
        clean_tables(engine)  # the killed task's delivery stays "processing" (the sweeper's job)


@pytest.mark.slow
def test_when_the_supervisor_is_killed_its_worker_processes_go_too(pstack: Stack, tmp_path: Path) -> None:
    sup = pstack.supervisor("orphans", tmp_path)
    assert sup.proc is not None
    children = children_of(sup.proc.pid)
    assert len(children) == 2
    sup.kill()  # kill -9: no chance to forward anything; PR_SET_PDEATHSIG sends them SIGTERM
    wait_for(lambda: not any(running(pid) for pid in children), 60, what="the worker processes to exit")
    sup.stop()


# ------------------------------------------------------------------ misconfiguration, --processes 1


def run_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncer", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def test_a_misconfiguration_stops_the_supervisor_once_before_any_worker_process(
    process_env: dict[str, str], tmp_path: Path
) -> None:
    behind = {**process_env, "SYNCER_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    missing = {k: v for k, v in process_env.items() if k != "SYNCER_JIRA_URL"}
    for env, says in ((behind, "syncer db upgrade"), (missing, "SYNCER_JIRA_URL")):
        done = run_worker(env, "--processes", "2")
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert done.stderr.count("error:") == 1 and says in done.stderr
        # No worker process was started.
        assert "supervisor" not in output and "ready." not in output and WORKER_READY not in output


def test_a_bad_process_count_is_refused(process_env: dict[str, str]) -> None:
    done = run_worker(process_env, "--processes", "none")
    assert done.returncode == 2 and "--processes" in done.stderr
    done = run_worker({**process_env, "SYNCER_WORKER_PROCESSES": "0"}, "--processes", "1")
    assert done.returncode == 2 and "SYNCER_WORKER_PROCESSES" in done.stderr
    with pytest.raises(pydantic.ValidationError):
        Settings(worker_processes="many")
    assert Settings(worker_processes=" Auto ").worker_processes == "auto"


def test_one_process_is_the_celery_worker_itself(own: Stack, tmp_path: Path) -> None:
    proc = start_worker("single", own.env, tmp_path, concurrency=2)  # --processes 1
    try:
        assert proc.proc is not None
        assert children_of(proc.proc.pid) == {}
        assert "single@" in proc.output() and "supervisor" not in proc.output()
    finally:
        proc.stop()


# ------------------------------------------------------------------ the supervisor's parts


def test_process_counts_hostnames_and_backoff() -> None:
    assert supervise.parse_processes("auto") == supervise.cpu_count() >= 1
    assert supervise.parse_processes("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError):
            supervise.parse_processes(bad)
    assert supervise.child_hostname(None, 1) == "syncer-1@%h"
    assert supervise.child_hostname("w@%h", 2) == "w-2@%h"
    assert supervise.child_hostname("box.example", 1) == "syncer-1@box.example"
    backoff = supervise.Backoff(first=1, cap=30, healthy_after=60)
    delays, previous = [], None
    for _ in range(7):
        previous = backoff.next(previous, ran_for=2)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next(30, ran_for=600) == 1  # it ran a while: start over
    assert supervise.describe_exit(-9) == "killed by SIGKILL"
    assert supervise.describe_exit(3) == "exit status 3"


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays(tmp_path: Path) -> None:
    """The supervisor loop itself, on a child that exits at once (no Celery needed to show it)."""
    script = textwrap.dedent(
        """
        import logging, sys
        from syncer.worker.supervise import Backoff, Supervisor
        logging.basicConfig(level="INFO", format="%(message)s")
        child = [sys.executable, "-c", "raise SystemExit(3)"]
        sys.exit(Supervisor([child], backoff=Backoff(first=0.1, cap=0.4)).run())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log: list[str] = []

    def restarts() -> int:
        return sum("restarting it in" in line for line in log)

    assert proc.stderr is not None
    try:
        while restarts() < 5:
            line = proc.stderr.readline()
            assert line, "".join(log)
            log.append(line)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    delays = [line.rsplit(" ", 1)[1].strip() for line in log if "restarting it in" in line]
    assert delays[:5] == ["0.1s", "0.2s", "0.4s", "0.4s", "0.4s"]
    assert "worker 1 (pid" in log[-1] and "exited unexpectedly (exit status 3)" in "".join(log)
