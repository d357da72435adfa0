"""/s/{session}/...: HTTP and websockets forwarded to a session, for its owner or an admin only."""

from __future__ import annotations

import asyncio
import logging

import httpx
import websockets
from fastapi import APIRouter, Request, WebSocket
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect

from beamhub.deps import SESSION_COOKIE, TOKEN_COOKIE, get_services, proxy_principal
from beamhub.errors import BeamhubError

log = logging.getLogger(__name__)
router = APIRouter(tags=["proxy"])

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _strip_our_cookie(cookie_header: str) -> str:
    """The Cookie header without beamhub's own credential, which a session must never see."""
    ours = (f"{TOKEN_COOKIE}=", f"{SESSION_COOKIE}=")
    parts = [p for p in cookie_header.split(";") if p.strip() and not p.strip().startswith(ours)]
    return ";".join(parts).strip()


def upstream_headers(headers: dict[str, str] | list[tuple[str, str]], token: str) -> dict[str, str]:
    """Request headers to send on: beamhub's credentials replaced by the session's token."""
    items = headers.items() if isinstance(headers, dict) else headers
    out = {k: v for k, v in items if k.lower() not in HOP_BY_HOP | {"authorization", "cookie"}}
    cookie = _strip_our_cookie(dict((k.lower(), v) for k, v in items).get("cookie", ""))
    if cookie:
        out["cookie"] = cookie
    out["authorization"] = f"token {token}"
    return out


def _client(request: Request) -> httpx.AsyncClient:
    return request.app.state.proxy_client


async def _target(connection: Request | WebSocket, session_id: str) -> tuple[int, str]:
    """Port and token of the session, if the caller may reach it (checked off the event loop)."""

    def authorize() -> tuple[int, str]:
        principal = proxy_principal(connection)
        principal.require_scope("sessions")
        return get_services(connection).sessions.proxy_target(principal, session_id)

    return await asyncio.to_thread(authorize)


@router.api_route("/s/{session_id}/{path:path}", methods=METHODS, include_in_schema=False)
async def proxy_http(session_id: str, path: str, request: Request) -> Response:
    port, token = await _target(request, session_id)
    url = httpx.URL(f"http://127.0.0.1:{port}{request.url.path}", query=request.url.query.encode())
    upstream = _client(request).build_request(
        request.method, url, headers=upstream_headers(request.headers.items(), token), content=request.stream())
    try:
        response = await _client(request).send(upstream, stream=True)
    except httpx.HTTPError as exc:
        return Response(content=f'{{"detail": "session {session_id} does not answer: {type(exc).__name__}"}}',
                        status_code=502, media_type="application/json")
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-accel-")]  # never steer nginx
    if response.headers.get("content-type", "").startswith("text/html"):
        return await _scrubbed_page(response, headers, token)
    result = StreamingResponse(response.aiter_raw(), status_code=response.status_code,
                               background=BackgroundTask(response.aclose))
    result.raw_headers = _raw(headers)
    return result


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _scrubbed_page(response: httpx.Response, headers: list[tuple[str, str]], token: str) -> Response:
    """An HTML page without the session's private token, which programs embed for their browser code
    (JupyterLab's page config does): the browser never needs it, since this proxy adds it to every request."""
    try:
        body = (await response.aread()).replace(token.encode(), b"")
    finally:
        await response.aclose()
    result = Response(content=body, status_code=response.status_code)
    kept = [(k, v) for k, v in headers if k.lower() != "content-encoding"]  # aread() decoded the body
    result.raw_headers = [*_raw(kept), (b"content-length", str(len(body)).encode())]
    return result


@router.websocket("/s/{session_id}/{path:path}")
async def proxy_websocket(websocket: WebSocket, session_id: str, path: str) -> None:
    try:
        port, token = await _target(websocket, session_id)
    except BeamhubError as exc:
        await websocket.close(code=4000 + exc.status_code, reason=str(exc))
        return
    query = f"?{websocket.url.query}" if websocket.url.query else ""
    url = f"ws://127.0.0.1:{port}{websocket.url.path}{query}"
    skip = {"host", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
            "sec-websocket-protocol"}
    headers = upstream_headers([(k, v) for k, v in websocket.headers.items() if k.lower() not in skip], token)
    subprotocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    try:
        upstream = await websockets.connect(url, additional_headers=headers, subprotocols=subprotocols or None,
                                            max_size=None, open_timeout=10)
    except (OSError, websockets.InvalidHandshake) as exc:
        await websocket.close(code=1011, reason=f"session does not answer: {type(exc).__name__}")
        return
    await websocket.accept(subprotocol=upstream.subprotocol)
    async with upstream:
        await _pump(websocket, upstream)


async def _pump(client: WebSocket, upstream: websockets.ClientConnection) -> None:
    """Copy messages both ways until either side closes."""

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

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    try:
        await client.close()
    except (RuntimeError, WebSocketDisconnect):  # the client is gone already
        pass
