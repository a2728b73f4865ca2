"""A closed-loop HTTP/1.1 load generator on raw asyncio streams.

Why not httpx or aiohttp: on a 2-core machine the generator shares the CPU with the server it
measures, and a full client library spends more CPU per request than the endpoint does, so it would
measure itself. Here each request is a pre-rendered byte string (the benchmarks sign bodies
beforehand) and the answer is parsed only as far as the status line and Content-Length.

`concurrency` keep-alive connections each send one request, wait for its answer, and send the next,
until `duration` seconds (or the requests) run out. Latency is measured per request from the write
to the last byte of the answer.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, of answered requests
    errors: Counter[str] = field(default_factory=Counter)
    all_statuses: Counter[int] = field(default_factory=Counter)  # warm-up included
    elapsed: float = 0.0  # wall seconds of the measured window
    cpu: float = 0.0  # this process's CPU seconds during the window (is the generator the limit?)

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.answered / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in seconds (nearest rank); 0 when nothing was answered."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[rank]


def render_request(host: str, port: int, path: str, body: bytes, headers: Iterable[tuple[str, str]]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    close = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
        elif name == b"transfer-encoding":
            raise ValueError("chunked answers are not supported by this generator")
    if length:
        await reader.readexactly(length)
    return status, close


async def _drive(host: str, port: int, requests: Iterator[bytes], concurrency: int, duration: float | None,
                 warmup: float, result: LoadResult) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    window_start = started + warmup
    stop_at = window_start + duration if duration is not None else None
    window: dict[str, float] = {}

    def measuring(now: float) -> bool:
        if now < window_start:
            return False
        if "t0" not in window:
            window["t0"] = now
            window["cpu0"] = time.process_time()
        return True

    async def connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while True:
                now = loop.time()
                if stop_at is not None and now >= stop_at:
                    return
                request = next(requests, None)
                if request is None:
                    return
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                counted = measuring(now)
                t = time.perf_counter()
                try:
                    writer.write(request)
                    status, close = await _read_answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    if counted:
                        result.errors[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = None, None
                    continue
                latency = time.perf_counter() - t
                result.all_statuses[status] += 1
                if counted:
                    result.sent += 1
                    result.statuses[status] += 1
                    result.latencies.append(latency)
                if close:
                    writer.close()
                    reader, writer = None, None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    end = loop.time()
    result.elapsed = end - window.get("t0", end)
    result.cpu = time.process_time() - window.get("cpu0", time.process_time())


def run_load(host: str, port: int, requests: Iterator[bytes] | Iterable[bytes], *, concurrency: int,
             duration: float | None = None, warmup: float = 0.0) -> LoadResult:
    """Send `requests` over `concurrency` connections: for `duration` seconds after `warmup` seconds
    (requests during the warm-up are sent but not counted), or until the requests run out."""
    result = LoadResult()
    asyncio.run(_drive(host, port, iter(requests), concurrency, duration, warmup, result))
    return result


def numbered(make: Callable[[int], bytes], start: int = 0) -> Iterator[bytes]:
    """An endless stream of requests made from their sequence number."""
    return (make(n) for n in itertools.count(start))
