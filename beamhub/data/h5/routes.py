"""/api/v1/proposals/{id}/h5: h5grove 4's API over a proposal's HDF5 files, for h5web's H5GroveProvider."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from h5grove.encoders import orjson_encode
from starlette.responses import Response, StreamingResponse

from beamhub.data.browsing.download import CACHE_CONTROL
from beamhub.data.h5.service import H5Files
from beamhub.data.proposals.params import ProposalId, Reader
from beamhub.deps import Browse
from beamhub.identity.fields import NO_NUL_PATTERN

router = APIRouter(prefix="/api/v1/proposals/{proposal_id}/h5", tags=["data"])


def h5_files(browse: Browse) -> H5Files:
    return H5Files(browse)


Files = Annotated[H5Files, Depends(h5_files)]
File = Annotated[str, Query(max_length=4096, pattern=NO_NUL_PATTERN,
                            description="the file, relative to the proposal's folder (e.g. scan1/f.h5)")]
H5Path = Annotated[str, Query(max_length=4096, pattern=NO_NUL_PATTERN, description="an object inside the file")]
Resolve = Annotated[str, Query(description="which links to resolve: only_valid, all or none")]
Selection = Annotated[str | None, Query(max_length=4096, pattern=r"^[0-9:, -]*$",
                                        description="NumPy-style slicing, e.g. '0, 10:20, ::2'")]
HEADERS = {"cache-control": CACHE_CONTROL, "x-content-type-options": "nosniff"}


def _json(content: Any) -> Response:
    return Response(orjson_encode(content), media_type="application/json", headers=HEADERS)


@router.get("/meta")
def meta(proposal_id: ProposalId, principal: Reader, files: Files, file: File, path: H5Path = "/",
         resolve_links: Resolve = "only_valid") -> Response:
    """An object's metadata (a group with its children's), as h5grove's /meta."""
    return _json(files.meta(principal, proposal_id, file, path, resolve_links))


@router.get("/attr")
def attr(proposal_id: ProposalId, principal: Reader, files: Files, file: File, path: H5Path = "/",
         attr_keys: Annotated[list[str] | None, Query(max_length=1000)] = None) -> Response:
    """An object's attribute values by name, as h5grove's /attr."""
    return _json(files.attr(principal, proposal_id, file, path, attr_keys))


@router.get("/data")
def data(proposal_id: ProposalId, principal: Reader, files: Files, file: File, path: H5Path = "/",
         selection: Selection = None, dtype: str = "origin", format: str = "json",
         flatten: bool = False) -> Response:
    """A dataset's values (a selection of them) as json, bin, npy, csv or tiff; bin, npy and csv streamed."""
    body = files.data(principal, proposal_id, file, path, selection, format, dtype, flatten)
    headers = {**HEADERS, **body.headers}
    if isinstance(body.content, bytes):
        return Response(body.content, media_type=body.media_type, headers=headers)
    return StreamingResponse(body.content, media_type=body.media_type, headers=headers)


@router.get("/stats")
def stats(proposal_id: ProposalId, principal: Reader, files: Files, file: File, path: H5Path = "/",
          selection: Selection = None) -> Response:
    """Minima, maximum, mean and standard deviation of a dataset's selection, as h5grove's /stats."""
    return _json(files.stats(principal, proposal_id, file, path, selection))


@router.get("/paths")
def paths(proposal_id: ProposalId, principal: Reader, files: Files, file: File, path: H5Path = "/",
          resolve_links: Resolve = "only_valid") -> Response:
    """The paths of every link below a group, as h5grove's /paths."""
    return _json(files.paths(principal, proposal_id, file, path, resolve_links))
