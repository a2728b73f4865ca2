"""What both fake servers share: running an ASGI app on loopback, fault injection, a call log,
and sending webhooks back the way the real services do.

The fakes are real HTTP servers (uvicorn in a background thread), so the real `jira` library and
our httpx client talk to them exactly as they would to Jira and Sentry. Tests, the sandbox and the
benchmarks drive them through their Python objects (state, faults, calls) in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import hashlib
import hmac
import json
import logging
import queue
import re
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def compact_json(payload: Any) -> bytes:
    """Serialise as Sentry does: compact separators, ASCII only."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass
class Fault:
    """One injected misbehaviour. `times` counts down; `None` means forever.

    status: answer this status instead of handling the request (e.g. 429, 503).
    after: handle the request first, then answer `status` anyway (an "ambiguous" failure:
        the write happened but the client never learns it).
    drop: close the connection without an answer (after handling when `after`).
    delay: seconds to wait before answering (a slow or hung API); with `after`, the wait comes
        after handling, so a client that times out has still made the write.
    """

    method: str
    path: str  # a regular expression, matched with re.search against the URL path
    status: int = 500
    times: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    after: bool = False
    drop: bool = False
    delay: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method.upper() == method.upper()) and bool(
            re.search(self.path, path)
        )


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: str
    at: float


class CallLog:
    """Every request the fake answered, for tests and benchmarks that count API calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self.keep_calls = True  # the benchmarks turn this off and read counts only

    def record(self, method: str, path: str, query: str) -> None:
        with self._lock:
            self._counts[(method, path)] += 1
            if self.keep_calls:
                self._calls.append(Call(method, path, query, time.time()))

    def calls(self, method: str | None = None, path: str | None = None) -> list[Call]:
        """Calls so far; `path` is a regular expression searched in the path."""
        with self._lock:
            snapshot = list(self._calls)
        return [
            c
            for c in snapshot
            if (method is None or c.method == method) and (path is None or re.search(path, c.path))
        ]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self._lock:
            items = list(self._counts.items())
        return sum(
            n
            for (m, p), n in items
            if (method is None or m == method) and (path is None or re.search(path, p))
        )

    def writes(self) -> int:
        return sum(self.count(m) for m in ("POST", "PUT", "DELETE", "PATCH"))

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._counts.clear()


class Misbehaviour:
    """ASGI middleware: call log, latency, and injected faults, in front of the fake's real routes."""

    def __init__(self, app: ASGIApp, calls: CallLog, faults: list[Fault], lock: threading.Lock) -> None:
        self.app = app
        self.calls = calls
        self.faults = faults
        self.lock = lock
        self.latency = 0.0
        self.exempt = re.compile(r"^/_fake/")
        # The body of an injected fault that has none of its own; each fake sets it to its vendor's
        # error shape (Jira: {"errorMessages": [...]}, Sentry: {"detail": "..."}).
        self.fault_body: Callable[[Fault], Any] | None = None

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.calls.record(method, path, scope.get("query_string", b"").decode("latin-1"))
        if self.latency:
            await asyncio.sleep(self.latency)
        fault = self._take_fault(method, path)
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.delay and not fault.after:
            await asyncio.sleep(fault.delay)
        if fault.after:
            # Run the real handler, throw its answer away: the write happened, the client can't tell.
            async def swallow(message: Any) -> None:
                return None

            await self.app(scope, receive, swallow)
            # Then be slow: a client that times out meanwhile has still made the write.
            if fault.delay:
                await asyncio.sleep(fault.delay)
        if fault.drop:
            await _drop_connection(send)
        if fault.body is not None:
            body = fault.body
        elif self.fault_body is not None:
            body = self.fault_body(fault)
        else:
            body = {"errorMessages": [f"injected {fault.status}"]}
        response = JSONResponse(body, status_code=fault.status, headers=fault.headers)
        await response(scope, receive, send)


async def _drop_connection(send: Send) -> None:
    """Close the connection without a byte of answer. ASGI has no message for that, but uvicorn closes
    the socket when an app fails after starting its response, and status 0 fails before anything is
    written. (Raising before starting would make uvicorn answer 500 instead.)"""
    with contextlib.suppress(KeyError, ValueError, RuntimeError):
        await send({"type": "http.response.start", "status": 0, "headers": []})
    raise ConnectionAbortedError("fake dropped the connection")


class WebhookSender:
    """Delivers webhooks from a background thread, in order, like the real services (which also
    retry a few times when the receiver cannot be reached)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url: str | None = None
        self.enabled = True
        self.sent: list[tuple[dict[str, str], bytes, int]] = []  # headers, body, answer status
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{name}-webhooks", daemon=True)
        self._thread.start()

    def send(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        refresh: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """Queue one delivery. `refresh`, when given, makes the headers of each retry (Sentry sends a
        new Request-ID and timestamp on every attempt); without it a retry repeats `headers`."""
        if not self.enabled or not self.url:
            return
        self._queue.put(_Delivery(self.url, dict(headers), body, refresh))

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook has been delivered (or given up on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def discard_pending(self) -> int:
        """Drop the deliveries still queued (not the one in flight); how many were dropped. For a
        fake's reset(), so one test's webhooks do not reach the next one."""
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return dropped
            self._queue.task_done()
            if item is None:  # a close() raced us: keep it
                self._queue.put(None)
                return dropped
            dropped += 1

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        with _Poster(timeout=5.0) as client:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    headers, status = self._deliver(client, item)
                    with self._lock:
                        self.sent.append((headers, item.body, status))
                finally:
                    self._queue.task_done()

    def _deliver(self, client: _Poster, item: _Delivery) -> tuple[dict[str, str], int]:
        """Make the attempts for one delivery: the headers of the last one and its answer's status (0:
        none). Three attempts, retrying on 5xx and on no answer; a fake with its own vendor's retry
        rules overrides this."""
        headers = item.headers
        status = 0
        for attempt in range(3):
            if attempt and item.refresh is not None:
                headers = dict(item.refresh())
            try:
                status = client.post(item.url, item.body, headers)
                if status < 500:
                    break
            except (httpx.HTTPError, OSError, ValueError):
                status = 0
            time.sleep(0.2 * (attempt + 1))
        return headers, status


class _Poster:
    """POSTs webhooks over keep-alive HTTP/1.1 connections on plain sockets: the requests httpx would
    make (its default headers, see `_httpx_headers`), answers read as far as their status and framing.
    One webhook per ticket through httpx was ~15 % of the fakes' CPU in bench/e2e.py: ~300 µs of CPU per
    POST back to back, against ~25 here (http.client: ~60). Plain `http://` URLs only; any other goes
    through httpx.

    Failures raise OSError (refused, reset, closed before answering, timed out) or ValueError (an answer
    that is not HTTP), where httpx raised httpx.HTTPError."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._connections: dict[tuple[str, int], _Connection] = {}
        self._httpx: httpx.Client | None = None

    def __enter__(self) -> _Poster:
        return self

    def __exit__(self, *exc: object) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        if self._httpx is not None:
            self._httpx.close()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """The answer's status."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or "@" in parts.netloc:
            if self._httpx is None:
                self._httpx = httpx.Client(timeout=self.timeout)
            return self._httpx.post(url, content=body, headers=headers).status_code
        key = (parts.hostname, parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1"]
        host = parts.netloc.removesuffix(":80")  # as httpx writes it: no default port
        for name, value in _httpx_headers(host, headers, len(body)):
            if _BAD_HEADER.search(name) or _BAD_HEADER.search(value):
                raise ValueError(f"invalid header {name!r}: {value!r}")
            lines.append(f"{name}: {value}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body
        connection = self._connection(key)
        try:
            connection.sock.sendall(request)
            status, close = connection.read_answer()
        except BaseException:
            self._drop(key)
            raise
        if close:
            self._drop(key)
        return status

    def _connection(self, key: tuple[str, int]) -> _Connection:
        connection = self._connections.get(key)
        if connection is not None:
            # Reuse only an idle connection with nothing to read: readable means the receiver closed it
            # (what httpcore checks too before reusing one).
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if not readable and not connection.buffer:
                return connection
            self._drop(key)
        sock = socket.create_connection(key, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = self._connections[key] = _Connection(sock)
        return connection

    def _drop(self, key: tuple[str, int]) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()


_BAD_HEADER = re.compile(r"[\r\n\0]")
_MAX_HEAD = 65536


class _Connection:
    """One client connection: the socket and what has been read from it but not consumed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the receiver closed the connection before answering in full")
        self.buffer += chunk

    def _until(self, marker: bytes) -> bytes:
        """Up to and without `marker`, consumed with it."""
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > _MAX_HEAD:
                raise ValueError("answer head too long")
            self._fill()
        data = bytes(self.buffer[:end])
        del self.buffer[:end + len(marker)]
        return data

    def _skip(self, n: int) -> None:
        while len(self.buffer) < n:
            self._fill()
        del self.buffer[:n]

    def read_answer(self) -> tuple[int, bool]:
        """Read one answer (after any 1xx): its status, and whether the connection must close."""
        while True:
            head = self._until(b"\r\n\r\n").split(b"\r\n")
            version, _, rest = head[0].partition(b" ")
            if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
                raise ValueError(f"not an HTTP/1.x answer: {head[0][:100]!r}")
            status = int(rest[:3])
            fields: dict[bytes, bytes] = {}
            for line in head[1:]:
                name, colon, value = line.partition(b":")
                if not colon:
                    raise ValueError(f"malformed header line {line[:100]!r}")
                fields[name.strip().lower()] = value.strip().lower()
            if not 100 <= status < 200:
                break
        tokens = fields.get(b"connection", b"")
        close = b"close" in tokens or (version == b"HTTP/1.0" and b"keep-alive" not in tokens)
        if status in (204, 304):
            pass
        elif b"chunked" in fields.get(b"transfer-encoding", b""):
            while (size := int(self._until(b"\r\n").split(b";")[0].strip(), 16)) > 0:
                self._skip(size + 2)
            while self._until(b"\r\n"):  # trailer fields, up to the empty line
                pass
        elif b"content-length" in fields:
            self._skip(int(fields[b"content-length"]))
        else:  # the body runs to the end of the connection
            try:
                while True:
                    self._fill()
                    self.buffer.clear()
            except ConnectionError:
                pass
            close = True
        return status, close


@functools.cache
def _httpx_defaults() -> tuple[tuple[str, str], ...]:
    """The headers an httpx.Client sends unless told otherwise (Accept, Accept-Encoding, Connection,
    User-Agent), asked of httpx itself."""
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204))) as client:
        return tuple((name.decode(), value.decode()) for name, value in client.headers.raw)


def _httpx_headers(host: str, headers: Mapping[str, str], length: int) -> list[tuple[str, str]]:
    """The header lines httpx would send for `client.post(url, content=body, headers=headers)`: Host,
    the client's defaults less the ones given, the given ones, Content-Length."""
    given = {name.lower() for name in headers}
    lines = [] if "host" in given else [("Host", host)]
    lines += [(name, value) for name, value in _httpx_defaults() if name.lower() not in given]
    lines += headers.items()
    if "content-length" not in given:
        lines.append(("Content-Length", str(length)))
    return lines


@dataclass(frozen=True)
class _Delivery:
    url: str
    headers: dict[str, str]
    body: bytes
    refresh: Callable[[], Mapping[str, str]] | None = None


class FakeServer:
    """Runs an ASGI app on 127.0.0.1 in a daemon thread. `url` is known once `start()` returns."""

    def __init__(self, app: ASGIApp, port: int = 0, clock: Callable[[], float] | None = None) -> None:
        """`clock`: the server's own time (Unix seconds) for its `Date` header, for a fake whose
        clock is off; uvicorn's own header, on the machine's clock, otherwise."""
        if clock is not None:
            app = _DatedBy(app, clock)
        self.app = app
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without
        # it every answer with a body waits ~40 ms for a delayed ACK (Nagle) on loopback.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                backlog=2048, timeout_keep_alive=30, date_header=clock is None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> FakeServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


class _DatedBy:
    """ASGI middleware: every answer's `Date` header from the given clock (RFC 9110 section 6.6.1)."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float]) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Any) -> None:
            if message["type"] == "http.response.start":
                date = email.utils.formatdate(self.clock(), usegmt=True).encode()
                message = {**message, "headers": [*message.get("headers", []), (b"date", date)]}
            await send(message)

        await self.app(scope, receive, dated)


Handler = Callable[[Request], Awaitable[Response]]


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
class ReceivedWebhook:
    headers: dict[str, str]  # lower-case names
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    """How a `WebhookInbox` answers one request: a status, extra headers, and a delay before answering
    (a slow receiver, for senders that time out)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class WebhookInbox:
    """A tiny HTTP receiver for the webhooks a fake sends: records every request (headers lower-cased,
    raw body) as it arrives and answers from `answers` in turn (a status or an `Answer`; then 200), so
    tests can make the sender retry.

        inbox = WebhookInbox().start()
        fake.webhooks.url = inbox.url
        ...
        (hook,) = inbox.wait(1)
    """

    def __init__(self, answers: list[int | Answer] | None = None) -> None:
        self.answers: list[int | Answer] = list(answers or [])
        self._received: list[ReceivedWebhook] = []
        self._cond = threading.Condition()

        # A plain function, not a bound method: uvicorn would take a method for an ASGI2 app.
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            request = Request(scope, receive)
            body = await request.body()
            with self._cond:
                answer = self.answers.pop(0) if self.answers else 200
                if isinstance(answer, int):
                    answer = Answer(answer)
                headers = {k.lower(): v for k, v in request.headers.items()}
                self._received.append(ReceivedWebhook(headers, body, answer.status))
                self._cond.notify_all()
            if answer.delay:
                await asyncio.sleep(answer.delay)
            await Response(status_code=answer.status, headers=answer.headers)(scope, receive, send)

        self.server = FakeServer(app)
        self.url = self.server.url

    def start(self) -> WebhookInbox:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def received(self) -> list[ReceivedWebhook]:
        with self._cond:
            return list(self._received)

    def wait(self, count: int, timeout: float = 5.0) -> list[ReceivedWebhook]:
        """The first `count` requests, waiting for them to arrive; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhooks, got {len(self._received)}")
                self._cond.wait(left)
            return list(self._received[:count])

    def clear(self) -> None:
        with self._cond:
            self._received.clear()
            self.answers.clear()
