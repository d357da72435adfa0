"""/api/v1/proposals/{id}/migrate, prefetch: moving a proposal's data between storage tiers."""

from __future__ import annotations

from fastapi import APIRouter, Request

from beamhub.data.proposals.params import ProposalId, Reader
from beamhub.data.tiers.migrate import migrate_proposal
from beamhub.data.tiers.prefetch import prefetch_proposal
from beamhub.data.tiers.schemas import MigrationOut, MigrationRequest, PrefetchOut
from beamhub.deps import AdminPrincipal, Data
from beamhub.sse import PROGRESS_RESPONSES, Report, run_reporting

router = APIRouter(prefix="/api/v1/proposals", tags=["data"])


@router.post("/{proposal_id}/migrate", response_model=MigrationOut, responses=PROGRESS_RESPONSES)
async def migrate(proposal_id: ProposalId, body: MigrationRequest, request: Request, principal: AdminPrincipal,
                  data: Data) -> object:
    """Move the proposal's data to another tier (administrators): copy with ACLs, xattrs and mtimes, verify,
    switch the catalogue, remove the source; run it again to finish an interrupted one.
    Progress phases: `copy` (files copied or found verified) and `remove` (files removed from the old tier)."""

    def run(report: Report | None) -> MigrationOut:
        progress = None if report is None else lambda phase, _bytes, files: report(phase, files)
        return MigrationOut.model_validate(migrate_proposal(data, principal, proposal_id, body.to, progress))

    return await run_reporting(request, run)


@router.post("/{proposal_id}/prefetch", response_model=PrefetchOut, responses=PROGRESS_RESPONSES)
async def prefetch(proposal_id: ProposalId, request: Request, principal: Reader, data: Data) -> object:
    """Copy the proposal's data to the fast tier ahead of use (its members, its beamline's staff, administrators),
    as a migration does; the least recently used proposals there move back first to keep it within its budget.
    409 when the data is larger than that budget, or the room is held by data in use. Progress phases: `queued`
    (another prefetch runs), `evict` (files moved back), `copy` and `remove`."""

    def run(report: Report | None) -> PrefetchOut:
        progress = None if report is None else lambda phase, _bytes, files: report(phase, files)
        return PrefetchOut.model_validate(prefetch_proposal(data, principal, proposal_id, progress))

    return await run_reporting(request, run)
