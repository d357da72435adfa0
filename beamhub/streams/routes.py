"""Live frames for subscribers: the websocket /api/v1/proposals/{id}/stream for whoever may read the proposal's
data, and /api/v1/streams, where to read them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import zmq
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from beamhub.deps import (
    SESSION_COOKIE,
    authenticate,
    current_principal,
    get_services,
    has_bearer,
    principal_if_valid,
    read_cookie,
)
from beamhub.errors import BeamhubError, Forbidden
from beamhub.identity.principal import Principal
from beamhub.streams.frames import control_message, with_gap
from beamhub.streams.relay import Relay, Subscription

router = APIRouter(tags=["streams"])

RECHECK_SECONDS = 2.0
"""How often an open subscription asks again whether its credential stands and may still read the proposal."""


@router.get("/api/v1/streams")
def endpoints(request: Request, _: Annotated[Principal, Depends(current_principal)]) -> dict[str, str | None]:
    """Where live frames are read: `subscribe`, the ZeroMQ endpoint of Python subscribers (null when off; a
    wildcard host means beamhub's own), and `websocket`, the route for every other client."""
    egress = request.app.state.egress
    return {"subscribe": egress.endpoint if egress is not None else None,
            "websocket": "/api/v1/proposals/{proposal_id}/stream"}


@router.websocket("/api/v1/proposals/{proposal_id}/stream")
async def stream(websocket: WebSocket, proposal_id: str) -> None:
    """From now on, each frame the DAQ publishes for the proposal: its header as text (`{"type": "frame", "frame",
    "seq", "shape", "dtype", "meta", "gap"}`, gap: frames dropped for this subscriber just before it), then its
    bytes as one binary message."""
    try:
        principal = await _subscriber(websocket, proposal_id)
    except BeamhubError as exc:
        await _refuse(websocket, exc)
        return
    relay: Relay = websocket.app.state.relay
    await websocket.accept()
    with relay.subscribe(proposal_id) as subscription:
        await websocket.send_text(control_message("hello", proposal=proposal_id, user=principal.username,
                                                  queue=relay.limit, policy=relay.policy))
        await _serve(websocket, subscription, proposal_id)


async def _subscriber(websocket: WebSocket, proposal_id: str) -> Principal:
    """The caller, if they may read the proposal's data. A browser's login cookie counts only from beamhub's own
    pages (a session's page is same-site and would carry it too)."""
    if not has_bearer(websocket) and read_cookie(websocket, SESSION_COOKIE) is not None:
        origin = websocket.headers.get("origin", "")
        if origin.partition("://")[2].lower() != websocket.headers.get("host", "").lower():
            raise Forbidden("cross-origin subscription refused: open it from beamhub's pages or with a token")
    principal = await run_in_threadpool(authenticate, websocket)
    await run_in_threadpool(get_services(websocket).streams.check_subscriber, principal, proposal_id)
    return principal


async def _refuse(websocket: WebSocket, exc: BeamhubError) -> None:
    """Answer the handshake with the refusal's status and JSON detail and code, as the API answers (a close code
    4000 + status without the websocket denial extension)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": str(exc), "code": exc.code},
                                                          status_code=exc.status_code))
    else:
        await websocket.close(code=4000 + exc.status_code, reason=str(exc)[:120])


async def _serve(websocket: WebSocket, subscription: Subscription, proposal_id: str) -> None:
    """Send frames until the subscriber leaves or may no longer read the proposal (then an `end` message)."""
    tasks = [asyncio.create_task(_send_frames(websocket, subscription)),
             asyncio.create_task(_until_disconnect(websocket)),
             asyncio.create_task(_until_refused(websocket, proposal_id))]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        if tasks[2] in done and (reason := tasks[2].result()):
            await websocket.send_text(control_message("end", reason=reason))
            await websocket.close(code=1008, reason=reason[:120])
        else:
            await websocket.close()


async def _send_frames(websocket: WebSocket, subscription: Subscription) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        while True:
            missed, (header, data) = await subscription.get()
            await websocket.send_text(with_gap(header, missed))
            buffer = data.buffer if isinstance(data, zmq.Frame) else data
            await websocket.send_bytes(buffer)  # type: ignore[arg-type]  # ZeroMQ's buffer, sent without a copy


async def _until_disconnect(websocket: WebSocket) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


async def _until_refused(websocket: WebSocket, proposal_id: str) -> str:
    """Why the subscriber may no longer watch, asked afresh every RECHECK_SECONDS: a revoked or expired token, an
    ended login, a disabled user, a member removed."""
    streams = get_services(websocket).streams
    while True:
        await asyncio.sleep(RECHECK_SECONDS)
        principal = await principal_if_valid(websocket)
        if principal is None:
            return "the credential of this subscription no longer stands"
        try:
            await run_in_threadpool(streams.check_subscriber, principal, proposal_id)
        except BeamhubError as exc:
            return f"refused: {exc}"
