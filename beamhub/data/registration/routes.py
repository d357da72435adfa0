"""/api/v1/proposals/{id}/register: the DAQ registers a proposal's data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from beamhub.data.proposals.params import ProposalId
from beamhub.data.registration.schemas import RegisterOut, RegisterRequest
from beamhub.deps import Registration, scoped
from beamhub.identity.principal import Principal
from beamhub.sse import PROGRESS_RESPONSES, Report, run_reporting

router = APIRouter(prefix="/api/v1/proposals", tags=["data"])


Ingester = Annotated[Principal, Depends(scoped("data:ingest"))]


@router.post("/{proposal_id}/register", response_model=RegisterOut, responses=PROGRESS_RESPONSES)
async def register(proposal_id: ProposalId, body: RegisterRequest, request: Request, principal: Ingester,
                   registration: Registration) -> object:
    """The DAQ registers new data: ACLs from the member list, checksums, catalogue; safe to repeat.
    Progress phases: `acl` (paths whose ACL is set), `files` (files examined) and `refused` (hard-linked files
    with a name outside the proposal: ACL left alone, not catalogued; named in the result's `refused`)."""

    def run(report: Report | None) -> RegisterOut:
        result = registration.register(principal, proposal_id, body.path, body.tier, report)
        return RegisterOut.model_validate(result)

    return await run_reporting(request, run)
