"""The console's administration pages: the node's use, every session, beamline workstations, the audit log.

Each page needs an administrator (anyone else gets the 403 page) and calls the same services as the API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from beamhub.db import utcnow
from beamhub.deps import Audit, Groups, Identity, Sessions, Workstations
from beamhub.errors import BeamhubError, Invalid
from beamhub.identity.fields import beamline_name
from beamhub.identity.principal import Principal
from beamhub.sessions.schemas import check_ip
from beamhub.web.audit_details import detail_fields
from beamhub.web.errors import PageRoute
from beamhub.web.page_deps import PAGE_SIZE, PageAdmin, refusal, see_other
from beamhub.web.pages import formatter, render, translator

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RECENT_SESSIONS = 50
"""How many of the latest sessions the sessions page lists below the active ones."""


@router.get("/admin")
def overview(request: Request, principal: PageAdmin, sessions: Sessions, identity: Identity, groups: Groups,
             workstations: Workstations) -> Response:
    """The node's capacity and what the active sessions hold of it, and how many of each thing there are."""
    total, free = sessions.room()
    active = sessions.list(principal, active_only=True)
    counts = {"users": identity.count_users(by=principal), "sessions": len(active),
              "groups": len(groups.list(by=principal)), "workstations": len(workstations.list())}
    return render(request, "admin/overview.html", principal=principal, admin_page="overview", total=total, free=free,
                  backend=sessions.backend.name, counts=counts)


@router.get("/admin/sessions")
def all_sessions(request: Request, principal: PageAdmin, sessions: Sessions) -> Response:
    """Every user's active sessions, each with a stop button, and the latest ended ones."""
    active = sessions.list(principal, active_only=True)
    ended = [r for r in sessions.list(principal, limit=RECENT_SESSIONS) if not r.state.is_active]
    return render(request, "admin/sessions.html", principal=principal, admin_page="sessions", active=active,
                  ended=ended, now=utcnow())


@router.post("/admin/sessions/{session_id}/stop")
def stop_session(principal: PageAdmin, sessions: Sessions, session_id: str) -> Response:
    sessions.stop(principal, session_id)
    return see_other("/admin/sessions")


def workstations_page(request: Request, principal: Principal, workstations: Workstations, status_code: int = 200,
                      **context: Any) -> Response:
    """The registered workstations and the form to register one; `context` carries a refusal and what was typed."""
    form = {"ip": "", "beamline": "", "description": ""} | context.pop("form", {})
    return render(request, "admin/workstations.html", status_code, principal=principal, admin_page="workstations",
                  workstations=workstations.list(), form=form, **context)


def checked_ip(text: str, _: Callable[[str], str]) -> str:
    """The IP address typed into a form, written as the API stores it; Invalid with a translated reason."""
    try:
        ip = check_ip(text.strip())
    except ValueError:
        ip = None
    if ip is None:
        raise Invalid(_("%(ip)s is not an IP address; write it like 10.1.2.3.") % {"ip": text.strip() or "–"})
    return ip


@router.get("/admin/workstations")
def list_workstations(request: Request, principal: PageAdmin, workstations: Workstations) -> Response:
    return workstations_page(request, principal, workstations)


@router.post("/admin/workstations")
def register_workstation(request: Request, principal: PageAdmin, workstations: Workstations,
                         ip: Annotated[str, Form(max_length=64)] = "",
                         beamline: Annotated[str, Form(max_length=64)] = "",
                         description: Annotated[str, Form(max_length=1024)] = "") -> Response:
    """Register a beamline workstation's IP; a refused form comes back with why, as it was typed."""
    try:
        workstations.register(principal, checked_ip(ip, translator(request)), beamline_name(beamline),
                              description.strip())
    except BeamhubError as exc:
        form = {"ip": ip, "beamline": beamline, "description": description}
        return workstations_page(request, principal, workstations, exc.status_code, form=form,
                                 **refusal(request, exc))
    return see_other("/admin/workstations")


@router.post("/admin/workstations/update")
def update_workstation(request: Request, principal: PageAdmin, workstations: Workstations,
                       ip: Annotated[str, Form(max_length=64)],
                       beamline: Annotated[str, Form(max_length=64)] = "",
                       description: Annotated[str, Form(max_length=1024)] = "") -> Response:
    """Change a workstation's beamline and description."""
    try:
        workstations.update(principal, ip, beamline_name(beamline), description.strip())
    except BeamhubError as exc:
        return workstations_page(request, principal, workstations, exc.status_code, **refusal(request, exc))
    return see_other("/admin/workstations")


def day_start(text: str, request: Request) -> datetime | None:
    """The start of a day (YYYY-MM-DD) in the console's time zone; None when empty; Invalid if not a date."""
    if not text.strip():
        return None
    _ = translator(request)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(_("A date is written like 2026-01-31.")) from None
    return datetime.combine(day, time.min, tzinfo=formatter(request).tz)


@router.get("/admin/audit")
def audit_log(request: Request, principal: PageAdmin, audit: Audit, actor: str = "", action: str = "",
              since: str = "", before: int | None = None) -> Response:
    """The audit log, newest first, filtered by actor, action (or family) and first day; a page at a time."""
    filters = {"actor": actor.strip(), "action": action.strip(), "since": since.strip()}
    status_code, context = 200, {}
    try:
        start = day_start(since, request)
        events = audit.query(actor=filters["actor"] or None, action=filters["action"] or None, since=start,
                             limit=PAGE_SIZE, before_id=before, by=principal)
    except BeamhubError as exc:
        events, status_code, context = [], exc.status_code, refusal(request, exc)
    return render(request, "admin/audit.html", status_code, principal=principal, admin_page="audit", events=events,
                  filters=filters, filter_query=urlencode({k: v for k, v in filters.items() if v}), before=before,
                  detail_fields=partial(detail_fields, _=translator(request), fmt=formatter(request)),
                  next_before=events[-1].id if len(events) == PAGE_SIZE else None, **context)
