"""The console's administration page of proposals: create one (its folder and ACLs), add and remove members (every
ACL rewritten), through the same services as the API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from babel.dates import get_timezone
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from beamhub.data.models import MemberRole
from beamhub.data.proposals.presenters import proposal_out
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.deps import Data, get_services
from beamhub.errors import N_, BeamhubError, Invalid
from beamhub.identity.principal import Principal
from beamhub.web.errors import PageRoute
from beamhub.web.page_deps import PAGE_SIZE, PageAdmin, refusal, see_other
from beamhub.web.pages import render, translator

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NOTICES = {
    "created": N_("The proposal was created: its folder exists and its members may read it."),
    "member-added": N_("The member was added: they may read the proposal's data now."),
    "member-removed": N_("The member was removed: the kernel refuses them the data from now on."),
}
"""What the page says after a change, by the `done` its address carries."""


def proposals_page(request: Request, principal: Principal, data: Data, status_code: int = 200,
                   after: str | None = None, **context: Any) -> Response:
    """A page of proposals with their members and the forms that change them; `context` carries a refusal."""
    done = request.query_params.get("done", "")
    page = data.list(principal, after, PAGE_SIZE)
    form = {"id": "", "title": "", "beamline": "", "start": "", "end": "", "members": ""} | context.pop("form", {})
    return render(request, "admin/proposals.html", status_code, principal=principal, admin_page="proposals",
                  proposals=[proposal_out(data, p) for p in page], form=form, after=after,
                  next_after=page[-1].id if len(page) == PAGE_SIZE else None, roles=[r.value for r in MemberRole],
                  notice=translator(request)(NOTICES[done]) if done in NOTICES else "", **context)


@router.get("/admin/proposals")
def list_proposals(request: Request, principal: PageAdmin, data: Data, after: str | None = None) -> Response:
    return proposals_page(request, principal, data, after=after)


def day(request: Request, value: str, end: bool) -> dt.datetime:
    """The start (or end) of a day of the form's date field, in the console's time zone."""
    zone = get_timezone(get_services(request).settings.console_timezone)
    date = dt.date.fromisoformat(value)
    return dt.datetime.combine(date, dt.time.max if end else dt.time.min).replace(tzinfo=zone)


def checked_proposal(request: Request, form: dict[str, str]) -> ProposalCreate:
    """A new proposal as the API takes it; Invalid with a translated reason for fields it cannot have."""
    _ = translator(request)
    try:
        return ProposalCreate(id=form["id"].strip(), title=form["title"].strip(), beamline=form["beamline"],
                              beamtime_start=day(request, form["start"], end=False),
                              beamtime_end=day(request, form["end"], end=True),
                              members=[{"username": name, "role": "member"}
                                       for name in form["members"].replace(",", " ").split()])
    except (ValidationError, ValueError):
        raise Invalid(_("Check the proposal: its number is the year and five digits (2025-00123), the beamline is "
                        "lowercase (b7), the beamtime ends after it starts, and members are user names separated "
                        "by spaces.")) from None


@router.post("/admin/proposals")
def create_proposal(request: Request, principal: PageAdmin, data: Data,
                    id: Annotated[str, Form(max_length=32)] = "",  # noqa: A002
                    title: Annotated[str, Form(max_length=512)] = "",
                    beamline: Annotated[str, Form(max_length=32)] = "", start: Annotated[str, Form(max_length=32)] = "",
                    end: Annotated[str, Form(max_length=32)] = "",
                    members: Annotated[str, Form(max_length=4096)] = "") -> Response:
    """A new proposal, its folder and ACLs."""
    form = {"id": id, "title": title, "beamline": beamline, "start": start, "end": end, "members": members}
    try:
        proposal = data.create(principal, checked_proposal(request, form))
    except BeamhubError as exc:
        return proposals_page(request, principal, data, exc.status_code, form=form, **refusal(request, exc))
    return see_other(f"/admin/proposals?done=created#proposal-{proposal.id}")


@router.post("/admin/proposals/{proposal_id}/members")
def add_member(request: Request, principal: PageAdmin, data: Data, proposal_id: str,
               username: Annotated[str, Form(max_length=64)] = "",
               role: Annotated[MemberRole, Form()] = MemberRole.member) -> Response:
    """Add a member (or change their role); every file's ACL is rewritten before the answer."""
    try:
        data.set_member(principal, proposal_id, username.strip(), role)
    except BeamhubError as exc:
        return proposals_page(request, principal, data, exc.status_code, **refusal(request, exc))
    return see_other(f"/admin/proposals?done=member-added#proposal-{proposal_id}")


@router.post("/admin/proposals/{proposal_id}/members/{username}/remove")
def remove_member(request: Request, principal: PageAdmin, data: Data, proposal_id: str, username: str) -> Response:
    try:
        data.remove_member(principal, proposal_id, username)
    except BeamhubError as exc:
        return proposals_page(request, principal, data, exc.status_code, **refusal(request, exc))
    return see_other(f"/admin/proposals?done=member-removed#proposal-{proposal_id}")
