"""A small closed-loop HTTP/1.1 load generator for the proxy and API benchmarks (one process, uvloop, raw sockets).

Each of `clients` connections sends a pre-encoded GET, waits for the whole answer (Content-Length or chunked),
and sends the next one (keep-alive; it reconnects when the server closes). Requests that start after the warm-up
and end before the deadline count. The same client measures every case a ratio compares, over TCP or a Unix
socket, so its own cost (reported as the share of one core it used) weighs on both sides alike.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import uvloop

Connect = Callable[[Callable[[], asyncio.Protocol]], Awaitable[tuple[asyncio.Transport, asyncio.Protocol]]]


def tcp(host: str, port: int) -> Connect:
    return lambda factory: asyncio.get_running_loop().create_connection(factory, host, port)


def unix(path: str) -> Connect:
    return lambda factory: asyncio.get_running_loop().create_unix_connection(factory, path)


def get(path: str, host: str, headers: dict[str, str] | None = None) -> bytes:
    """One encoded GET request (keep-alive)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Accept: application/json", "User-Agent: beamhub-bench"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_end(buf: bytearray | bytes) -> tuple[int, int, bool] | None:
    """(bytes the first complete response takes, its status, whether the server closes) or None if incomplete."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    status = int(head[9:12])
    body = head_end + 4
    closes = b"\r\nconnection: close" in head or head.startswith(b"http/1.0")
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17:j if j >= 0 else len(head)])
        return (body + length, status, closes) if len(buf) >= body + length else None
    if b"\r\ntransfer-encoding: chunked" in head:
        pos = body
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            end = eol + 2 + size + 2
            if size == 0:  # no trailers expected
                return (end, status, closes) if len(buf) >= end else None
            if len(buf) < end:
                return None
            pos = end
    if status in (204, 304) or 100 <= status < 200:
        return body, status, closes
    return None  # read-to-close bodies are not used by these servers


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            done = response_end(self.buf)
        except ValueError as exc:
            self.waiter.set_exception(exc)
            return
        if done is not None:
            end, status, closes = done
            del self.buf[:end]
            self.waiter.set_result((status, closes))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("server closed the connection"))


@dataclass
class Result:
    """One measured window: successful requests, failures, latencies (seconds), and the client's CPU share."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str = ""
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        """The q-quantile latency in ms (nearest rank)."""
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3


async def _client(connect: Connect, requests: Sequence[bytes], offset: int, start: float, stop: float,
                  out: Result) -> None:
    loop = asyncio.get_running_loop()
    conn: _Conn | None = None
    n = offset
    while True:
        t0 = time.perf_counter()
        if t0 >= stop:
            break
        try:
            if conn is None or conn.transport is None or conn.transport.is_closing():
                _, conn = await connect(_Conn)  # type: ignore[assignment]
            conn.waiter = loop.create_future()
            conn.transport.write(requests[n % len(requests)])  # type: ignore[union-attr]
            n += 1
            status, closes = await asyncio.wait_for(conn.waiter, max(stop - t0, 0) + 10)
        except (OSError, ValueError, TimeoutError) as exc:
            if start <= time.perf_counter() <= stop:
                out.errors += 1
                out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            conn = None
            await asyncio.sleep(0.01)
            continue
        t1 = time.perf_counter()
        if closes:
            conn.transport.close()  # type: ignore[union-attr]
            conn = None
        if start <= t1 <= stop:  # completed in the window: throughput = completions / window
            if status == 200:
                out.latencies.append(t1 - t0)
            else:
                out.errors += 1
                out.statuses[status] = out.statuses.get(status, 0) + 1
                out.first_error = out.first_error or f"HTTP {status}"
    if conn is not None and conn.transport is not None:
        conn.transport.close()


async def _measure(connect: Connect, requests: Sequence[bytes], clients: int, warmup: float,
                   seconds: float) -> Result:
    now = time.perf_counter()
    start, stop = now + warmup, now + warmup + seconds
    out = Result(seconds)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(_client(connect, requests, i * 7919, start, stop, out) for i in range(clients)))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    used = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out.client_cpu = used / (time.perf_counter() - now)
    return out


def measure(connect: Connect, requests: Sequence[bytes], clients: int, seconds: float,
            warmup: float = 0.5) -> Result:
    """Run `clients` closed-loop connections for warmup + seconds; count what falls in the last `seconds`."""
    return uvloop.run(_measure(connect, requests, clients, warmup, seconds))
