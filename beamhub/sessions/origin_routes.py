"""/s/{session}/...: who reaches a session, and on which origin.

On the console's origin a session is never served to a browser: a browser (a cookie) is sent to the session's own
origin with a one-time code, and exchanges it there for an entry cookie of that origin. API clients that send a
bearer token may use either origin; on the console's, the answer carries a sandboxing CSP. Only a session's owner
enters it; staff and administrators manage it from the console. A browser that comes to a session that does not
run (it ended, or has not started yet) is sent to the session's page in the console, which says in its language
what became of it, never a JSON error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, WebSocket
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response

from beamhub.cache import TtlCache
from beamhub.compute.backend import Endpoint
from beamhub.deps import (
    authenticate,
    bearer_token,
    credential_digest,
    get_services,
    has_bearer,
    read_cookie,
    refuse_tossed_cookie,
    set_cookie,
)
from beamhub.errors import BeamhubError, Forbidden, Invalid, NotReady, Unauthenticated
from beamhub.identity.principal import Principal
from beamhub.sessions.banner_routes import BANNER_SCRIPT, banner_router
from beamhub.sessions.entry import COOKIE_TTL, new_state, session_origin
from beamhub.sessions.origin_access import (
    ENTRY_COOKIE,
    STATE_COOKIE,
    entry_principal,
    own_session,
    require_own_pages,
)
from beamhub.sessions.proxy import METHODS, forward_http, forward_websocket
from beamhub.sessions.upstream import Upstreams

ENTER_PATH = "/_beamhub/enter"
CONSOLE_ENTER_PATH = "/sessions/{session_id}/enter"
"""Where the console hands a session's owner a one-time code for the browser's state."""
STATE_TTL = 600
"""Seconds a browser's entry state lasts on a session's origin (the time to sign in on the way included)."""
RECHECK_SECONDS = 2.0
"""How often an open websocket asks again whether its caller's credential still stands."""
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
Decide = Callable[[HTTPConnection, str], tuple[Endpoint, str]]
"""Who may reach a session over a connection: its socket and token, or a BeamhubError."""

console_router = APIRouter(tags=["proxy"])
session_router = APIRouter()
"""Served on the session's own origin only (app.py mounts it under the sessions' host name)."""
session_router.include_router(banner_router)


ADMISSION_SECONDS = 2.0
"""How long a decision to let a credential into a session is reused: revocation, logout and disabling still take
effect within it, and the data plane does no database round trip per request."""
Admissions = TtlCache[tuple[str, str], tuple[Endpoint, str]]
"""Recent decisions to let a credential into a session (refusals are never kept); per process, so replicas share
nothing that correctness depends on."""


def _navigating(request: Request) -> bool:
    """Whether a browser asks for a page (not a script for data)."""
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def _to_session_page(console: str, session_id: str) -> RedirectResponse:
    """To the console's page of a session, which tells what became of it."""
    return RedirectResponse(f"{console}/sessions/{session_id}", 303, headers=NO_STORE)


def _path_and_query(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _check_next(session_id: str, next_path: str) -> None:
    if not next_path.startswith(f"/s/{session_id}/") or any(c in next_path for c in "\\\r\n"):
        raise Invalid("next must be a path inside this session")


def _upstreams(connection: HTTPConnection) -> Upstreams:
    return connection.app.state.upstreams


def _credential(connection: HTTPConnection) -> str:
    """What a request proves itself with (its bearer token, else the session's entry cookie), as a digest."""
    if has_bearer(connection):
        return credential_digest("bearer", bearer_token(connection) or "")
    return credential_digest("entry", read_cookie(connection, ENTRY_COOKIE) or "")


async def _admitted(connection: HTTPConnection, session_id: str, decide: Decide) -> tuple[Endpoint, str]:
    """decide() in a thread, or its answer of the last seconds for the same credential and session."""
    admissions: Admissions = connection.app.state.admissions
    key = (_credential(connection), session_id)
    target = admissions.get(key)
    if target is None:
        target = await asyncio.to_thread(decide, connection, session_id)
        admissions.put(key, target)
    return target


def _target(principal: Principal, connection: HTTPConnection, session_id: str) -> tuple[Endpoint, str]:
    return get_services(connection).sessions.proxy_target(principal, session_id)


def _bearer_target(connection: HTTPConnection, session_id: str) -> tuple[Endpoint, str]:
    principal = authenticate(connection)
    principal.require_scope("sessions")
    return _target(principal, connection, session_id)


def _entry_target(connection: HTTPConnection, session_id: str) -> tuple[Endpoint, str]:
    """The session's socket and token for a request with a bearer token or the session's entry cookie."""
    return _target(entry_principal(connection, session_id), connection, session_id)


# --- the console's origin --------------------------------------------------------------------
@console_router.api_route("/s/{session_id}/{path:path}", methods=METHODS, include_in_schema=False)
async def session_on_console(session_id: str, path: str, request: Request) -> Response:
    """Bearer clients are served (sandboxed); a browser is sent to the session's own origin."""
    if has_bearer(request):
        socket, token = await _admitted(request, session_id, _bearer_target)
        return await forward_http(request, _upstreams(request), socket, token, sandbox=True)
    origin = session_origin(get_services(request).settings, session_id)
    if request.method not in ("GET", "HEAD"):
        await asyncio.to_thread(authenticate, request)  # no credential at all: 401 first
        raise Forbidden("session %(session)s is served on its own origin, %(origin)s",
                        session=session_id, origin=origin)

    def to_its_origin() -> Response:
        get_services(request).sessions.entered(_browser_user(request), session_id)  # others stop here, not there
        return RedirectResponse(f"{origin}{_path_and_query(request)}", 303, headers=NO_STORE)

    return await _detour(request, session_id, to_its_origin)


@console_router.get(CONSOLE_ENTER_PATH, include_in_schema=False)
async def code_for_session(session_id: str, request: Request, state: str = Query(max_length=128),
                           next: str = Query(max_length=4096)) -> Response:  # noqa: A002 (the parameter's name)
    """The owner's one-time code for the browser whose state the session's origin sent along, then back there."""
    _check_next(session_id, next)

    def with_code() -> Response:
        code = get_services(request).entry.issue_code(_browser_user(request), session_id, state)
        origin = session_origin(get_services(request).settings, session_id)
        return RedirectResponse(f"{origin}{ENTER_PATH}?{urlencode({'code': code, 'next': next})}", 303,
                                headers=NO_STORE)

    return await _detour(request, session_id, with_code)


def _browser_user(request: Request) -> Principal:
    principal = authenticate(request)
    principal.require_scope("sessions")
    return principal


async def _detour(request: Request, session_id: str, answer: Callable[[], Response]) -> Response:
    """answer() (in a thread), or where a browser goes instead: to sign in, or to the console's page of a session
    that does not run."""
    try:
        return await asyncio.to_thread(answer)
    except Unauthenticated:
        if not _navigating(request):
            raise
        return RedirectResponse(f"/login?{urlencode({'next': _path_and_query(request)})}", 303, headers=NO_STORE)
    except NotReady:
        if not _navigating(request):
            raise
        return _to_session_page("", session_id)


@console_router.websocket("/s/{session_id}/{path:path}")
async def websocket_on_console(websocket: WebSocket, session_id: str, path: str) -> None:
    """Only bearer clients: a browser's websocket belongs on the session's own origin."""
    if not has_bearer(websocket):
        await websocket.close(code=4403, reason="a session's pages are served on its own origin")
        return
    await _serve_websocket(websocket, session_id, _bearer_target)


# --- the session's own origin ----------------------------------------------------------------
@session_router.get(ENTER_PATH, include_in_schema=False)
async def enter_session(request: Request, code: str = Query(max_length=128),
                        next: str = Query(max_length=4096)) -> Response:  # noqa: A002 (the parameter's name)
    """Exchange the console's one-time code, with this browser's state, for this origin's entry cookie, then go
    where the user was going."""
    session_id = request.path_params["session"]
    _check_next(session_id, next)
    refuse_tossed_cookie(request, STATE_COOKIE)
    state = read_cookie(request, STATE_COOKIE)
    cookie = await asyncio.to_thread(get_services(request).entry.redeem_code, session_id, code, state)
    response = RedirectResponse(next, 303, headers=NO_STORE)
    set_cookie(request, response, ENTRY_COOKIE, cookie, max_age=int(COOKIE_TTL.total_seconds()))
    return response


def _ask_the_console(request: Request, session_id: str) -> Response:
    """Send a browser without an entry cookie to the console for a code bound to a state cookie of this origin
    (the one it has, so that two tabs entering at once both get in)."""
    refuse_tossed_cookie(request, STATE_COOKIE)
    state = read_cookie(request, STATE_COOKIE) or new_state()
    console = get_services(request).settings.callback_url
    query = urlencode({"state": state, "next": _path_and_query(request)})
    response = RedirectResponse(f"{console}{CONSOLE_ENTER_PATH.format(session_id=session_id)}?{query}", 303,
                                headers=NO_STORE)
    set_cookie(request, response, STATE_COOKIE, state, max_age=STATE_TTL)
    return response


@session_router.api_route("/s/{session_id}/{path:path}", methods=METHODS, include_in_schema=False)
async def session_http(session_id: str, path: str, request: Request) -> Response:
    own_session(request, session_id)
    entry_cookie = read_cookie(request, ENTRY_COOKIE)
    if request.method == "GET" and not entry_cookie and not has_bearer(request):
        return _ask_the_console(request, session_id)
    require_own_pages(request)
    try:
        socket, token = await _admitted(request, session_id, _entry_target)
    except NotReady:
        if not _navigating(request):
            raise
        return _to_session_page(get_services(request).settings.callback_url, session_id)
    return await forward_http(request, _upstreams(request), socket, token, sandbox=False, script=BANNER_SCRIPT)


@session_router.websocket("/s/{session_id}/{path:path}")
async def session_websocket(websocket: WebSocket, session_id: str, path: str) -> None:
    try:
        own_session(websocket, session_id)
        require_own_pages(websocket)
    except BeamhubError as exc:
        await websocket.close(code=4000 + exc.status_code, reason=str(exc))
        return
    await _serve_websocket(websocket, session_id, _entry_target)


async def _serve_websocket(websocket: WebSocket, session_id: str, decide: Decide) -> None:
    """Forward a websocket the caller may open, and close it once their credential stops standing (asked anew, not
    from the admissions of the last seconds)."""
    try:
        socket, token = await _admitted(websocket, session_id, decide)
    except BeamhubError as exc:
        await websocket.close(code=4000 + exc.status_code, reason=str(exc))
        return

    async def still_allowed() -> bool:
        await asyncio.sleep(RECHECK_SECONDS)
        try:
            await asyncio.to_thread(decide, websocket, session_id)
        except BeamhubError:
            return False
        return True

    await forward_websocket(websocket, socket, token, still_allowed)
