"""Forwarding to a session's program: HTTP and websockets over its private Unix socket (or, for a session on another
host, to its agent's TLS endpoint that must present the session's own certificate), with beamhub's credentials
swapped for the session's private token, and nothing of beamhub's (cookies, nginx headers) taken from its answers;
JupyterLab's pages get the script a caller names (beamhub's banner) and lose the private token.

Who may reach a session is decided in sessions.origin_routes; this module only carries bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable

import websockets
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from beamhub.compute.backend import Endpoint
from beamhub.compute.tls import pinned_context
from beamhub.metrics import PROXY_BYTES, PROXY_REQUESTS, PROXY_UPSTREAM_SECONDS, status_class
from beamhub.sessions.upstream import EndpointPool, Exchange, UpstreamError, Upstreams, open_exchange

log = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
OUR_COOKIE_PREFIXES = ("beamhub-", "__host-beamhub-", "__secure-beamhub-")
"""Cookies of beamhub itself (console and session entry): a session never sees them and never sets them."""

SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-downloads"
"""The CSP of whatever a session answers on the console's origin: an opaque origin, so its scripts reach nothing of
the console's."""

JUPYTER_PAGE = b'id="jupyter-config-data"'
"""What marks a page of JupyterLab itself (its page config), as opposed to an HTML file it serves."""

OWN_FRAMES_ONLY = "frame-ancestors 'self'"
SANDBOX_BYTES = SANDBOX.encode()
OWN_FRAMES_ONLY_BYTES = OWN_FRAMES_ONLY.encode()
DECODABLE = {"gzip", "x-gzip", "deflate", "identity"}
PAGE_BYTES = 64 << 20
"""The largest HTML answer served (decoded): a page is read whole to take the session's token out of it."""
def _ours(cookie_name: str) -> bool:
    return cookie_name.strip().lower().startswith(OUR_COOKIE_PREFIXES)


def _strip_our_cookies(cookie_header: str) -> str:
    """The Cookie header without beamhub's own cookies, which a session must never see."""
    parts = [p for p in cookie_header.split(";") if p.strip() and not _ours(p.partition("=")[0])]
    return ";".join(parts).strip()


def upstream_headers(headers: list[tuple[str, str]], token: str) -> dict[str, str]:
    """Request headers to send on: beamhub's credentials replaced by the session's token (a body's length kept, so
    that it is not re-sent chunked)."""
    dropped = (HOP_BY_HOP - {"content-length"}) | {"authorization", "cookie", "expect"}
    out = {k: v for k, v in headers if k.lower() not in dropped}
    cookie = _strip_our_cookies("; ".join(v for k, v in headers if k.lower() == "cookie"))
    if cookie:
        out["cookie"] = cookie
    out["authorization"] = f"token {token}"
    return out


def _decodable(accept_encoding: str) -> str:
    """The codings of a request's Accept-Encoding that this proxy can undo (it must read JupyterLab's pages)."""
    return ", ".join(c for c in (p.strip() for p in accept_encoding.split(",")) if c.split(";")[0].strip().lower()
                     in DECODABLE)


def request_head(method: str, target: str, headers: list[tuple[str, str]], token: str, chunked: bool) -> bytes:
    """The request line and headers sent to the session."""
    out = upstream_headers(headers, token)
    out.setdefault("host", "session")
    if "accept-encoding" in out:
        out["accept-encoding"] = _decodable(out["accept-encoding"]) or "identity"
    if chunked:  # never both: the session would have to choose which one frames the body
        out.pop("content-length", None)
        out["transfer-encoding"] = "chunked"
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in out.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def sets_our_cookie(set_cookie: str) -> bool:
    """Whether a session's Set-Cookie would touch beamhub's cookies, or any host beyond the session's own."""
    name = set_cookie.partition("=")[0]
    attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
    return _ours(name) or any(a.startswith("domain") for a in attributes)


def downstream_headers(headers: list[tuple[bytes, bytes]], passes_length: bool) -> list[tuple[bytes, bytes]]:
    """The session's answer headers that may reach the browser: never one that steers an nginx in front of beamhub
    (X-Accel-*) or sets beamhub's cookies; its length only where its body passes unchanged."""
    kept = [(k, v) for k, v in headers
            if (k.decode("latin-1") not in HOP_BY_HOP or (passes_length and k == b"content-length"))
            and not k.startswith(b"x-accel-")
            and not (k == b"set-cookie" and sets_our_cookie(v.decode("latin-1")))]
    return kept


def base_url(endpoint: Endpoint, scheme: str = "http") -> str:
    """The URL prefix of a session's endpoint (the host part is only a name over a Unix socket)."""
    if endpoint.socket is not None:
        return f"{scheme}://session"
    host = f"[{endpoint.host}]" if endpoint.host and ":" in endpoint.host else endpoint.host
    return f"{scheme}s://{host}:{endpoint.port}"


def _target(scope: Scope) -> str:
    """The request's path as the client sent it (not decoded, so the session sees what was asked) and its query."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return (path + b"?" + query if query else path).decode("latin-1")


async def forward_http(request: Request, upstreams: Upstreams, endpoint: Endpoint, token: str,
                       sandbox: bool, script: str = "") -> Response:
    """Send the request to the session and stream its answer back (with `script` added to JupyterLab's pages)."""
    headers = request.headers
    chunked = "transfer-encoding" in headers
    has_body = chunked or headers.get("content-length", "0") != "0"
    head = request_head(request.method, _target(request.scope), headers.items(), token, chunked)
    started = time.perf_counter()
    pool = upstreams.pool(endpoint)
    try:
        exchange = await open_exchange(pool, request.method, head, request.stream() if has_body else None, chunked)
    except UpstreamError as exc:
        PROXY_REQUESTS.labels("502").inc()
        return JSONResponse({"detail": f"the session does not answer: {exc}", "code": "session_unreachable"}, 502)
    PROXY_UPSTREAM_SECONDS.observe(time.perf_counter() - started)
    PROXY_REQUESTS.labels(status_class(exchange.status)).inc()
    # A browser enforces every policy it is sent: on the console's origin an opaque sandbox; on the session's own,
    # no framing by other pages (sibling sessions are same-site, so their frames would carry the entry cookie).
    policy = (b"content-security-policy", SANDBOX_BYTES if sandbox else OWN_FRAMES_ONLY_BYTES)
    if _is_page(exchange.headers):
        return await _scrubbed_page(pool, exchange, [*downstream_headers(exchange.headers, False), policy], token,
                                    script)
    return ProxiedAnswer(pool, exchange, [*downstream_headers(exchange.headers, True), policy])


def _is_page(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"content-type" and v.lower().startswith(b"text/html") for k, v in headers)


class ProxiedAnswer(Response):
    """A session's answer, streamed to the client as it comes; its connection goes back to the pool once read
    whole, and is closed if the client leaves first."""

    def __init__(self, pool: EndpointPool, exchange: Exchange, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = exchange.status
        self.raw_headers = headers
        self.background = None
        self._pool = pool
        self._exchange = exchange

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = self._exchange
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if exchange.complete:  # the whole answer is in already: one write
                body = exchange.take()
                PROXY_BYTES.inc(len(body))
                await send({"type": "http.response.body", "body": body})
            else:
                await _stream(exchange, receive, send)
        except UpstreamError as exc:
            log.warning("a session broke off its answer: %s", exc)
        finally:
            self._pool.release(exchange)


async def _stream(exchange: Exchange, receive: Receive, send: Send) -> None:
    """Copy the body as it comes, until it ends or the client leaves (then the session's connection is closed)."""
    leaving = asyncio.ensure_future(_disconnect(receive))
    # Only a client that left closes the connection: a watcher cancelled after the answer ended must not touch
    # it, as another request may be using it by then.
    leaving.add_done_callback(lambda task: task.cancelled() or exchange.complete or exchange.close())
    try:
        async for chunk in exchange.body():
            PROXY_BYTES.inc(len(chunk))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        leaving.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def with_script(page: bytes, src: str) -> bytes:
    """A JupyterLab page with a deferred script of `src` before its </body> (else </head>); any other page (a
    user's HTML file, a download) as it is."""
    if not src or JUPYTER_PAGE not in page:
        return page
    tag = f'<script src="{src}" defer></script>'.encode()
    for end in (b"</body>", b"</head>"):
        at = page.rfind(end)
        if at >= 0:
            return page[:at] + tag + page[at:]
    return page


def decoded_page(body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A body without its content coding (only those the request allowed: see _decodable), at most PAGE_BYTES."""
    coding = next((v.strip().lower() for k, v in headers if k == b"content-encoding"), b"identity")
    if coding == b"identity":
        return body
    if coding not in (b"gzip", b"x-gzip", b"deflate"):
        raise UpstreamError(f"the session's page came in an unknown coding: {coding.decode('latin-1')}")
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding != b"deflate" else zlib.MAX_WBITS)
    page = decoder.decompress(body, PAGE_BYTES + 1)
    if len(page) > PAGE_BYTES:
        raise UpstreamError("the session's page is larger than beamhub serves")
    if not decoder.eof:
        raise UpstreamError("the session's page is cut short")
    return page


async def _read_page(exchange: Exchange) -> bytes:
    chunks, size = [], 0
    async for chunk in exchange.body():
        size += len(chunk)
        if size > PAGE_BYTES:
            raise UpstreamError("the session's page is larger than beamhub serves")
        chunks.append(chunk)
    return decoded_page(b"".join(chunks), exchange.headers)


async def _scrubbed_page(pool: EndpointPool, exchange: Exchange, headers: list[tuple[bytes, bytes]], token: str,
                         script: str) -> Response:
    """An HTML page without the session's private token, which programs embed for their browser code
    (JupyterLab's page config does): the browser never needs it, since this proxy adds it to every request."""
    try:
        page = await _read_page(exchange)
    except (UpstreamError, zlib.error) as exc:
        exchange.close()
        return JSONResponse({"detail": f"the session's page broke off: {exc}", "code": "session_unreachable"}, 502)
    pool.release(exchange)
    body = with_script(page.replace(token.encode(), b""), script)
    PROXY_BYTES.inc(len(body))
    result = Response(content=body, status_code=exchange.status)
    kept = [(k, v) for k, v in headers if k != b"content-encoding"]
    result.raw_headers = [*kept, (b"content-length", str(len(body)).encode())]
    return result


WEBSOCKET_SKIP = {"host", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                  "sec-websocket-protocol"}


async def forward_websocket(websocket: WebSocket, endpoint: Endpoint, token: str,
                            still_allowed: Callable[[], Awaitable[bool]]) -> None:
    """Connect to the session's websocket and copy messages both ways until either side closes or the caller's
    credential stops standing (asked every few seconds)."""
    query = f"?{websocket.url.query}" if websocket.url.query else ""
    headers = upstream_headers([(k, v) for k, v in websocket.headers.items() if k.lower() not in WEBSOCKET_SKIP],
                               token)
    subprotocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    options = {"additional_headers": headers, "subprotocols": subprotocols or None, "max_size": None,
               "open_timeout": 10, "compression": None}
    uri = f"{base_url(endpoint, 'ws')}{websocket.url.path}{query}"
    try:
        if endpoint.socket is not None:
            upstream = await websockets.unix_connect(str(endpoint.socket), uri=uri, **options)
        else:
            upstream = await websockets.connect(uri, ssl=pinned_context(endpoint.cert or "", endpoint.client),
                                                **options)
    except (TimeoutError, OSError, websockets.InvalidHandshake) as exc:
        await websocket.close(code=1011, reason=f"session does not answer: {type(exc).__name__}")
        return
    await websocket.accept(subprotocol=upstream.subprotocol)
    async with upstream:
        await _pump(websocket, upstream, still_allowed)


async def _pump(client: WebSocket, upstream: websockets.ClientConnection,
                still_allowed: Callable[[], Awaitable[bool]]) -> None:
    async def client_to_upstream() -> None:
        try:
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                await upstream.send(data if data is not None else message.get("text"))
        except (websockets.ConnectionClosed, WebSocketDisconnect):
            return

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                await client.send({"type": "websocket.send", "bytes": data} if isinstance(data, bytes)
                           else {"type": "websocket.send", "text": data})
        except (websockets.ConnectionClosed, WebSocketDisconnect, OSError, RuntimeError):
            return

    async def credential_stands() -> None:
        while await still_allowed():
            pass

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client()),
             asyncio.create_task(credential_stands())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    try:
        await client.close(code=1008 if tasks[2].done() else 1000)
    except (RuntimeError, WebSocketDisconnect):  # the client is gone already
        pass
