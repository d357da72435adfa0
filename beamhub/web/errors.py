"""Failures on console pages: a readable page in the user's language, never a traceback or JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from beamhub.compute.backend import BackendError
from beamhub.deps import SESSION_COOKIE, principal_if_valid, read_cookie
from beamhub.errors import (
    N_,
    BeamhubError,
    Conflict,
    Forbidden,
    InsufficientResources,
    Invalid,
    NotFound,
    NotReady,
    TooManyRequests,
    Unauthenticated,
)
from beamhub.identity.principal import Principal
from beamhub.web.i18n import request_locale
from beamhub.web.pages import LoginRequired, login_redirect, message_of, render, translator
from beamhub.web.stored_text import translated

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

TITLES: list[tuple[type[BeamhubError], str]] = [
    (InsufficientResources, N_("Not enough free resources")),
    (Unauthenticated, N_("Please sign in again")),
    (Forbidden, N_("Not allowed")),
    (NotFound, N_("Not found")),
    (Invalid, N_("This request cannot be done")),
    (Conflict, N_("This cannot be done now")),
    (NotReady, N_("Not ready yet")),
    (TooManyRequests, N_("Too many attempts")),
]
"""The heading of an error page, by the kind of failure (the most specific first)."""


def title_of(exc: BeamhubError) -> str:
    return next((title for kind, title in TITLES if isinstance(exc, kind)), N_("Something went wrong"))


async def signed_in(request: Request) -> Principal | None:
    """Who is signed in on this browser, for the menu of an error page; None if nobody (or the login ended)."""
    return await principal_if_valid(request) if read_cookie(request, SESSION_COOKIE) else None


async def error_page(request: Request, status_code: int, title: str, detail: str) -> Response:
    """The error page: a translated heading, the reason (translated where the catalogue knows it or the template
    that made it), what next; the menu too, when someone is signed in."""
    _ = translator(request)
    return render(request, "error.html", status_code, code=status_code, title=_(title),
                  detail=translated(detail, request_locale(request)), principal=await signed_in(request))


async def page_error(request: Request, exc: Exception) -> Response:
    """The page for an exception a page route raised; anything else is not ours to answer."""
    if isinstance(exc, LoginRequired):
        return login_redirect(exc)
    if isinstance(exc, BeamhubError):
        return await error_page(request, exc.status_code, title_of(exc), message_of(exc, request))
    if isinstance(exc, BackendError):
        return await error_page(request, 503, N_("The compute backend failed"), str(exc))
    if isinstance(exc, RequestValidationError):
        return await error_page(request, 422, N_("This request cannot be done"),
                                N_("A field of the form is missing or not valid; go back and check it."))
    raise exc


class PageRoute(APIRoute):
    """A route of the console: failures become pages, not JSON."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (LoginRequired, BeamhubError, BackendError, RequestValidationError) as exc:
                return await page_error(request, exc)

        return handle


def wants_html(request: Request) -> bool:
    """A browser navigating to a page (not an API client)."""
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")


async def http_error(request: Request, exc: HTTPException) -> Response:
    """An unknown page or a wrong method: a page for browsers, JSON `detail` for every other client."""
    if wants_html(request):
        title = N_("Not found") if exc.status_code == 404 else N_("Something went wrong")
        detail = N_("There is no page at this address.") if exc.status_code == 404 else ""
        return await error_page(request, exc.status_code, title, detail)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    return JSONResponse({"detail": exc.detail, "code": code}, exc.status_code, headers=exc.headers)
