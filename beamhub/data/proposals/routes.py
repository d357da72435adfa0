"""/api/v1/proposals: proposals and their members."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fastapi import APIRouter, Query, Request, status

from beamhub.data.proposals.params import Limit, ProposalId, Reader
from beamhub.data.proposals.presenters import proposal_out
from beamhub.data.proposals.schemas import (
    PROPOSAL_PATTERN,
    MemberUpdate,
    Page,
    ProposalCreate,
    ProposalOut,
)
from beamhub.deps import Data
from beamhub.sse import PROGRESS_RESPONSES, Report, run_reporting

router = APIRouter(prefix="/api/v1/proposals", tags=["data"])


@router.get("", response_model=Page[ProposalOut])
def list_proposals(principal: Reader, data: Data, after: str | None = Query(None, pattern=PROPOSAL_PATTERN),
                   limit: Limit = 100) -> Page[ProposalOut]:
    page = data.list(principal, after, limit)
    return Page(items=[proposal_out(data, p) for p in page], next=page[-1].id if len(page) == limit else None)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProposalOut)
def create_proposal(body: ProposalCreate, principal: Reader, data: Data) -> ProposalOut:
    return proposal_out(data, data.create(principal, body))


@router.get("/{proposal_id}", response_model=ProposalOut)
def get_proposal(proposal_id: ProposalId, principal: Reader, data: Data) -> ProposalOut:
    return proposal_out(data, data.get(principal, proposal_id))


@router.put("/{proposal_id}/members/{username}", response_model=ProposalOut, responses=PROGRESS_RESPONSES)
async def set_member(proposal_id: ProposalId, username: str, request: Request, principal: Reader, data: Data,
                     body: MemberUpdate | None = None) -> object:
    """Add a member or change their role; every file's ACL is rewritten before the answer (phase `acl`)."""
    role = (body or MemberUpdate()).role

    def change(report: Report | None) -> ProposalOut:
        return proposal_out(data, data.set_member(principal, proposal_id, username, role, _acl_progress(report)))

    return await run_reporting(request, change)


@router.delete("/{proposal_id}/members/{username}", response_model=ProposalOut, responses=PROGRESS_RESPONSES)
async def remove_member(proposal_id: ProposalId, username: str, request: Request, principal: Reader,
                        data: Data) -> object:
    """Remove a member; the kernel refuses them the data once this answers (phase `acl`)."""

    def change(report: Report | None) -> ProposalOut:
        return proposal_out(data, data.remove_member(principal, proposal_id, username, _acl_progress(report)))

    return await run_reporting(request, change)


def _acl_progress(report: Report | None) -> Callable[[int], None] | None:
    return None if report is None else partial(report, "acl")
