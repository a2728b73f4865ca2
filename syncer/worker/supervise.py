"""`syncer worker --processes N`: N Celery worker processes under one small supervisor.

One worker process is bound to one core by its GIL (docs/benchmarks.md), and Celery's prefork
children each run one task at a time, which wastes them on work that is mostly waiting on two APIs.
So `syncer worker` runs one worker process (a thread pool) per CPU by default, each a fresh
interpreter running `syncer worker --processes 1`: no fork after threads, and nothing shared between
them but the broker, the database and Redis.

`syncer worker` checks settings, policy and schema first, so a misconfiguration stops it once
instead of looping through restarts; then it replaces itself (execv: same pid, same output) with
`python -m syncer.worker.supervise`, which imports nothing else of syncer and holds ~15 MiB instead of the
~90 MiB those checks leave behind. The supervisor:

- a child that exits while no stop was asked for (killed, crashed) is started again, after 1 s,
  doubling while it keeps dying young, to at most 30 s; its delivery is redelivered as with any lost
  worker (acks_late, and the sweeper);
- SIGTERM or SIGINT: SIGTERM to every child (Celery's warm shutdown: running tasks finish), wait,
  exit 0; a second signal sends them SIGQUIT (Celery's cold shutdown, which with a thread pool
  still waits for the running tasks: threads cannot be stopped from outside), a third SIGKILL;
- children get SIGTERM when the supervisor dies, even by SIGKILL (Linux PR_SET_PDEATHSIG), so none
  linger; they run in their own process group, so a terminal's Ctrl-C reaches them only through it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

from syncer import logs

log = logging.getLogger("syncer.worker.supervise")  # also when run as __main__

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, as `os.process_cpu_count` in 3.13), at
    least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_processes(value: str | int) -> int:
    """`auto` (one per CPU) or a whole number of at least 1."""
    text = str(value).strip().lower()
    if text == "auto":
        return cpu_count()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"must be 'auto' or a whole number of at least 1, not {value!r}")


def child_hostname(hostname: str | None, index: int) -> str:
    """Celery's node name of child `index` (1-based): `name-1@host` from `--hostname name@host`,
    else `syncer-1@%h`. Each child needs its own: Celery's remote control and its duplicate-node
    warning go by it."""
    if not hostname:
        return f"syncer-{index}@%h"
    if "@" in hostname:
        name, host = hostname.split("@", 1)
        return f"{name}-{index}@{host}"
    return f"syncer-{index}@{hostname}"  # a bare host: Celery would call the node celery@<host>


def child_argv(index: int, *, pool: str, concurrency: int, hostname: str | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "syncer",
        "worker",
        "--processes",
        "1",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--hostname",
        child_hostname(hostname, index),
    ]


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `first`, doubling while a child dies within `healthy_after` of its start, at
    most `cap`; a child that ran longer starts over at `first`."""

    first: float = 1.0
    cap: float = 30.0
    healthy_after: float = 60.0

    def next(self, previous: float | None, ran_for: float) -> float:
        if previous is None or ran_for >= self.healthy_after:
            return self.first
        return min(self.cap, previous * 2)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that asks Linux to send the child SIGTERM when this process dies; None where
    there is no prctl."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(
            ctypes.c_int(PR_SET_PDEATHSIG),
            ctypes.c_ulong(signal.SIGTERM),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        if os.getppid() != parent:  # the supervisor died between fork and prctl: nobody to tell us
            os._exit(1)

    return preexec


@dataclass
class Child:
    index: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float | None = None  # the last restart delay, while it keeps dying young
    restart_at: float | None = None  # when to start it again (monotonic), if it is down

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class Supervisor:
    """Runs `commands` (one child each) until SIGTERM/SIGINT; see the module docstring."""

    commands: Sequence[Sequence[str]]
    backoff: Backoff = field(default_factory=Backoff)
    children: list[Child] = field(init=False)
    _signals: list[int] = field(init=False, default_factory=list)
    _stopping: bool = field(init=False, default=False)
    _asked: int = field(init=False, default=0)  # stop signals received

    def __post_init__(self) -> None:
        self.children = [Child(i, list(argv)) for i, argv in enumerate(self.commands, start=1)]

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        # Signals interrupt the select below through this pipe, SIGCHLD included (a child died).
        previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            for child in self.children:
                self._start(child)
            while True:
                self._handle_signals()
                self._reap()
                if self._stopping and not any(c.alive for c in self.children):
                    break
                if not self._stopping:
                    self._restart_due()
                select.select([wake_r], [], [], self._timeout())
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            log.info("worker supervisor: every worker process has stopped")
            return 0
        finally:
            self._terminate_leftovers()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGCHLD:
            self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            name = signal.Signals(self._signals.pop(0)).name
            self._asked += 1
            if self._asked == 1:
                self._stopping = True
                log.info(
                    "worker supervisor: %s: warm shutdown of the worker processes (running tasks "
                    "finish); a second signal is a cold shutdown, a third kills them",
                    name,
                )
                self._send(signal.SIGTERM)
            elif self._asked == 2:
                log.info("worker supervisor: %s again: cold shutdown of the worker processes", name)
                self._send(signal.SIGQUIT)
            else:
                # A thread pool's cold shutdown still waits for running tasks (threads cannot be
                # stopped from outside): an operator who insists gets SIGKILL. Their deliveries are
                # handed out again (the sweeper), and every task is idempotent.
                log.warning("worker supervisor: %s a third time: killing the worker processes", name)
                self._send(signal.SIGKILL)

    def _send(self, sig: signal.Signals) -> None:
        for child in self.children:
            child.restart_at = None
            if child.alive and child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)

    def _start(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            child.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                child.argv, preexec_fn=_die_with_parent(), process_group=0
            )
        except OSError as exc:
            child.proc = None
            self._schedule_restart(child, f"could not start: {exc}")
            return
        log.info("worker supervisor: worker %s started (pid %s)", child.index, child.proc.pid)

    def _reap(self) -> None:
        for child in self.children:
            if child.proc is None or child.proc.returncode is not None:
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if self._stopping:
                log.info(
                    "worker supervisor: worker %s (pid %s) stopped (%s)",
                    child.index,
                    child.proc.pid,
                    describe_exit(code),
                )
            else:
                why = f"(pid {child.proc.pid}) exited unexpectedly ({describe_exit(code)})"
                self._schedule_restart(child, why)

    def _schedule_restart(self, child: Child, why: str) -> None:
        child.delay = self.backoff.next(child.delay, time.monotonic() - child.started_at)
        child.restart_at = time.monotonic() + child.delay
        log.warning("worker supervisor: worker %s %s; restarting it in %gs", child.index, why, child.delay)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now:
                self._start(child)

    def _timeout(self) -> float:
        """Until the next restart is due; otherwise a signal or SIGCHLD wakes the loop (the cap is a
        safety net only)."""
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        return max(0.0, min([5.0, *(at - time.monotonic() for at in due)]))

    def _terminate_leftovers(self) -> None:
        """Leaving by an error: stop the children rather than orphan them."""
        alive = [c.proc for c in self.children if c.alive and c.proc is not None]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)  # then leave: PR_SET_PDEATHSIG has told them too


def run_workers(processes: int, *, pool: str, concurrency: int, hostname: str | None) -> int:
    commands = [
        child_argv(i, pool=pool, concurrency=concurrency, hostname=hostname) for i in range(1, processes + 1)
    ]
    log.info(
        "worker supervisor (pid %s): %s worker processes, %s pool of %s each",
        os.getpid(),
        processes,
        pool,
        concurrency,
    )
    return Supervisor(commands).run()


def become_supervisor(
    processes: int, *, pool: str, concurrency: int, hostname: str | None, log_level: str,
    log_format: str = "auto",
) -> NoReturn:
    """Replace this process (same pid, same stdout and stderr) by `python -m syncer.worker.supervise`.

    The checks before it import the database layer, both API clients and the policy: ~90 MiB
    resident that a supervisor never uses, where an interpreter with this module alone holds ~15."""
    argv = [
        sys.executable,
        "-m",
        "syncer.worker.supervise",
        "--processes",
        str(processes),
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
        "--log-format",
        log_format,
    ]
    if hostname:
        argv += ["--hostname", hostname]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m syncer.worker.supervise", description="see `syncer worker`"
    )
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--hostname", default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="auto", choices=logs.FORMATS)
    args = parser.parse_args(argv)
    # The logging of every syncer process (syncer.cli._setup_logging), without importing the CLI.
    logs.configure(args.log_level, args.log_format)
    return run_workers(args.processes, pool=args.pool, concurrency=args.concurrency, hostname=args.hostname)


if __name__ == "__main__":
    sys.exit(main())
