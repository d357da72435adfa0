"""/api/v1/proposals: proposals, members, datasets, files, downloads, the DAQ's registration, tier migration and
prefetch."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status
from starlette.responses import Response, StreamingResponse

from beamhub.data.download import file_response, zip_response
from beamhub.data.migrate import migrate_proposal
from beamhub.data.presenters import file_out, proposal_out
from beamhub.data.schemas import (
    PROPOSAL_PATTERN,
    AclGroupOut,
    DatasetOut,
    FileOut,
    MemberUpdate,
    MigrationOut,
    MigrationRequest,
    Page,
    PrefetchOut,
    ProposalCreate,
    ProposalOut,
    ReaderOut,
    ReadersOut,
    RegisterOut,
    RegisterRequest,
)
from beamhub.data.tiers.prefetch import prefetch_proposal
from beamhub.deps import AdminPrincipal, Browse, Data, scoped
from beamhub.identity.fields import NO_NUL_PATTERN
from beamhub.identity.principal import Principal
from beamhub.sse import PROGRESS_RESPONSES, Report, run_reporting

router = APIRouter(prefix="/api/v1/proposals", tags=["data"])

Reader = Annotated[Principal, Depends(scoped("data:read"))]
Ingester = Annotated[Principal, Depends(scoped("data:ingest"))]
ProposalId = Annotated[str, Path(pattern=PROPOSAL_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000)]


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


@router.get("/{proposal_id}/datasets", response_model=Page[DatasetOut])
def list_datasets(proposal_id: ProposalId, principal: Reader, browse: Browse, after: str | None = None,
                  limit: Limit = 100) -> Page[DatasetOut]:
    page = browse.datasets(principal, proposal_id, after, limit)
    return Page(items=[DatasetOut.model_validate(d) for d in page], next=page[-1].name if len(page) == limit else None)


@router.get("/{proposal_id}/datasets/{dataset}/zip", response_class=StreamingResponse,
            responses={200: {"content": {"application/zip": {}}}})
def dataset_zip(proposal_id: ProposalId, dataset: str, principal: Reader, browse: Browse,
                folder: str = Query("", max_length=4096, pattern=NO_NUL_PATTERN,
                                    description="a folder inside the dataset; empty: all of it")) -> Response:
    """A dataset (or one of its folders) as a zip streamed while it is made, of the files the caller may read."""
    entries, filename = browse.folder_entries(principal, proposal_id, dataset, folder)
    return zip_response(entries, filename)


@router.get("/{proposal_id}/files", response_model=Page[FileOut])
def list_files(proposal_id: ProposalId, principal: Reader, browse: Browse,
               prefix: str = Query("", max_length=4096, pattern=NO_NUL_PATTERN,
                                   description="a folder: list what lies below it"),
               after: str | None = Query(None, max_length=4200, pattern=NO_NUL_PATTERN,
                                         description="the `next` of the previous page"),
               limit: Limit = 100) -> Page[FileOut]:
    rows, cursor = browse.files(principal, proposal_id, prefix, after, limit)
    return Page(items=[file_out(r) for r in rows], next=cursor)


DOWNLOAD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"application/octet-stream": {}}}, 206: {"description": "a range"},
    304: {"description": "not modified"}, 416: {"description": "range not satisfiable"}}


@router.head("/{proposal_id}/files/{path:path}", response_class=Response, responses=DOWNLOAD_RESPONSES)
@router.get("/{proposal_id}/files/{path:path}", response_class=Response, responses=DOWNLOAD_RESPONSES)
def download_file(proposal_id: ProposalId, path: str, request: Request, principal: Reader, browse: Browse,
                  data: Data) -> Response:
    """One file, if its ACL lets the caller read it now (HTTP Range, ETag; X-Accel-Redirect behind nginx)."""
    real = browse.readable_file(principal, proposal_id, path)
    return file_response(request, real, accel_root=data.settings.storage_root,
                         accel_prefix=data.settings.download_accel_prefix)


@router.get("/{proposal_id}/readers", response_model=ReadersOut)
def readers(proposal_id: ProposalId, principal: Reader, browse: Browse,
            path: str = Query("", max_length=4096, pattern=NO_NUL_PATTERN,
                              description="a file or folder of the proposal; empty: the proposal's folder")
            ) -> ReadersOut:
    """Who can read this path, through which ACL entry and by which ways in: for administrators."""
    real, users, groups = browse.readers(principal, proposal_id, path)
    return ReadersOut(path=str(real), users=[ReaderOut.model_validate(u) for u in users],
                      groups=[AclGroupOut.model_validate(g) for g in groups])


@router.post("/{proposal_id}/register", response_model=RegisterOut, responses=PROGRESS_RESPONSES)
async def register(proposal_id: ProposalId, body: RegisterRequest, request: Request, principal: Ingester,
                   data: Data) -> object:
    """The DAQ registers new data: ACLs from the member list, checksums, catalogue; safe to repeat.
    Progress phases: `acl` (paths whose ACL is set), `files` (files examined) and `refused` (hard-linked files
    with a name outside the proposal: ACL left alone, not catalogued; named in the result's `refused`)."""

    def run(report: Report | None) -> RegisterOut:
        return RegisterOut.model_validate(data.register(principal, proposal_id, body.path, body.tier, report))

    return await run_reporting(request, run)


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
