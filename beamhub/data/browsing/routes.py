"""/api/v1/proposals/{id}/datasets, files, readers: browsing and downloading a proposal's data, each file as its
ACL lets the caller read it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from beamhub.data.browsing.download import file_response, zip_response
from beamhub.data.browsing.presenters import file_out
from beamhub.data.browsing.schemas import AclGroupOut, DatasetOut, FileOut, ReaderOut, ReadersOut
from beamhub.data.proposals.params import Limit, ProposalId, Reader
from beamhub.data.proposals.schemas import Page
from beamhub.deps import Browse, Data
from beamhub.identity.fields import NO_NUL_PATTERN

router = APIRouter(prefix="/api/v1/proposals", tags=["data"])


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
