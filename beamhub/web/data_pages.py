"""The console's data pages: my proposals, a proposal's datasets, a folder's files with download links, and the
HDF5 viewer (h5web reading a file through /api/v1/proposals/{id}/h5, with the same cookie and the same checks).

Every listing is the data services' (the same calls and checks as /api/v1/proposals); downloads are plain links to
that API, which the login cookie opens and which browsers and curl resume with HTTP Range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from beamhub.data.browsing.presenters import file_out
from beamhub.data.browsing.schemas import DatasetOut, FileOut
from beamhub.data.models import DataFile, Proposal
from beamhub.data.paths import check_relative
from beamhub.data.proposals.presenters import proposal_out
from beamhub.data.proposals.schemas import PROPOSAL_PATTERN
from beamhub.data.proposals.service import DataService
from beamhub.data.tiers.prefetch import check_may_prefetch, fast_tiers, prefetch_in_background
from beamhub.deps import Browse, Data
from beamhub.errors import Forbidden, NotFound
from beamhub.identity.principal import Principal
from beamhub.web.errors import PageRoute
from beamhub.web.page_deps import PAGE_SIZE, PagePrincipal, see_other
from beamhub.web.pages import CONTENT_SECURITY_POLICY, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
HDF5_SUFFIXES = (".h5", ".hdf5", ".nxs", ".nx5", ".hdf")
"""Files the files page offers to open in the viewer."""
# h5web's ndarray and ndarray-ops compile their accessors with new Function (silx-kit/h5web#2047): the viewer page
# alone allows eval. Inline script stays refused, and the page puts nothing of the file's content into script.
VIEWER_CSP = CONTENT_SECURITY_POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'")


def data_reader(principal: PagePrincipal) -> Principal:
    """The logged-in user, if their credential may read data (as the API's data:read scope requires)."""
    principal.require_scope("data:read")
    return principal


Reader = Annotated[Principal, Depends(data_reader)]


def checked_id(proposal_id: str) -> str:
    """A proposal id from the address; any other text is a proposal that does not exist."""
    if not re.match(PROPOSAL_PATTERN, proposal_id):
        raise NotFound("no proposal %(proposal)s", proposal=proposal_id)
    return proposal_id


def crumbs(parts: list[str]) -> list[tuple[str, str]]:
    """(name, folder) of each folder from the proposal down to `parts`, for the breadcrumb links."""
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


def zip_link(proposal_id: str, parts: list[str]) -> str | None:
    """The API address of a folder inside a dataset as a zip; None for the proposal's top (no dataset)."""
    if not parts:
        return None
    query = f"?folder={quote('/'.join(parts[1:]))}" if len(parts) > 1 else ""
    return f"/api/v1/proposals/{proposal_id}/datasets/{quote(parts[0], safe='')}/zip{query}"


def split_listing(rows: Iterable[DataFile], folder: str) -> tuple[list[str], list[FileOut]]:
    """The sub-folders (from the deeper paths) and the files directly in `folder`, of one page of the catalogue."""
    start = len(folder) + 1 if folder else 0
    folders: dict[str, None] = {}
    files = []
    for row in rows:
        name, deeper, _ = row.relpath[start:].partition("/")
        if deeper:
            folders[name] = None
        else:
            files.append(file_out(row))
    return list(folders), files


@router.get("/data")
def my_data(request: Request, principal: Reader, data: Data, after: str | None = None) -> Response:
    """The proposals I may see, a page at a time."""
    page = data.list(principal, after or None, PAGE_SIZE)
    return render(request, "data/proposals.html", principal=principal,
                  proposals=[proposal_out(data, p) for p in page], after=after,
                  next_after=page[-1].id if len(page) == PAGE_SIZE else None)


@router.get("/data/{proposal_id}")
def proposal_page(request: Request, proposal_id: str, principal: Reader, data: Data, browse: Browse,
                  after: str | None = None, prefetch: str | None = None) -> Response:
    """One proposal: its facts, members and the datasets I may open, each with a zip download."""
    proposal = data.get(principal, checked_id(proposal_id))
    page = browse.datasets(principal, proposal.id, after or None, PAGE_SIZE)
    return render(request, "data/proposal.html", principal=principal, proposal=proposal_out(data, proposal),
                  datasets=[DatasetOut.model_validate(d) for d in page], after=after,
                  next_after=page[-1].name if len(page) == PAGE_SIZE else None,
                  fast_tier=may_prefetch_to(data, principal, proposal), prefetching=prefetch == "started")


def may_prefetch_to(data: DataService, principal: Principal, proposal: Proposal) -> str | None:
    """The fast tier, if the proposal is elsewhere and the caller may prefetch it (the page then offers it)."""
    if len(data.settings.storage_tiers) < 2 or proposal.tier == fast_tiers(data)[0]:
        return None
    try:
        check_may_prefetch(data, principal, proposal)
    except Forbidden:
        return None
    return fast_tiers(data)[0]


@router.post("/data/{proposal_id}/prefetch")
def prefetch(proposal_id: str, principal: Reader, data: Data) -> Response:
    """Start copying the proposal's data to the fast tier (in the background); the page says it is on its way."""
    proposal = data.get(principal, checked_id(proposal_id))
    check_may_prefetch(data, principal, proposal)
    prefetch_in_background(data, principal, proposal.id)
    return see_other(f"/data/{proposal.id}?prefetch=started")


@router.get("/data/{proposal_id}/files")
def files_page(request: Request, proposal_id: str, principal: Reader, data: Data, browse: Browse,
               prefix: str = "", after: str | None = None) -> Response:
    """A folder of a proposal: its sub-folders and the files I may read, with size, date and a download link."""
    proposal = data.get(principal, checked_id(proposal_id))
    parts = check_relative(prefix)
    folder = "/".join(parts)
    rows, cursor = browse.files(principal, proposal.id, folder, after or None, PAGE_SIZE)
    folders, files = split_listing(rows, folder)
    return render(request, "data/files.html", principal=principal, proposal=proposal_out(data, proposal),
                  folder=folder, crumbs=crumbs(parts), folders=folders, files=files, after=after,
                  next_after=cursor, name_start=len(folder) + 1 if folder else 0,
                  zip_href=zip_link(proposal.id, parts), viewable=HDF5_SUFFIXES)


@router.get("/data/{proposal_id}/view")
def viewer_page(request: Request, proposal_id: str, principal: Reader, data: Data, browse: Browse,
                file: str = "", path: str = "/") -> Response:
    """A file of the proposal in the HDF5 viewer (opened at the object `path`), if the caller may read it."""
    proposal = data.get(principal, checked_id(proposal_id))
    browse.readable_file(principal, proposal.id, file)
    relpath = "/".join(check_relative(file))
    folder = relpath.rpartition("/")[0]
    page = render(request, "data/viewer.html", principal=principal, proposal=proposal_out(data, proposal),
                  file=relpath, path=path, crumbs=crumbs(folder.split("/") if folder else []),
                  built=(data.settings.viewer_dir / "viewer.js").is_file())
    page.headers["Content-Security-Policy"] = VIEWER_CSP
    return page
