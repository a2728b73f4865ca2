"""Several machines on one PostgreSQL and one Redis: two `syncer web` and two `syncer worker`
processes, started as separate machines would run them (each its own process, nothing shared but
the database and the broker), and the same Sentry deliveries raced through both web processes at
once. Exactly one ticket per issue, and nothing lost: every delivery stored once, answered with
its row, and processed.

The database is one of the test's own on the PostgreSQL at 127.0.0.1:5432 (skipped, saying why, when
none answers), the broker a Redis database of its own; the fakes are the session's.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from syncer.fakes.jira import FakeJira
from syncer.fakes.sentry import FakeSentry
from syncer.store.engine import make_engine
from syncer.store.schema import DeliveryState, LinkState
from tests.conftest import post_sentry
from tests.harness import (
    SyncerProcess,
    deliveries,
    free_port,
    letters,
    links_of,
    redis_database,
    start_worker,
    wait_for,
)

ISSUES = 30
ROUNDS = 3  # distinct deliveries per issue, each sent to both web processes at once

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@dataclass
class Machines:
    webs: list[str]  # base URLs
    engine: Engine
    processes: list[SyncerProcess]


def start_web(name: str, env: dict[str, str], log_dir: Path) -> tuple[SyncerProcess, str]:
    """`syncer web` on a free port, ready once `/readyz` says the database and the broker answer.
    A port taken between choosing and binding makes the process exit: then another port."""
    for _ in range(3):
        port = free_port()
        proc = SyncerProcess(name, ["web", "--port", str(port)], env, log_dir).start()
        url = f"http://127.0.0.1:{port}"

        def ready(url: str = url, proc: SyncerProcess = proc) -> bool:
            if proc.proc is None or proc.proc.poll() is not None:
                return True
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, interval=0.1, what=f"{name} to answer /readyz")
        if proc.proc is not None and proc.proc.poll() is None:
            return proc, url
        proc.stop()
    raise AssertionError(f"{name} did not start:\n{proc.output()[-3000:]}")


@pytest.fixture
def machines(
    clean: None,
    postgres_url: str,
    process_env: dict[str, str],
    fake_sentry: FakeSentry,
    fake_jira: FakeJira,
    tmp_path: Path,
) -> Iterator[Machines]:
    hooks = (fake_sentry.webhooks.url, fake_jira.webhooks.url)
    started: list[SyncerProcess] = []
    with redis_database() as broker:
        env = {
            **process_env,
            "SYNCER_DATABASE_URL": postgres_url,
            "SYNCER_BROKER_URL": broker,
            # The race is the subject: no client-side rate limits spacing the calls out.
            "SYNCER_JIRA_MAX_RPS": "0",
            "SYNCER_SENTRY_MAX_RPS": "0",
        }
        try:
            release = SyncerProcess("db-upgrade", ["db", "upgrade"], env, tmp_path).start()
            assert release.proc is not None and release.proc.wait(120) == 0, release.output()
            release.stop()
            # Two machines each: started side by side, as a rollout would.
            with ThreadPoolExecutor(4) as pool:
                webs = [pool.submit(start_web, f"web-{n}", env, tmp_path) for n in "ab"]
                workers = [
                    pool.submit(start_worker, f"worker-{n}", env, tmp_path, 8) for n in "ab"
                ]
                started += [w.result()[0] for w in webs] + [w.result() for w in workers]
            urls = [w.result()[1] for w in webs]
            # Sentry's own deliveries are sent by the test; Jira's (the tickets' echoes) reach web a.
            fake_sentry.webhooks.enabled = False
            fake_jira.webhooks.url = f"{urls[0]}/webhooks/jira"
            engine = make_engine(postgres_url)
            yield Machines(urls, engine, started)
            engine.dispose()
        finally:
            for proc in started:
                proc.stop()
            fake_sentry.webhooks.url, fake_jira.webhooks.url = hooks
            fake_sentry.reset()
            fake_jira.reset()


def variants(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """ROUNDS deliveries about one issue, each a body of its own (its event count moved on)."""
    out = []
    for n in range(ROUNDS):
        body = copy.deepcopy(payload)
        body["data"]["issue"]["count"] = str(int(body["data"]["issue"]["count"]) + n)
        out.append(body)
    return out


def send_to_both(webs: list[str], payload: dict[str, Any]) -> list[httpx.Response]:
    """The same delivery to every web process at the same moment (a barrier releases them)."""
    barrier = threading.Barrier(len(webs))
    answers: list[httpx.Response | BaseException | None] = [None] * len(webs)
    order = random.sample(range(len(webs)), len(webs))  # no web is always first

    def send(i: int) -> None:
        try:
            barrier.wait(30)
            answers[i] = post_sentry(webs[i], payload)
        except BaseException as exc:
            answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for answer in answers:
        if not isinstance(answer, httpx.Response):
            raise AssertionError(f"a delivery got no answer: {answer!r}")
    return answers  # type: ignore[return-value]


def tickets_for(fake_jira: FakeJira, sentry_id: str) -> list[dict[str, Any]]:
    return [t for t in fake_jira.issues() if f"sentry-{sentry_id}" in t["labels"]]


def test_two_webs_and_two_workers_race_the_same_deliveries_one_ticket_each_nothing_lost(
    machines: Machines, fake_sentry: FakeSentry, fake_jira: FakeJira
) -> None:
    issues = [fake_sentry.file_issue(project="billing-api", title=f"machines {n}") for n in range(ISSUES)]
    created = {p["data"]["issue"]["id"]: p for _, p in fake_sentry.emitted() if p["action"] == "created"}
    assert set(created) == {i["id"] for i in issues}
    races = [body for payload in created.values() for body in variants(payload)]
    random.shuffle(races)  # rounds of one issue race each other too, not only the two webs

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(lambda body: send_to_both(machines.webs, body), races))

    stored_ids: set[int] = set()
    for pair in answered:
        assert [a.status_code for a in pair] == [202, 202], [a.text for a in pair]
        bodies = [a.json() for a in pair]
        # Both processes answer with the one row; exactly one of them stored it.
        assert len({b["delivery"] for b in bodies}) == 1, bodies
        assert sorted(b["duplicate"] for b in bodies) == [False, True], bodies
        stored_ids.add(bodies[0]["delivery"])
    assert len(stored_ids) == ISSUES * ROUNDS

    engine = machines.engine

    def all_finished() -> bool:
        rows = deliveries(engine)
        return bool(rows) and all(r.state not in DeliveryState.UNFINISHED for r in rows)

    def all_linked() -> bool:
        for issue in issues:
            links = links_of(engine, issue["id"])
            if not (links and links[-1].state == LinkState.ACTIVE and links[-1].remote_link_done
                    and links[-1].sentry_link_done):
                return False
        return True

    wait_for(all_linked, 180, interval=0.25, what=f"all {ISSUES} issues linked both ways")
    # Jira's webhooks about the tickets are deliveries too: all of them sent before "all processed".
    assert fake_jira.webhooks.drain(timeout=60)
    try:
        wait_for(all_finished, 120, interval=0.25, what="every delivery processed")
    except AssertionError as exc:
        unfinished = [(r.id, r.source, r.state, r.attempts, r.due_at, r.last_error)
                      for r in deliveries(engine) if r.state in DeliveryState.UNFINISHED]
        raise AssertionError(f"{exc}; unfinished: {unfinished}") from None

    sentry_rows = deliveries(engine, "sentry")
    assert {r.id for r in sentry_rows} == stored_ids  # every delivery stored once, none besides
    assert {r.state for r in deliveries(engine)} <= {DeliveryState.DONE, DeliveryState.IGNORED}
    assert letters(engine) == []
    for issue in issues:
        tickets = [t["key"] for t in tickets_for(fake_jira, issue["id"])]
        assert len(tickets) == 1, f"sentry issue {issue['id']} has tickets {tickets}"
        assert [link.jira_key for link in links_of(engine, issue["id"])] == tickets
    assert len(fake_jira.issues()) == ISSUES
    for proc in machines.processes:
        alive = proc.proc is not None and proc.proc.poll() is None
        assert alive, f"{proc.name} died:\n{proc.output()[-2000:]}"
