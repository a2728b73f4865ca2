"""The one lock implementation behind both uses (`syncer.locks`): the link lock and the reconcile
run lock, on Redis and, without Redis, on PostgreSQL's advisory locks. The link lock's Redis cases
are in test_status_sync.py, the run lock's meeting of two real runs in test_reconcile.py."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import psycopg
import pytest
import redis

from syncer.errors import Busy, LockLost, TransientError
from syncer.locks import RUN_LOCK_KEY, LockStores, link_lock, run_lock
from syncer.store.engine import make_engine

POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def stores(client: redis.Redis | None, url: str) -> LockStores:
    return cast(LockStores, SimpleNamespace(redis=client, engine=make_engine(url)))


@pytest.fixture
def postgres() -> Iterator[LockStores]:
    """Advisory locks need no tables: the server's own database will do."""
    try:
        psycopg.connect(POSTGRES, connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 ({type(exc).__name__})")
    held = stores(None, POSTGRES)
    yield held
    held.engine.dispose()


def a_link_id() -> int:
    """A link id no other test session on this server locks (advisory keys are the server's)."""
    return secrets.randbelow(2**31 - 1_000_000) + 1_000_000


def test_busy_is_a_transient_error_with_a_wait() -> None:
    assert issubclass(Busy, TransientError) and not issubclass(LockLost, TransientError)


@pytest.mark.postgres
def test_without_redis_a_link_lock_on_postgresql_is_held_by_one_at_a_time(postgres: LockStores) -> None:
    link_id = a_link_id()
    with link_lock(postgres, link_id):
        busy = f"link {link_id} is busy in another worker"
        with pytest.raises(Busy, match=busy) as refused, link_lock(postgres, link_id, wait=0.2):
            pass
        assert refused.value.retry_after
        with link_lock(postgres, link_id + 1, wait=0.2):  # another link is another lock
            pass
    with link_lock(postgres, link_id, wait=0.2):  # released on the way out
        pass


@pytest.mark.postgres
def test_without_redis_the_run_lock_on_postgresql_refuses_a_second_run_at_once(
    postgres: LockStores,
) -> None:
    with run_lock(postgres) as renew:
        renew()  # nothing expires: the lock lasts as long as its connection
        busy = r"another reconciliation is running \(it holds the database's lock\)"
        with pytest.raises(Busy, match=busy), run_lock(postgres):
            pass
    with run_lock(postgres):
        pass


def test_a_run_lock_that_expired_under_its_holder_is_lost_on_renewal(redis_client: redis.Redis) -> None:
    with run_lock(stores(redis_client, "sqlite://")) as renew:
        assert redis_client.get(RUN_LOCK_KEY)
        renew()
        redis_client.delete(RUN_LOCK_KEY)  # as if it had expired while the holder stalled
        with pytest.raises(LockLost, match="expired"):
            renew()
    assert not redis_client.exists(RUN_LOCK_KEY)
