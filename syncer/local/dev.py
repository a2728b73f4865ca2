"""`syncer dev`: web, worker and beat as child processes of one foreground command.

Embedded defaults: the SQLite file from SYNCER_DATABASE_URL, and the Redis at SYNCER_BROKER_URL if
one answers, else kombu's SQLAlchemy transport on a local SQLite file (no server needed).
Ctrl-C stops every child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import redis

from syncer.settings import Settings
from syncer.store import migrate
from syncer.store.engine import make_engine

EMBEDDED_BROKER = "sqla+sqlite:///.syncer-broker.sqlite"


def redis_answers(url: str) -> bool:
    if not url.startswith(("redis://", "rediss://")):
        return False
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def choose_broker(settings: Settings) -> str:
    if not settings.broker_url.startswith(("redis://", "rediss://")) or redis_answers(settings.broker_url):
        return settings.broker_url
    return EMBEDDED_BROKER


class ProcessGroup:
    """Children that live and die together."""

    def __init__(self, log: IO[bytes] | None = None) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.log = log  # None: children write to this terminal

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        child = subprocess.Popen(list(argv), env=dict(env), stdout=self.log, stderr=self.log)  # noqa: S603
        self.children.append((name, child))

    def first_exited(self) -> str | None:
        for name, child in self.children:
            if child.poll() is not None:
                return name
        return None

    def stop(self, timeout: float = 10.0) -> None:
        for _, child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def syncer_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "syncer", *args]


def start_services(
    settings: Settings,
    env: Mapping[str, str],
    *,
    port: int,
    concurrency: int = 8,
    log: IO[bytes] | None = None,
) -> tuple[ProcessGroup, str]:
    """Migrate, then start web, worker and beat. Returns the group and the broker in use."""
    migrate.upgrade(make_engine(settings.database_url))
    broker = choose_broker(settings)
    child_env = {**env, "SYNCER_BROKER_URL": broker}
    group = ProcessGroup(log)
    group.start("web", syncer_argv("web", "--host", "127.0.0.1", "--port", str(port)), child_env)
    # One worker process: a laptop's many cores would each get one, for a handful of demo events.
    worker_argv = syncer_argv("worker", "--processes", "1", "--concurrency", str(concurrency))
    group.start("worker", worker_argv, child_env)
    schedule = Path(".syncer-beat-schedule").resolve()
    group.start("beat", syncer_argv("beat", "--schedule", str(schedule)), child_env)
    return group, broker


def wait(group: ProcessGroup) -> int:
    """Block until Ctrl-C or a child dies; then stop them all."""
    try:
        while True:
            dead = group.first_exited()
            if dead:
                print(f"syncer dev: {dead} exited; stopping the others", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        group.stop()


def run_dev(settings: Settings, *, port: int) -> int:
    settings.require_services()
    group, broker = start_services(settings, os.environ, port=port)
    print(f"syncer dev: web on http://127.0.0.1:{port}, broker {broker.split('@')[-1]}, Ctrl-C stops all")
    return wait(group)
