"""Forwarding to a session's program: HTTP and websockets over its private Unix socket (or, for a session on another
host, to its agent's TLS endpoint that must present the session's own certificate), with beamhub's credentials
swapped for the session's private token, and nothing of beamhub's (cookies, nginx headers) taken from its answers;
JupyterLab's pages get the script a caller names (beamhub's banner) and lose the private token.

Who may reach a session is decided in sessions.origin_routes; this module only carries bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import websockets
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from beamhub.compute.backend import Endpoint
from beamhub.compute.tls import pinned_context
from beamhub.metrics import PROXY_BYTES, PROXY_REQUESTS, PROXY_UPSTREAM_SECONDS, status_class

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
UPSTREAM_TIMEOUT = {"connect": 10.0, "read": None, "write": None, "pool": None}
"""A session gets 10 s to accept a connection; a long answer (a download, a kernel's long poll) takes its time."""
UPSTREAM_CLIENTS = 256
"""Sessions whose upstream connections are kept open at once (least recently used ones are closed)."""


def _ours(cookie_name: str) -> bool:
    return cookie_name.strip().lower().startswith(OUR_COOKIE_PREFIXES)


def _strip_our_cookies(cookie_header: str) -> str:
    """The Cookie header without beamhub's own cookies, which a session must never see."""
    parts = [p for p in cookie_header.split(";") if p.strip() and not _ours(p.partition("=")[0])]
    return ";".join(parts).strip()


def upstream_headers(headers: list[tuple[str, str]], token: str) -> dict[str, str]:
    """Request headers to send on: beamhub's credentials replaced by the session's token (a body's length kept, so
    that it is not re-sent chunked)."""
    dropped = (HOP_BY_HOP - {"content-length"}) | {"authorization", "cookie"}
    out = {k: v for k, v in headers if k.lower() not in dropped}
    cookie = _strip_our_cookies("; ".join(v for k, v in headers if k.lower() == "cookie"))
    if cookie:
        out["cookie"] = cookie
    out["authorization"] = f"token {token}"
    return out


def sets_our_cookie(set_cookie: str) -> bool:
    """Whether a session's Set-Cookie would touch beamhub's cookies, or any host beyond the session's own."""
    name = set_cookie.partition("=")[0]
    attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
    return _ours(name) or any(a.startswith("domain") for a in attributes)


def downstream_headers(response: httpx.Response) -> list[tuple[str, str]]:
    """The session's response headers that may reach the browser: never one that steers an nginx in front of
    beamhub (X-Accel-*) or sets beamhub's cookies."""
    return [(k, v) for k, v in response.headers.multi_items()
            if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-accel-")
            and not (k.lower() == "set-cookie" and sets_our_cookie(v))]


def base_url(endpoint: Endpoint, scheme: str = "http") -> str:
    """The URL prefix of a session's endpoint (the host part is only a name over a Unix socket)."""
    if endpoint.socket is not None:
        return f"{scheme}://session"
    host = f"[{endpoint.host}]" if endpoint.host and ":" in endpoint.host else endpoint.host
    return f"{scheme}s://{host}:{endpoint.port}"


def new_transport(endpoint: Endpoint) -> httpx.AsyncHTTPTransport:
    """A transport to the session's socket, or over TLS to its node, trusting its own certificate and no other."""
    if endpoint.socket is not None:
        return httpx.AsyncHTTPTransport(uds=str(endpoint.socket))
    return httpx.AsyncHTTPTransport(verify=pinned_context(endpoint.cert or "", endpoint.client))


class Upstreams:
    """Pooled keep-alive connections, one pool per session endpoint. Requests go to the transport itself: no cookie
    jar, redirects or hooks of a client stand between the browser and the session."""

    def __init__(self) -> None:
        self._pools: OrderedDict[Endpoint, httpx.AsyncHTTPTransport] = OrderedDict()

    def pool(self, endpoint: Endpoint) -> httpx.AsyncHTTPTransport:
        pool = self._pools.pop(endpoint, None)
        if pool is None:
            pool = new_transport(endpoint)
        self._pools[endpoint] = pool
        while len(self._pools) > UPSTREAM_CLIENTS:
            _, oldest = self._pools.popitem(last=False)
            asyncio.get_running_loop().create_task(oldest.aclose())
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()


async def forward_http(request: Request, upstreams: Upstreams, endpoint: Endpoint, token: str,
                       sandbox: bool, script: str = "") -> Response:
    """Send the request to the session and stream its answer back (with `script` added to JupyterLab's pages)."""
    query = f"?{request.url.query}" if request.url.query else ""
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    upstream = httpx.Request(request.method, f"{base_url(endpoint)}{request.url.path}{query}",
                             headers=upstream_headers(request.headers.items(), token),
                             content=request.stream() if has_body else None,
                             extensions={"timeout": UPSTREAM_TIMEOUT})
    started = time.perf_counter()
    try:
        response = await upstreams.pool(endpoint).handle_async_request(upstream)
    except httpx.HTTPError as exc:
        PROXY_REQUESTS.labels("502").inc()
        return Response(content=f'{{"detail": "the session does not answer: {type(exc).__name__}"}}',
                        status_code=502, media_type="application/json")
    PROXY_UPSTREAM_SECONDS.observe(time.perf_counter() - started)
    PROXY_REQUESTS.labels(status_class(response.status_code)).inc()
    headers = downstream_headers(response)
    # A browser enforces every policy it is sent: on the console's origin an opaque sandbox; on the session's own,
    # no framing by other pages (sibling sessions are same-site, so their frames would carry the entry cookie).
    headers.append(("content-security-policy", SANDBOX if sandbox else OWN_FRAMES_ONLY))
    if response.headers.get("content-type", "").startswith("text/html"):
        return await _scrubbed_page(response, headers, token, script)
    result = StreamingResponse(_counted(response.aiter_raw()), status_code=response.status_code,
                               background=BackgroundTask(response.aclose))
    result.raw_headers = _raw(headers)
    return result


async def _counted(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        PROXY_BYTES.inc(len(chunk))
        yield chunk


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


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


async def _scrubbed_page(response: httpx.Response, headers: list[tuple[str, str]], token: str,
                         script: str) -> Response:
    """An HTML page without the session's private token, which programs embed for their browser code
    (JupyterLab's page config does): the browser never needs it, since this proxy adds it to every request."""
    try:
        body = with_script((await response.aread()).replace(token.encode(), b""), script)
    finally:
        await response.aclose()
    PROXY_BYTES.inc(len(body))
    result = Response(content=body, status_code=response.status_code)
    kept = [(k, v) for k, v in headers if k.lower() != "content-encoding"]  # aread() decoded the body
    result.raw_headers = [*_raw(kept), (b"content-length", str(len(body)).encode())]
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
               "open_timeout": 10}
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
                data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
                await upstream.send(data)
        except (WebSocketDisconnect, websockets.ConnectionClosed):
            return

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                if isinstance(data, bytes):
                    await client.send_bytes(data)
                else:
                    await client.send_text(data)
        except (websockets.ConnectionClosed, WebSocketDisconnect, RuntimeError):
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
