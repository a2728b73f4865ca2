"""The stack under measurement: a private Redis, a fresh database, the fake Sentry and Jira, and real
`syncer web` / `syncer worker` processes started the way an operator starts them.

Everything binds to 127.0.0.1 and is torn down by the benchmark that started it. Nothing here is a
test double of syncer itself: the processes are the real commands with the real settings.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import redis

REPO = Path(__file__).resolve().parent.parent
POLICY = Path(__file__).resolve().parent / "policy.toml"
POSTGRES_ADMIN = os.environ.get("SYNCER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

SENTRY_SECRET = "bench-sentry-client-secret"
SENTRY_TOKEN = "bench-sentry-token"
JIRA_EMAIL = "bench-bot@example.com"
JIRA_TOKEN = "bench-jira-token"
JIRA_WEBHOOK_SECRET = "bench-jira-webhook-secret"
ORG = "acme"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


class Broker:
    """A Redis of the benchmark's own: a private redis-server when the binary is there, else a free
    database (1-15) of the Redis on 127.0.0.1:6379, claimed the way the test suite claims one."""

    def __init__(self) -> None:
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._claim: tuple[redis.Redis, str] | None = None

    def start(self) -> Broker:
        binary = shutil.which("redis-server")
        if binary:
            port = free_port()
            self._dir = tempfile.mkdtemp(prefix="syncer-bench-redis-")
            self._proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self._dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.url = f"redis://127.0.0.1:{port}/0"
            wait_for(lambda: _redis_answers(self.url), 10, "redis-server")
            return self
        admin = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
        try:
            admin.ping()
        except redis.RedisError:
            raise RuntimeError("no redis-server binary and no Redis on 127.0.0.1:6379") from None
        for db in range(1, 16):
            key = f"syncer-test:db:{db}"
            if admin.set(key, f"bench-{os.getpid()}", nx=True, ex=3600):
                self._claim = (admin, key)
                self.url = f"redis://127.0.0.1:6379/{db}"
                redis.Redis.from_url(self.url).flushdb()
                return self
        raise RuntimeError("all Redis databases 1-15 of 127.0.0.1:6379 are claimed")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._claim is not None:
            admin, key = self._claim
            with contextlib.suppress(redis.RedisError):
                redis.Redis.from_url(self.url).flushdb()
                admin.delete(key)
            self._claim = None


def postgres_available() -> bool:
    try:
        import psycopg

        psycopg.connect(POSTGRES_ADMIN, connect_timeout=2).close()
    except Exception:
        return False
    return True


class Database:
    """A fresh, migrated database: an SQLite file in `workdir`, or a new PostgreSQL database that is
    dropped again at the end."""

    def __init__(self, kind: str, workdir: Path) -> None:
        if kind not in ("sqlite", "postgres"):
            raise ValueError(f"database kind must be sqlite or postgres, not {kind!r}")
        self.kind = kind
        self.workdir = workdir
        self.url = ""
        self._pg_name: str | None = None
        # count()'s connection, made once: the benchmarks poll every 50 ms, in the process whose CPU they
        # report, and an engine per query cost ~1.3 ms of CPU.
        self._reader: Any = None

    def create(self) -> Database:
        from syncer.store import migrate
        from syncer.store.engine import make_engine

        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.workdir / 'syncer.db'}"
        else:
            import psycopg

            self._pg_name = f"syncer_bench_{os.getpid()}_{secrets.token_hex(3)}"
            with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'CREATE DATABASE "{self._pg_name}"')
            base = POSTGRES_ADMIN.rsplit("/", 1)[0]
            self.url = f"{base}/{self._pg_name}"
        engine = make_engine(self.url)
        migrate.upgrade(engine)
        engine.dispose()
        return self

    def count(self, sql: str) -> int:
        return self.counts({"n": sql})["n"]

    def counts(self, queries: Mapping[str, str]) -> dict[str, int]:
        """Several `SELECT count(*) ...` as one statement (one snapshot). SQLite is read with the standard
        library on a connection of its own: a reader in WAL mode takes no lock, so polling neither queues
        on syncer's write lock nor holds up its writers; PostgreSQL through one kept engine."""
        names = list(queries)
        sql = "SELECT " + ", ".join(f"({queries[name]})" for name in names)
        if self.kind == "sqlite":
            if self._reader is None:
                self._reader = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30,
                                               isolation_level=None, check_same_thread=False)
            row = self._reader.execute(sql).fetchone()
        else:
            from sqlalchemy import text

            from syncer.store.engine import make_engine

            if self._reader is None:
                self._reader = make_engine(self.url, pool_size=1)
            with self._reader.connect() as connection:
                row = connection.execute(text(sql)).one()
        return {name: int(value) for name, value in zip(names, row, strict=True)}

    def drop(self) -> None:
        if self._reader is not None:
            if self.kind == "sqlite":
                self._reader.close()
            else:
                self._reader.dispose()
            self._reader = None
        if self._pg_name is None:
            return
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')
        self._pg_name = None


def syncer_env(*, database_url: str, broker_url: str, sentry_url: str, jira_url: str,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the syncer processes: every setting at its default but the endpoints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCER_")}
    env.update({
        "SYNCER_CONFIG": str(POLICY),
        "SYNCER_DATABASE_URL": database_url,
        "SYNCER_BROKER_URL": broker_url,
        "SYNCER_SENTRY_URL": sentry_url,
        "SYNCER_SENTRY_ORG": ORG,
        "SYNCER_SENTRY_TOKEN": SENTRY_TOKEN,
        "SYNCER_SENTRY_CLIENT_SECRET": SENTRY_SECRET,
        "SYNCER_JIRA_URL": jira_url,
        "SYNCER_JIRA_EMAIL": JIRA_EMAIL,
        "SYNCER_JIRA_TOKEN": JIRA_TOKEN,
        "SYNCER_JIRA_WEBHOOK_SECRET": JIRA_WEBHOOK_SECRET,
    })
    env.update(extra or {})
    return env


@dataclass
class Process:
    """A child process with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Process:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - open as long as the child runs
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=REPO)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def syncer_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "syncer", *args]


def start_web(env: dict[str, str], workdir: Path, *, extra_args: tuple[str, ...] = ()) -> tuple[Process, str]:
    port = free_port()
    web = Process("web", syncer_command("web", "--host", "127.0.0.1", "--port", str(port), *extra_args),
                  env, workdir / "web.log").start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(url) or web.check_alive(), 60, "syncer web to answer /healthz")
    return web, url


def start_worker(env: dict[str, str], workdir: Path, *, extra_args: tuple[str, ...] = (),
                 log_name: str = "worker") -> Process:
    argv = syncer_command("worker", *extra_args)
    worker = Process(log_name, argv, env, workdir / f"{log_name}.log").start()
    # syncer's own line on Celery's worker_ready signal (syncer.worker.app), not Celery's wording.
    wait_for(lambda: "syncer worker ready" in worker.output() or worker.check_alive(), 90,
             "syncer worker to be ready")
    return worker


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (a prefork worker's children), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def status_kib(pid: int, field_name: str) -> int:
    """A `/proc/<pid>/status` memory figure (VmRSS, VmHWM) in KiB; 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """How many cores were busy on average between two `machine_jiffies()`, whoever used them."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return (os.cpu_count() or 1) * busy / total if total else 0.0


def machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {"cores": os.cpu_count() or 0, "load1": round(load1, 2), "load5": round(load5, 2),
            "python": sys.version.split()[0]}


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
