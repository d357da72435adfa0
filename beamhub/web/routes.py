"""The console's session pages: HTML only; every decision is the session service's, as for the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse, Response

from beamhub.db import utcnow
from beamhub.deps import Sessions, get_services, set_cookie
from beamhub.errors import BeamhubError, Forbidden
from beamhub.identity.login.oidc import local_path
from beamhub.identity.principal import Principal
from beamhub.sessions import kinds
from beamhub.sessions.models import SessionRecord
from beamhub.sessions.service import SessionService
from beamhub.web.errors import PageRoute, title_of
from beamhub.web.forms import LaunchForm
from beamhub.web.i18n import LANG_COOKIE, LOCALES
from beamhub.web.pages import message_of, page_principal, render, translator

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PagePrincipal = Annotated[Principal, Depends(page_principal)]

OPEN_PATHS = {"jupyter": "lab"}
"""Where in a running session of a kind a person starts (kinds not named here have no web page to open)."""
RECENT_ENDED = 10
EXTEND_HOURS = (1, 4, 24)
OUTPUT_TAIL = 8192
"""Bytes of a session's log its page shows."""
LANG_COOKIE_AGE = 365 * 86400


def open_target(record: SessionRecord) -> str | None:
    """The page that opens a session (once it runs) in the browser, if its kind has one."""
    path = OPEN_PATHS.get(record.kind)
    return f"{kinds.proxy_prefix(record.id)}{path}" if path is not None else None


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER)


@router.get("/")
def dashboard(request: Request, principal: PagePrincipal, sessions: Sessions) -> Response:
    """My sessions: the active ones with their controls, then the last ended ones with why they ended."""
    records = sessions.list(principal, principal.username)
    return render(request, "dashboard.html", principal=principal, now=utcnow(), open_target=open_target,
                  active=[r for r in records if r.state.is_active], extend_hours=EXTEND_HOURS,
                  ended=[r for r in records if not r.state.is_active][:RECENT_ENDED], kinds=kinds.kind_names())


def launch_page(request: Request, principal: Principal, sessions: Sessions, form: LaunchForm,
                error: BeamhubError | None = None) -> Response:
    """The launch form, with the node's limits and what is free now; a refused form comes back with why."""
    settings = get_services(request).settings
    total, free = sessions.room()
    _ = translator(request)
    return render(request, "launch.html", error.status_code if error else 200, principal=principal,
                  form=form.values(), kinds=kinds.kind_names(), images=sorted(settings.images), total=total,
                  partitions=sessions.partitions(),
                  free=free, overcommit=settings.overcommit, max_hours=settings.max_runtime / 3600,
                  error_title=_(title_of(error)) if error else "", error=message_of(error, request) if error else "")


@router.get("/sessions/new")
def new_session(request: Request, principal: PagePrincipal, sessions: Sessions, kind: str = "jupyter") -> Response:
    settings = get_services(request).settings
    chosen = kind if kind in kinds.kind_names() else "jupyter"
    return launch_page(request, principal, sessions, LaunchForm.defaults(settings, chosen))


@router.post("/sessions")
def launch(request: Request, principal: PagePrincipal, sessions: Sessions,
           form: Annotated[LaunchForm, Form()]) -> Response:
    """Start a session from the form, then follow its start on its own page."""
    try:
        record = sessions.create(principal, form.to_spec(translator(request), get_services(request).settings))
    except BeamhubError as exc:
        return launch_page(request, principal, sessions, form, exc)
    return _see(f"/sessions/{record.id}")


@router.get("/sessions/{session_id}")
def session_page(request: Request, session_id: str, principal: PagePrincipal, sessions: Sessions) -> Response:
    """One session: its resources and the live progress of its start; it opens itself once it runs."""
    record = sessions.get(principal, session_id)
    events = sessions.events(principal, session_id)
    return render(request, "session.html", principal=principal, session=record, events=events, now=utcnow(),
                  open_target=open_target, extend_hours=EXTEND_HOURS, output=_output(principal, sessions, record),
                  last_event=events[-1].id if events else 0)


def _output(principal: Principal, sessions: SessionService, record: SessionRecord) -> str | None:
    """The tail of a session's log, or None where the principal may not read it (staff of its beamline)."""
    try:
        return sessions.log(principal, record.id, OUTPUT_TAIL)
    except Forbidden:
        return None


@router.post("/sessions/{session_id}/stop")
def stop_session(session_id: str, principal: PagePrincipal, sessions: Sessions,
                 next: Annotated[str, Form()] = "/") -> Response:  # noqa: A002
    sessions.stop(principal, session_id)
    return _see(local_path(next))


@router.post("/sessions/{session_id}/extend")
def extend_session(session_id: str, principal: PagePrincipal, sessions: Sessions,
                   hours: Annotated[int, Form(gt=0, le=24 * 366)],
                   next: Annotated[str, Form()] = "/") -> Response:  # noqa: A002
    """Move the session's end `hours` later than it is now."""
    record = sessions.get(principal, session_id)
    sessions.extend(principal, session_id, record.expires_at + timedelta(hours=hours), None)
    return _see(local_path(next))


@router.get("/lang/{locale}")
def switch_language(request: Request, locale: str, next: str = "/") -> Response:  # noqa: A002
    """Remember the language a person picked (a cookie), and go back to the page they were on."""
    response = _see(local_path(next))
    if locale in LOCALES:
        set_cookie(request, response, LANG_COOKIE, locale, max_age=LANG_COOKIE_AGE)
    return response
