"""Locks across threads, worker processes and hosts: one implementation, two uses.

- `link_lock`: events for one link are applied one at a time (the webhook handlers, and
  reconcile's repairs, which go through the same code);
- `run_lock`: one reconciliation at a time in the whole deployment (two beats started by mistake,
  or a person running `syncer reconcile` during the scheduled run, cannot both repair);
- `filer_lock`: one bulk filer per Jira host (`syncer.sync.filing`), so gathered issues are filed
  in batches as large as the backlog, not split between filers racing for the same budget.

Redis when there is one: the lock's value names its holder, and it expires when the holder dies
(`renew` pushes the expiry back for a holder that works long). Without Redis, a PostgreSQL
advisory lock (`syncer.store.advisory`), freed with the holder's connection. SQLite without Redis
is `syncer dev` on one machine: proceed; the per-delivery claim is the only guard there.

A lock another holder has is `Busy` (a TransientError: a delivery is retried shortly); one that
expired under its holder is `LockLost`, raised by `renew`. Both are in `syncer.errors`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import redis
from sqlalchemy.engine import Engine

from syncer.errors import Busy, LockLost, TransientError
from syncer.store.advisory import advisory_lock

log = logging.getLogger(__name__)

LINK_LOCK_EXPIRY_SECONDS = 60.0  # the default of `link_lock_seconds`
LINK_LOCK_WAIT_SECONDS = 10
RUN_LOCK_KEY = "syncer:reconcile:lock"
# Renewed after every page of links: a run that dies frees the lock within this.
RUN_LOCK_EXPIRY_SECONDS = 120
BUSY_RETRY_SECONDS = 2.0
# PostgreSQL advisory locks take two int4 keys: the first says which kind of lock, the second which one.
_LINK_CLASS = 0x53594E43  # "SYNC"
_RUN_CLASS = 0x52434E43  # "RCNC"
_MESSAGE_CLASS = 0x534C434B  # "SLCK"
_FILER_CLASS = 0x46494C45  # "FILE"
FILER_LOCK_EXPIRY_SECONDS = 120  # renewed after every batch

Renew = Callable[[], None]


class LockStores(Protocol):
    """What a lock uses of a Runtime: Redis, when there is one, and the database."""

    @property
    def redis(self) -> redis.Redis | None: ...

    @property
    def engine(self) -> Engine: ...


def link_lock(
    stores: LockStores, link_id: int, *, wait: float = LINK_LOCK_WAIT_SECONDS,
    expiry: float = LINK_LOCK_EXPIRY_SECONDS,
) -> AbstractContextManager[Renew]:
    """Hold link `link_id`'s lock, waiting up to `wait` seconds for another holder to let go;
    `expiry`: how long after its last renewal a holder that died still holds it
    (`SYNCER_LINK_LOCK_SECONDS`)."""
    return _hold(
        stores,
        _Lock(
            name=f"lock for link {link_id}",
            redis_key=f"syncer:link:{link_id}",
            advisory=(_LINK_CLASS, link_id),
            expiry_seconds=expiry,
            refusal=lambda _holder: f"link {link_id} is busy in another worker",
        ),
        wait=wait,
    )


def message_lock(stores: LockStores, sentry_issue_id: str) -> AbstractContextManager[Renew]:
    """Hold the lock of an issue's Slack message: one post of it, and its updates in order."""
    # The same number in every process (str hashes are salted per process).
    number = int(sentry_issue_id) if sentry_issue_id.isdigit() else zlib.crc32(sentry_issue_id.encode())
    return _hold(
        stores,
        _Lock(
            name=f"lock for the Slack message of sentry issue {sentry_issue_id}",
            redis_key=f"syncer:slack-message:{sentry_issue_id}",
            advisory=(_MESSAGE_CLASS, number % 2**31),
            expiry_seconds=LINK_LOCK_EXPIRY_SECONDS,
            refusal=lambda _holder: f"the Slack message of sentry issue {sentry_issue_id} is busy",
        ),
        wait=LINK_LOCK_WAIT_SECONDS,
    )


def run_lock(stores: LockStores) -> AbstractContextManager[Renew]:
    """Hold the deployment's reconcile lock, or raise `Busy` naming its holder at once."""
    return _hold(
        stores,
        _Lock(
            name="reconcile lock",
            redis_key=RUN_LOCK_KEY,
            advisory=(_RUN_CLASS, 0),
            expiry_seconds=RUN_LOCK_EXPIRY_SECONDS,
            refusal=lambda holder: f"another reconciliation is running ({holder}); this one did nothing",
        ),
        wait=0,
    )


def filer_lock_key(host: str) -> str:
    return f"syncer:filer:{host}"


def filer_lock(stores: LockStores, host: str) -> AbstractContextManager[Renew]:
    """Hold the bulk filer's lock for Jira `host`, or raise `Busy` at once."""
    return _hold(
        stores,
        _Lock(
            name=f"bulk filer lock of {host}",
            redis_key=filer_lock_key(host),
            advisory=(_FILER_CLASS, zlib.crc32(host.encode()) % 2**31),
            expiry_seconds=FILER_LOCK_EXPIRY_SECONDS,
            refusal=lambda holder: f"another filer is running ({holder})",
        ),
        wait=0,
    )


@dataclass(frozen=True)
class _Lock:
    name: str  # in errors and logs
    redis_key: str
    advisory: tuple[int, int]
    expiry_seconds: float
    refusal: Callable[[str], str]  # the Busy message, given who holds the lock


@contextmanager
def _hold(stores: LockStores, lock: _Lock, *, wait: float) -> Iterator[Renew]:
    if stores.redis is not None:
        with _redis_hold(stores.redis, lock, wait=wait) as renew:
            yield renew
        return
    if stores.engine.dialect.name == "postgresql":
        with advisory_lock(stores.engine, lock.advisory, wait=wait) as held:
            if not held:
                raise Busy(lock.refusal("it holds the database's lock"), retry_after=BUSY_RETRY_SECONDS)
            yield _nothing_to_renew
        return
    yield _nothing_to_renew


def _nothing_to_renew() -> None:
    """An advisory lock lasts as long as its connection (and SQLite has none): no expiry to push back."""


@contextmanager
def _redis_hold(client: redis.Redis, lock: _Lock, *, wait: float) -> Iterator[Renew]:
    held = client.lock(lock.redis_key, timeout=lock.expiry_seconds, thread_local=False)
    holder = f"{socket.gethostname()} pid {os.getpid()} since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
    token = f"{holder} [{secrets.token_hex(4)}]"
    try:
        acquired = held.acquire(blocking=wait > 0, blocking_timeout=wait, token=token.encode())
    except redis.RedisError as exc:
        raise TransientError(
            f"{lock.name}: Redis: {type(exc).__name__}", retry_after=BUSY_RETRY_SECONDS
        ) from None
    if not acquired:
        raise Busy(lock.refusal(_holder(client, lock.redis_key)), retry_after=BUSY_RETRY_SECONDS)

    def renew() -> None:
        try:
            held.extend(lock.expiry_seconds, replace_ttl=True)
        except redis.exceptions.LockNotOwnedError:
            raise LockLost(
                f"the {lock.name} expired while its holder stalled; another may hold it now, so this "
                "one stops"
            ) from None
        except redis.RedisError as exc:
            log.warning(
                "%s not renewed (%s); it holds for %ss", lock.name, type(exc).__name__, lock.expiry_seconds
            )

    try:
        yield renew
    finally:
        try:
            held.release()
        except redis.exceptions.LockError:
            # It expired while we worked (a very slow API): someone else may hold it now.
            log.warning("%s expired before it was released", lock.name)
        except redis.RedisError as exc:
            log.warning("%s not released (%s); it expires by itself", lock.name, type(exc).__name__)


def _holder(client: redis.Redis, key: str) -> str:
    try:
        raw = client.get(key)
    except redis.RedisError:
        raw = None
    if not raw:
        return "its holder finished just now"
    name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return name.rsplit(" [", 1)[0]
