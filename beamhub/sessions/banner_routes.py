"""/_beamhub/...: the banner beamhub adds to a session's JupyterLab pages (the proxy injects its script on the
session's own origin), and what it asks there: when the session ends, and one click to extend it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.responses import FileResponse

from beamhub.db import utcnow
from beamhub.deps import get_services
from beamhub.identity.principal import Principal
from beamhub.sessions.models import SessionRecord
from beamhub.sessions.origin_access import entry_principal, require_own_pages
from beamhub.sessions.schemas import InsideOut

BANNER_SCRIPT = "/_beamhub/banner.js"
SCRIPT_FILE = Path(__file__).parent / "static" / "banner.js"
EXTEND_SECONDS = 3600
"""One click on the banner's Extend: an hour more (no further than the longest runtime)."""
NO_STORE = {"Cache-Control": "no-store"}

banner_router = APIRouter(include_in_schema=False)
"""Served on the session's own origin only (origin_routes adds it to the session router)."""


@banner_router.get(BANNER_SCRIPT)
def banner_script() -> FileResponse:
    return FileResponse(SCRIPT_FILE, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


def _owner(request: Request) -> tuple[Principal, str]:
    """The caller and the session of this origin, for a request from the session's own pages."""
    session_id = request.path_params["session"]
    require_own_pages(request)
    return entry_principal(request, session_id), session_id


def _inside(request: Request, response: Response, record: SessionRecord) -> InsideOut:
    settings = get_services(request).settings
    response.headers.update(NO_STORE)
    return InsideOut(id=record.id, state=record.state.value, expires_at=record.expires_at, now=utcnow(),
                     warnings=settings.expiry_warning,
                     console_url=f"{settings.callback_url}/sessions/{record.id}")


@banner_router.get("/_beamhub/session", response_model=InsideOut)
def session_inside(request: Request, response: Response) -> InsideOut:
    """The session as its banner shows it, for its owner."""
    principal, session_id = _owner(request)
    return _inside(request, response, get_services(request).sessions.entered(principal, session_id))


@banner_router.post("/_beamhub/extend", response_model=InsideOut)
def extend_inside(request: Request, response: Response) -> InsideOut:
    """The banner's Extend: the session's end an hour later."""
    principal, session_id = _owner(request)
    record = get_services(request).sessions.extend_inside(principal, session_id, EXTEND_SECONDS)
    return _inside(request, response, record)
