"""/login, /logout, /api/v1/me: browser login with a session cookie (password, PAM, OpenID Connect)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from beamhub.deps import (
    SESSION_COOKIE,
    CurrentPrincipal,
    Login,
    clear_cookie,
    client_address,
    get_services,
    read_cookie,
    set_cookie,
)
from beamhub.errors import BeamhubError, Forbidden, NotFound
from beamhub.identity.accounts.models import User
from beamhub.identity.login.oidc import PENDING_TTL, OidcLogin, local_path
from beamhub.identity.login.service import same_secret
from beamhub.web.pages import message_of, render, translator

router = APIRouter(tags=["login"])

LOGIN_CSRF_COOKIE = "beamhub-login"
OIDC_COOKIE = "beamhub-oidc"


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _oidc(request: Request) -> OidcLogin:
    """The app's OpenID Connect relying party; 404 unless that login method is enabled."""
    oidc = get_services(request).oidc
    if oidc is None:
        raise NotFound("single sign-on is not enabled here")
    return oidc


def login_page(request: Request, csrf: str, next_path: str, message: str = "", status_code: int = 200,
               expired: bool = False) -> HTMLResponse:
    """The login page (console template) for every enabled method, in the browser's language."""
    settings = get_services(request).settings
    oidc = settings.oidc_provider_name if "oidc" in settings.login_methods else ""
    return render(request, "login.html", status_code, login_csrf=csrf, next_path=next_path,
                  methods=[m for m in ("password", "pam") if m in settings.login_methods], oidc_provider=oidc,
                  message=translator(request)(message) if message else "", expired=expired)


@router.get("/login", include_in_schema=False)
def get_login(request: Request, next: str = "/", expired: bool = False) -> Response:  # noqa: A002
    """The login form, with a login CSRF token bound to a pre-session cookie (double submit)."""
    csrf = read_cookie(request, LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    methods = get_services(request).settings.login_methods
    response: Response = (JSONResponse({"csrf_token": csrf, "methods": methods}) if wants_json(request)
                          else login_page(request, csrf, local_path(next), expired=expired))
    set_cookie(request, response, LOGIN_CSRF_COOKIE, csrf, max_age=3600)
    response.headers["Cache-Control"] = "no-store"
    return response


def _logged_in(request: Request, user: User, method: str, next_path: str) -> Response:
    """The answer to a successful login: the session cookie, and JSON or a redirect."""
    value, csrf = get_services(request).login.start_session(user, method, client_address(request))
    response: Response = (JSONResponse({"username": user.username, "csrf_token": csrf}) if wants_json(request)
                          else RedirectResponse(local_path(next_path), status_code=status.HTTP_303_SEE_OTHER))
    ttl = get_services(request).settings.login_session_ttl
    set_cookie(request, response, SESSION_COOKIE, value, max_age=ttl)
    clear_cookie(request, response, LOGIN_CSRF_COOKIE)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/login", include_in_schema=False)
def post_login(request: Request, login: Login, username: Annotated[str, Form(max_length=64)],
               password: Annotated[str, Form(max_length=1024)], csrf_token: Annotated[str, Form()] = "",
               method: Annotated[str, Form()] = "password",
               next: Annotated[str, Form()] = "/") -> Response:  # noqa: A002
    """Check a username and password (method password or pam) and start a login session."""
    expected = read_cookie(request, LOGIN_CSRF_COOKIE) or ""
    try:
        if not expected or not same_secret(csrf_token, expected):
            raise Forbidden("CSRF token missing or wrong; load the login page again")
        user = login.login(username, password, method, client_address(request))
    except BeamhubError as exc:
        if wants_json(request):
            raise
        csrf = expected or secrets.token_urlsafe(32)
        page = login_page(request, csrf, local_path(next), message_of(exc, request), exc.status_code)
        set_cookie(request, page, LOGIN_CSRF_COOKIE, csrf, max_age=3600)
        return page
    return _logged_in(request, user, method, next)


@router.get("/login/oidc", include_in_schema=False)
async def oidc_start(request: Request, next: str = "/") -> Response:  # noqa: A002
    """Send the browser to the single sign-on provider."""
    url, flow = await _oidc(request).begin(local_path(next))
    response = RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
    set_cookie(request, response, OIDC_COOKIE, flow, max_age=PENDING_TTL)
    return response


@router.get("/login/oidc/callback", include_in_schema=False)
async def oidc_callback(request: Request, state: str | None = None, code: str | None = None,
                        error: str | None = None) -> Response:
    """Finish a single sign-on login: the mapped beamhub user gets a session cookie."""
    services = get_services(request)
    address = client_address(request)
    try:
        username, claims, next_path = await _oidc(request).finish(read_cookie(request, OIDC_COOKIE), state, code,
                                                                  error)
    except BeamhubError as exc:
        await run_in_threadpool(services.login.record_failure, "-", address, "oidc", str(exc))
        raise
    user = await run_in_threadpool(services.login.single_sign_on_user, username, claims, address)
    response = await run_in_threadpool(_logged_in, request, user, "oidc", next_path)
    clear_cookie(request, response, OIDC_COOKIE)
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, principal: CurrentPrincipal, login: Login) -> Response:
    """End this browser's login session (CSRF-checked like every state-changing request) and drop its cookie."""
    login.end_session(read_cookie(request, SESSION_COOKIE), principal.address)
    response: Response = (JSONResponse({"detail": "logged out"}) if wants_json(request)
                          else RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER))
    clear_cookie(request, response, SESSION_COOKIE)
    return response
