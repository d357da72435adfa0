"""Connections to sessions' programs: HTTP/1.1 over pooled keep-alive connections, one pool per endpoint (its Unix
socket, or TLS to its agent trusting the session's own certificate only), answers parsed by llhttp (httptools) and
streamed with backpressure. It carries bytes only: what may be sent and returned is decided in sessions.proxy."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

import httptools

from beamhub.compute.backend import Endpoint
from beamhub.compute.tls import pinned_context

CONNECT_SECONDS = 10.0
"""A session gets 10 s to accept a connection; a long answer (a download, a kernel's long poll) takes its time."""
BUFFERED_BYTES = 256 * 1024
"""Bytes of an answer held while the client is slower than the session, before the session is asked to wait."""
IDLE_PER_ENDPOINT = 32
"""Idle keep-alive connections kept per session endpoint."""
IDLE_SECONDS = 30.0
"""How long an idle connection is kept: a session that nobody uses holds no file descriptor of beamhub's."""
ENDPOINTS_KEPT = 256
"""Session endpoints whose connections are kept open at once (the least recently used ones are closed)."""
RETRIED_METHODS = {"GET", "HEAD", "OPTIONS"}
"""Sent again on a fresh connection when a kept-alive one turns out closed before any byte of the answer."""


class UpstreamError(Exception):
    """The session's program could not be reached, or broke off its answer."""


class Exchange(asyncio.Protocol):
    """One connection to a session's program, carrying one request and its answer at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading = True
        self._interim = False
        self.idle_since = 0.0
        self.lost: BaseException | None = None
        self.begin(head_only=False)
        self.active = False

    def begin(self, head_only: bool) -> None:
        """Ready for the next request (HEAD: an answer without a body, whatever its length says)."""
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_only = head_only
        self.headers_done = False
        self.complete = False
        self.answered = False
        self.spoiled = False
        self.keep_alive = False
        self.active = True
        self._chunks: deque[bytes] = deque()
        self._buffered = 0

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active:  # bytes nobody asked for: the connection is not to be trusted with a request
            self._fail(UpstreamError("the session sent bytes without a request"))
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the session answered with broken HTTP: {exc}"))

    def eof_received(self) -> bool:
        if self.headers_done and self._ends_with_connection():
            self.complete = True
            self._wake()
        if not self.complete:
            self._fail(UpstreamError("the session closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.complete:
            self._fail(exc or UpstreamError("the session closed the connection"))
        self.lost = self.lost or exc or UpstreamError("closed")
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # --- httptools callbacks ---
    def on_message_begin(self) -> None:
        if self.complete:  # a second answer to one request: the connection is out of step, nothing more is read
            raise UpstreamError("the session answered more than it was asked")

    def on_status(self, _: bytes) -> None:
        self.status = self._parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (103 Early Hints): the final one follows
            self._interim = True
            self.headers = []
            return
        self.headers_done = True
        if self.head_only:
            self.complete = True  # the answer to HEAD has no body, whatever its length says
        self._wake()
        self.resume_writing()  # a request body still being sent stops: the session has answered

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > BUFFERED_BYTES and self._reading and self.transport is not None:
            self.transport.pause_reading()
            self._reading = False
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()  # asked here: the parser forgets once the call returns
        self._wake()

    def _ends_with_connection(self) -> bool:
        """Whether the answer has neither a length nor chunks: its body is what comes until the connection ends."""
        names = {name for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # --- used by the proxy ---
    def _fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    def reusable(self) -> bool:
        return (self.lost is None and self.complete and not self.head_only and not self.spoiled
                and self.keep_alive and self.transport is not None and not self.transport.is_closing())

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        if self.lost is not None:
            raise UpstreamError("the session closed the connection") from self.lost
        if self._writable is not None:
            await self._writable

    async def answer(self) -> None:
        """Wait until the answer's status and headers are in."""
        while not self.headers_done:
            if self.lost is not None:
                raise UpstreamError(str(self.lost) or type(self.lost).__name__) from self.lost
            await self._wait()

    def take(self) -> bytes:
        """The body bytes received so far (and lets the session send on)."""
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if not self._reading and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._reading = True
        return data

    async def body(self) -> AsyncIterator[bytes]:
        """The answer's body as it comes; UpstreamError if the session breaks it off."""
        while True:
            if self._chunks:
                yield self.take()
            elif self.complete:
                return
            elif self.lost is not None:
                raise UpstreamError("the session broke off its answer") from self.lost
            else:
                await self._wait()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class EndpointPool:
    """Idle keep-alive connections to one session endpoint, the most recently used first."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._idle: deque[Exchange] = deque()
        self._tls: ssl.SSLContext | None = None
        self.closed = False
        """Evicted: connections still in use are closed when they come back."""

    def reused(self) -> Exchange | None:
        while self._idle:
            exchange = self._idle.pop()
            if exchange.lost is None and exchange.transport is not None and not exchange.transport.is_closing():
                return exchange
        return None

    async def connect(self) -> Exchange:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                if self.endpoint.socket is not None:
                    _, exchange = await loop.create_unix_connection(Exchange, str(self.endpoint.socket))
                else:
                    if self._tls is None:
                        self._tls = pinned_context(self.endpoint.cert or "", self.endpoint.client)
                    _, exchange = await loop.create_connection(Exchange, self.endpoint.host, self.endpoint.port,
                                                               ssl=self._tls, server_hostname="session")
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise UpstreamError(type(exc).__name__) from exc
        return exchange

    def release(self, exchange: Exchange) -> None:
        if exchange.reusable() and not self.closed and len(self._idle) < IDLE_PER_ENDPOINT:
            exchange.active = False
            exchange.idle_since = time.monotonic()
            self._idle.append(exchange)
        else:
            exchange.close()

    def sweep(self, before: float) -> None:
        """Close the connections idle since before `before` (the oldest are at the left)."""
        while self._idle and self._idle[0].idle_since < before:
            self._idle.popleft().close()

    def close(self) -> None:
        self.closed = True
        while self._idle:
            self._idle.pop().close()


class Upstreams:
    """The pools of the session endpoints reached lately."""

    def __init__(self) -> None:
        self._pools: OrderedDict[Endpoint, EndpointPool] = OrderedDict()
        self._swept = time.monotonic()

    def pool(self, endpoint: Endpoint) -> EndpointPool:
        now = time.monotonic()
        if now - self._swept > IDLE_SECONDS:
            self._swept = now
            for kept in self._pools.values():
                kept.sweep(now - IDLE_SECONDS)
        pool = self._pools.get(endpoint)
        if pool is None:
            pool = self._pools[endpoint] = EndpointPool(endpoint)
            while len(self._pools) > ENDPOINTS_KEPT:
                self._pools.popitem(last=False)[1].close()
        else:
            self._pools.move_to_end(endpoint)
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


async def open_exchange(pool: EndpointPool, method: str, head: bytes, body: AsyncIterator[bytes] | None,
                        chunked: bool) -> Exchange:
    """Send a request (its head, then its body if any) and wait for the answer's headers. A kept-alive connection
    that the session had closed meanwhile is replaced once for a request without a body."""
    exchange = pool.reused()
    if exchange is not None and body is None and method in RETRIED_METHODS:
        try:
            return await _exchange(exchange, method, head, None, chunked)
        except UpstreamError:
            if exchange.answered:
                raise
    elif exchange is not None:
        return await _exchange(exchange, method, head, body, chunked)
    return await _exchange(await pool.connect(), method, head, body, chunked)


async def _exchange(exchange: Exchange, method: str, head: bytes, body: AsyncIterator[bytes] | None,
                    chunked: bool) -> Exchange:
    exchange.begin(head_only=method == "HEAD")
    try:
        exchange.send(head)
        if body is not None:
            await _send_body(exchange, body, chunked)
        await exchange.answer()
    except BaseException:
        exchange.close()
        raise
    return exchange


async def _send_body(exchange: Exchange, body: AsyncIterator[bytes], chunked: bool) -> None:
    async for chunk in body:
        if not chunk:
            continue
        exchange.send(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await exchange.drain()
        if exchange.headers_done:  # answered early: the rest of the body is not sent, nor the connection reused
            exchange.spoiled = True
            return
    if chunked:
        exchange.send(b"0\r\n\r\n")
