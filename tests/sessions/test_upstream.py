"""The proxy's connections to a session's program, against a real HTTP server on a Unix socket that answers the
ways programs do (keep-alive, chunks, a body until the connection ends, HEAD, early answers, broken HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from beamhub.compute.backend import Endpoint
from beamhub.sessions import proxy, upstream
from beamhub.sessions.proxy import ProxiedAnswer, decoded_page, request_head
from beamhub.sessions.upstream import BUFFERED_BYTES, Exchange, UpstreamError, Upstreams, open_exchange

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Program:
    """A session's program: a Unix-socket server that counts its connections."""

    def __init__(self, socket: Path, handler: Handler) -> None:
        self.socket = socket
        self.connections = 0
        self.handler = handler
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError):
            await self.handler(reader, writer)
        writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head:
        head += await reader.readuntil(b"0\r\n\r\n")
    elif b"content-length: " in head:
        length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
        head += await reader.readexactly(length)
    return head


@contextlib.asynccontextmanager
async def program(tmp_path: Path, handler: Handler) -> AsyncIterator[Program]:
    served = Program(tmp_path / "http.sock", handler)
    server = await asyncio.start_unix_server(served._serve, str(served.socket))
    try:
        yield served
    finally:
        server.close()


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), 20))


async def get(upstreams: Upstreams, served: Program, method: str = "GET", body: AsyncIterator[bytes] | None = None,
              chunked: bool = False) -> tuple[Exchange, bytes]:
    pool = upstreams.pool(Endpoint(socket=served.socket))
    head = request_head(method, "/s/x/api", [("host", "h")], "private", chunked)
    exchange = await open_exchange(pool, method, head, body, chunked)
    data = b"".join([chunk async for chunk in exchange.body()])
    pool.release(exchange)
    return exchange, data


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
        await writer.drain()


def test_requests_share_one_kept_alive_connection(tmp_path: Path) -> None:
    async def test() -> None:
        async with program(tmp_path, keep_alive) as served:
            upstreams = Upstreams()
            answers = [await get(upstreams, served) for _ in range(5)]
            assert [(e.status, data) for e, data in answers] == [(200, b"hello")] * 5
            assert served.connections == 1
            await upstreams.aclose()
    run(test)


def test_a_connection_the_program_closed_meanwhile_is_replaced(tmp_path: Path) -> None:
    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async def test() -> None:
        async with program(tmp_path, one_answer_then_close) as served:
            upstreams = Upstreams()
            await get(upstreams, served)
            await asyncio.sleep(0.05)
            exchange, data = await get(upstreams, served)
            assert (exchange.status, data, served.connections) == (200, b"ok", 2)
    run(test)


def test_chunked_answers_and_answers_ended_by_the_connection_arrive_whole(tmp_path: Path) -> None:
    async def chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"abc", b"de" * 5000, b"f"):
            writer.write(b"%x\r\n%b\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async def test() -> None:
        async with program(tmp_path, chunks) as served:
            upstreams = Upstreams()
            assert (await get(upstreams, served))[1] == b"abc" + b"de" * 5000 + b"f"
            assert (await get(upstreams, served))[1] == b"until the end"
    run(test)


def test_an_answer_to_head_ends_with_its_headers(tmp_path: Path) -> None:
    async def head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def test() -> None:
        async with program(tmp_path, head) as served:
            exchange, data = await get(Upstreams(), served, "HEAD")
            assert (exchange.status, data) == (200, b"")
    run(test)


def test_a_request_body_of_unknown_length_is_sent_in_chunks(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        for part in (b"one", b"", b"two"):
            yield part

    async def test() -> None:
        async with program(tmp_path, echo) as served:
            exchange, _ = await get(Upstreams(), served, "POST", body(), chunked=True)
            assert exchange.status == 201
    run(test)
    head, _, chunks = received[0].partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head and b"authorization: token private" in head
    assert chunks == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"


def test_a_slow_client_makes_the_program_wait_instead_of_filling_memory(tmp_path: Path) -> None:
    sent = [0]

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (64 << 20))
        block = b"x" * (1 << 20)
        for _ in range(64):
            writer.write(block)
            await writer.drain()
            sent[0] += len(block)

    async def test() -> None:
        async with program(tmp_path, big) as served:
            pool = Upstreams().pool(Endpoint(socket=served.socket))
            exchange = await open_exchange(pool, "GET", request_head("GET", "/", [], "t", False), None, False)
            await asyncio.sleep(0.5)  # nobody reads
            assert sent[0] < 16 << 20
            assert exchange._buffered <= BUFFERED_BYTES + (1 << 20)
            total = sum([len(chunk) async for chunk in exchange.body()])
            assert total == 64 << 20
    run(test)


def test_a_client_that_leaves_closes_the_programs_connection(tmp_path: Path) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # until the proxy closes
        state["closed"] = True

    state: dict[str, Any] = {"closed": False}

    async def test() -> None:
        async with program(tmp_path, endless) as served:
            pool = Upstreams().pool(Endpoint(socket=served.socket))
            exchange = await open_exchange(pool, "GET", request_head("GET", "/", [], "t", False), None, False)
            sent: list[dict[str, Any]] = []
            gone = asyncio.Event()

            async def receive() -> dict[str, Any]:
                await gone.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                if message.get("body"):
                    gone.set()

            await ProxiedAnswer(pool, exchange, [])({"type": "http"}, receive, send)
            await asyncio.sleep(0.1)
            assert sent[1]["body"] == b"hello" and state["closed"]
    run(test)


def test_broken_http_and_unasked_bytes_end_the_connection(tmp_path: Path) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/9 nonsense\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def test() -> None:
        async with program(tmp_path, broken) as served:
            upstreams = Upstreams()
            exchange, data = await get(upstreams, served)
            assert data == b"ok"
            await asyncio.sleep(0.05)
            assert not exchange.reusable()
        (tmp_path / "http.sock").unlink()
        async with program(tmp_path, garbage) as served:
            with pytest.raises(UpstreamError):
                await get(Upstreams(), served)
    run(test)


def test_only_codings_the_proxy_can_undo_are_asked_for() -> None:
    head = request_head("GET", "/s/x/lab", [("accept-encoding", "gzip, deflate, br, zstd")], "t", False)
    assert b"accept-encoding: gzip, deflate\r\n" in head
    head = request_head("GET", "/s/x/lab", [("accept-encoding", "br")], "t", False)
    assert b"accept-encoding: identity\r\n" in head


def test_an_interim_answer_is_not_taken_for_the_answer(tmp_path: Path) -> None:
    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody")
        await writer.drain()
        await keep_alive(reader, writer)

    async def test() -> None:
        async with program(tmp_path, hints) as served:
            upstreams = Upstreams()
            exchange, data = await get(upstreams, served)
            assert (exchange.status, data, exchange.headers) == (200, b"body", [(b"content-length", b"4")])
            assert (await get(upstreams, served))[1] == b"hello" and served.connections == 1
    run(test)


def test_connections_left_idle_are_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []

    async def until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await keep_alive(reader, writer)
        closed.append(True)

    async def test() -> None:
        async with program(tmp_path, until_closed) as served:
            upstreams = Upstreams()
            await get(upstreams, served)
            await asyncio.sleep(0.2)
            upstreams.pool(Endpoint(socket=tmp_path / "elsewhere.sock"))  # any use of the proxy sweeps
            await asyncio.sleep(0.1)
            assert closed == [True]
    monkeypatch.setattr(upstream, "IDLE_SECONDS", 0.1)
    run(test)


def test_a_compressed_page_is_read_within_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    page = b"<html>" + b"x" * 1000 + b"</html>"
    assert decoded_page(gzip.compress(page), [(b"content-encoding", b"gzip")]) == page
    monkeypatch.setattr(proxy, "PAGE_BYTES", 1 << 20)
    with pytest.raises(UpstreamError, match="larger"):
        decoded_page(gzip.compress(bytes(8 << 20)), [(b"content-encoding", b"gzip")])
    with pytest.raises(UpstreamError, match="unknown coding"):
        decoded_page(page, [(b"content-encoding", b"br")])


def test_an_answer_beyond_the_one_asked_for_is_never_taken_for_the_next(tmp_path: Path) -> None:
    async def two_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
                     b"HTTP/1.1 404 Not Found\r\nx-b: 1\r\ncontent-length: 7\r\n\r\nSMUGGLE")
        await writer.drain()
        await keep_alive(reader, writer)

    async def test() -> None:
        async with program(tmp_path, two_answers) as served:
            upstreams = Upstreams()
            exchange, data = await get(upstreams, served)
            assert (exchange.status, exchange.headers, data) == (200, [(b"content-length", b"5")], b"hello")
            assert not exchange.reusable()
            assert (await get(upstreams, served))[1] == b"hello" and served.connections == 2
    run(test)


def test_a_finished_stream_leaves_its_connection_to_the_next_request(tmp_path: Path) -> None:
    async def slow_then_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()
        await keep_alive(reader, writer)

    async def later() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.05)  # the stream's watcher is cancelled meanwhile
        yield b"saved"

    async def test() -> None:
        async with program(tmp_path, slow_then_echo) as served:
            pool = Upstreams().pool(Endpoint(socket=served.socket))
            exchange = await open_exchange(pool, "GET", request_head("GET", "/", [], "t", False), None, False)
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                await asyncio.sleep(10)
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            await ProxiedAnswer(pool, exchange, [])({"type": "http"}, receive, send)
            head = request_head("POST", "/", [("content-length", "5")], "t", False)
            second = await open_exchange(pool, "POST", head, later(), False)
            assert second.status == 200 and served.connections == 1
            assert b"".join(m.get("body", b"") for m in sent) == b"hello"
    run(test)


def test_a_compressed_page_cut_short_is_refused() -> None:
    with pytest.raises(UpstreamError, match="cut short"):
        decoded_page(gzip.compress(b"<html>" + bytes(5000) + b"</html>")[:-12], [(b"content-encoding", b"gzip")])
