"""What each API (Sentry, Jira) last answered, shared by every process through Redis: the console's
overview shows it (last call, last error, the rate-limit headroom the server reports).

`Recorder` is a `syncer.ratelimit.Throttle` around the limiter (or around nothing): it sees every
answer. A success is written at most once a second per process, so a busy worker pays one Redis
write a second, not one per call; an error answer is written every time. Requests that got no
answer at all (a timeout, a refused connection) are not seen here: the worker's log has them.

The headroom headers, as the vendors describe them:
- Sentry: `X-Sentry-Rate-Limit-Remaining` / `-Limit` on every API answer, per caller and endpoint
  (docs.sentry.io/api/ratelimits);
- Jira: `X-RateLimit-Remaining` / `-Limit` (Jira Cloud's rate limiting page, as quoted in
  JRACLOUD-69262; Data Center's rate limiting sends the same names).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis

from syncer.ratelimit import Throttle

log = logging.getLogger(__name__)

SERVICES = ("sentry", "jira")
_HEADROOM_HEADERS = {
    "sentry": ("x-sentry-rate-limit-remaining", "x-sentry-rate-limit-limit"),
    "jira": ("x-ratelimit-remaining", "x-ratelimit-limit"),
}
SUCCESS_EVERY_SECONDS = 1.0


def key(service: str) -> str:
    return f"syncer:api:{service}"


class Recorder:
    """Passes `before`/`after` on to `inner` (the rate limiter, when there is one) and notes the answer."""

    def __init__(self, client: redis.Redis, service: str, inner: Throttle | None) -> None:
        self._client = client
        self._key = key(service)
        self._inner = inner
        self._headers = _HEADROOM_HEADERS.get(service, ("", ""))
        self._written_at = 0.0

    def before(self, method: str, url: str) -> None:
        if self._inner is not None:
            self._inner.before(method, url)

    def after(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        if self._inner is not None:
            self._inner.after(method, url, status, headers)
        now = time.time()
        failed = status >= 400
        if not failed and now - self._written_at < SUCCESS_EVERY_SECONDS:
            return
        self._written_at = now
        # The path only: a query string can carry search text, never anything the console needs.
        call = f"{method.upper()} {urlsplit(url).path}"[:300]
        fields = {"last_call_at": repr(now), "last_call": call, "last_status": str(status)}
        if failed:
            fields.update(last_error_at=repr(now), last_error=f"{call} answered {status}")
        lower = {name.lower(): value for name, value in headers.items()}
        remaining, limit = (lower.get(name) for name in self._headers)
        if remaining is not None:
            fields["remaining"] = str(remaining)[:40]
            fields["limit"] = str(limit or "")[:40]
            fields["remaining_at"] = repr(now)
        try:
            mapping: Any = fields  # redis-py's stubs want a Mapping of its own key union
            self._client.hset(self._key, mapping=mapping)
        except redis.RedisError:
            pass  # what the console shows is never worth failing a call over


def recording(client: redis.Redis | None, service: str, inner: Throttle | None) -> Throttle | None:
    """The throttle a client gets: `inner` with its answers recorded, when there is Redis to keep them."""
    if client is None:
        return inner
    return Recorder(client, service, inner)


@dataclass(frozen=True)
class LastCalls:
    """One API as the console shows it (times in seconds since the epoch; None: never)."""

    service: str
    last_call_at: float | None = None
    last_call: str = ""
    last_status: str = ""
    last_error_at: float | None = None
    last_error: str = ""
    remaining: str = ""
    limit: str = ""
    remaining_at: float | None = None


def read(client: redis.Redis | None, service: str) -> LastCalls:
    if client is None:
        return LastCalls(service)
    try:
        raw = client.hgetall(key(service))
    except redis.RedisError:
        return LastCalls(service)
    values = {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }

    def moment(name: str) -> float | None:
        try:
            return float(values[name])
        except (KeyError, ValueError):
            return None

    return LastCalls(
        service,
        last_call_at=moment("last_call_at"), last_call=values.get("last_call", ""),
        last_status=values.get("last_status", ""), last_error_at=moment("last_error_at"),
        last_error=values.get("last_error", ""), remaining=values.get("remaining", ""),
        limit=values.get("limit", ""), remaining_at=moment("remaining_at"),
    )
