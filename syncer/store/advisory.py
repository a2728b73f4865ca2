"""PostgreSQL's session-level advisory locks: what `syncer.locks` holds when there is no Redis.

Session-level, not a row lock: a row lock would block our own writes to that row from the
holder's other sessions. The lock is freed with its connection, so a holder that dies frees it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine

_POLL_SECONDS = 0.1


@contextmanager
def advisory_lock(engine: Engine, keys: tuple[int, int], *, wait: float) -> Iterator[bool]:
    """Try for the lock named by the two int4 `keys` until `wait` seconds have passed; yields
    whether it is held, and releases it on the way out when it was."""
    with engine.connect() as conn:
        params = {"cls": keys[0], "id": keys[1]}
        deadline = time.monotonic() + wait
        while not conn.execute(text("SELECT pg_try_advisory_lock(:cls, :id)"), params).scalar():
            conn.rollback()
            if time.monotonic() >= deadline:
                yield False
                return
            time.sleep(_POLL_SECONDS)
        conn.commit()  # the lock is the session's; do not sit idle in a transaction
        try:
            yield True
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:cls, :id)"), params)
            conn.commit()
