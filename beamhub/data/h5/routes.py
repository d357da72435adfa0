"""/api/v1/proposals/{id}/h5: h5grove 4's API over a proposal's HDF5 files, for h5web's H5GroveProvider.

The endpoints and their dependencies are async so that a request makes one hop to the thread pool, where the
caller's file is found, ACL-checked, opened, read and encoded; a bin selection larger than a block is streamed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from h5grove.encoders import orjson_encode
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from beamhub.data.browsing.download import CACHE_CONTROL
from beamhub.data.h5.service import H5Files
from beamhub.data.proposals.params import ProposalId, Reader
from beamhub.deps import get_services
from beamhub.identity.fields import NO_NUL_PATTERN

router = APIRouter(prefix="/api/v1/proposals/{proposal_id}/h5", tags=["data"])


def h5_files(request: Request) -> H5Files:
    """The app's H5Files: taken from the request, not as a dependency (each level of those costs the event loop
    ~20 us a request in FastAPI's solve_dependencies)."""
    return H5Files.of(get_services(request).browse)


File = Annotated[str, Query(max_length=4096, pattern=NO_NUL_PATTERN,
                            description="the file, relative to the proposal's folder (e.g. scan1/f.h5)")]
H5Path = Annotated[str, Query(max_length=4096, pattern=NO_NUL_PATTERN, description="an object inside the file")]
Resolve = Annotated[str, Query(description="which links to resolve: only_valid, all or none")]
Selection = Annotated[str | None, Query(max_length=4096, pattern=r"^[0-9:, -]*$",
                                        description="NumPy-style slicing, e.g. '0, 10:20, ::2'")]
HEADERS = {"cache-control": CACHE_CONTROL, "x-content-type-options": "nosniff"}


async def _json(answer: Callable[..., Any], *args: Any) -> Response:
    """`answer(*args)` in the thread pool, encoded there as JSON."""
    content = await run_in_threadpool(lambda: orjson_encode(answer(*args)))
    return Response(content, media_type="application/json", headers=HEADERS)


@router.get("/meta")
async def meta(request: Request, proposal_id: ProposalId, principal: Reader, file: File, path: H5Path = "/",
               resolve_links: Resolve = "only_valid") -> Response:
    """An object's metadata (a group with its children's), as h5grove's /meta."""
    return await _json(h5_files(request).meta, principal, proposal_id, file, path, resolve_links)


@router.get("/attr")
async def attr(request: Request, proposal_id: ProposalId, principal: Reader, file: File, path: H5Path = "/",
               attr_keys: Annotated[list[str] | None, Query(max_length=1000)] = None) -> Response:
    """An object's attribute values by name, as h5grove's /attr."""
    return await _json(h5_files(request).attr, principal, proposal_id, file, path, attr_keys)


@router.get("/data")
async def data(request: Request, proposal_id: ProposalId, principal: Reader, file: File, path: H5Path = "/",
               selection: Selection = None, dtype: str = "origin", format: str = "json",
               flatten: bool = False) -> Response:
    """A dataset's values (a selection of them) as json, bin, npy, csv or tiff; npy, csv and large bin streamed."""
    body = await run_in_threadpool(h5_files(request).data, principal, proposal_id, file, path, selection, format,
                                   dtype, flatten)
    headers = {**HEADERS, **body.headers}
    if isinstance(body.content, bytes | memoryview):
        return Response(body.content, media_type=body.media_type, headers=headers)
    return StreamingResponse(body.content, media_type=body.media_type, headers=headers)


@router.get("/stats")
async def stats(request: Request, proposal_id: ProposalId, principal: Reader, file: File, path: H5Path = "/",
                selection: Selection = None) -> Response:
    """Minima, maximum, mean and standard deviation of a dataset's selection, as h5grove's /stats."""
    return await _json(h5_files(request).stats, principal, proposal_id, file, path, selection)


@router.get("/paths")
async def paths(request: Request, proposal_id: ProposalId, principal: Reader, file: File, path: H5Path = "/",
                resolve_links: Resolve = "only_valid") -> Response:
    """The paths of every link below a group, as h5grove's /paths."""
    return await _json(h5_files(request).paths, principal, proposal_id, file, path, resolve_links)
