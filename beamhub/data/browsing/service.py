"""Reading the catalogue: datasets, files and downloads, each shown only where the file's real ACL lets the caller read.

Existence is not revealed: a proposal the caller may not know, and a file or folder its ACL does
not let them read, both answer NotFound (404). A credential without a UID (the bootstrap
administrator token) sees the catalogue but downloads nothing: no ACL names it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import select

from beamhub.cache import TtlCache
from beamhub.data.access import Caller, FolderWalks, may_access, may_read
from beamhub.data.browsing.download import tree_entries
from beamhub.data.catalogue import under
from beamhub.data.models import DataFile, Dataset, Proposal
from beamhub.data.paths import check_relative, open_readable, resolve_inside
from beamhub.data.proposals.service import DataService
from beamhub.data.who import GroupAccess, ReadAccess, path_readers
from beamhub.errors import Forbidden, Invalid, NotFound
from beamhub.identity.principal import Principal

FOLDER = os.R_OK | os.X_OK
SCAN_ROWS = 1000
"""Catalogue rows one page of files examines at most, however many of them the caller's ACLs hide."""
CHUNK = 100
"""Rows read in one query while a page fills, at least."""
PROPOSAL_SECONDS = 2.0
"""How long a proposal's row (its members) is taken from memory by the hot read paths (recent_proposal): a removed
member stops seeing it within that, and at once for its files (their ACLs are rewritten and checked every time); an
added member is seen at once (a refusal always reads the row again)."""


def hidden_cursor(anchor: str | None, skip: int) -> str:
    """The cursor past `skip` rows after the path `anchor` (None: the start) that the caller may not read: it names
    none of them (a catalogue path never starts with "/")."""
    return f"/{skip}/{anchor or ''}"


def parse_cursor(after: str | None) -> tuple[str | None, int]:
    """(the path to list after, or None, and how many rows after it to skip) of a page's `after`."""
    if after is None or not after.startswith("/"):
        return after, 0
    skip, _, anchor = after[1:].partition("/")
    if not skip.isdigit():
        raise Invalid("not a cursor of this listing: pass the `next` of the previous page")
    return anchor or None, int(skip)


class DataBrowser:
    """Listings and downloads of proposal data for one principal at a time."""

    def __init__(self, data: DataService) -> None:
        self.data = data
        self.db = data.db
        self.recent: TtlCache[str, Proposal] = TtlCache(PROPOSAL_SECONDS, epoch=data.identity.epoch)

    def _caller(self, principal: Principal) -> Caller:
        caller = self.data.caller(principal)
        if caller is None:
            raise Forbidden("this credential has no UID, so no file ACL lets it read; use a user's token")
        return caller

    def datasets(self, principal: Principal, proposal_id: str, after: str | None, limit: int) -> list[Dataset]:
        """A page of the proposal's datasets whose folder the caller may open (all of them for an admin)."""
        proposal = self.data.get(principal, proposal_id)
        query = select(Dataset).where(Dataset.proposal_id == proposal.id).order_by(Dataset.name).limit(limit)
        if after is not None:
            query = query.where(Dataset.name > after)
        with self.db.session() as db:
            page = list(db.scalars(query))
        if principal.is_admin:
            return page
        caller = self._caller(principal)
        return [d for d in page if any(may_access(folder / d.name, caller, FOLDER)
                                       for _, folder in self.data.tier_dirs(proposal))]

    def files(self, principal: Principal, proposal_id: str, prefix: str, after: str | None,
              limit: int) -> tuple[list[DataFile], str | None]:
        """A page of at most `limit` registered files under folder `prefix` that the caller may read, and the
        cursor of the next page (None: the folder ends).

        Rows are read in path order until the page is full, the folder ends or SCAN_ROWS rows were
        examined. The cursor never names a file the caller may not read: it is the page's last file,
        or, when every row examined was hidden, a hidden_cursor that counts them.
        """
        proposal = self.data.get(principal, proposal_id)
        folder = "/".join(check_relative(prefix))
        readable = self._readable(principal, proposal)
        anchor, skip = parse_cursor(after)
        page: list[DataFile] = []
        position, offset, examined, size = anchor, skip, 0, max(limit, CHUNK)
        while examined < SCAN_ROWS:
            rows = self._rows(proposal.id, folder, position, offset, size)
            offset = 0
            for row in rows:
                examined, position = examined + 1, row.relpath
                if readable(row):
                    page.append(row)
                    if len(page) == limit:
                        return page, row.relpath
            if len(rows) < size:
                return page, None
        return page, page[-1].relpath if page else hidden_cursor(anchor, skip + examined)

    def _readable(self, principal: Principal, proposal: Proposal) -> Callable[[DataFile], bool]:
        """Whether the principal may read a record's file: by its real ACL, each folder walked once a page (an
        administrator: every one)."""
        if principal.is_admin:
            return lambda record: True
        walks = FolderWalks(self._caller(principal))
        tiers: dict[str, str] = {}

        def readable(record: DataFile) -> bool:
            if record.tier not in tiers:  # the folder once, then one string a record (a Path a record cost more)
                tiers[record.tier] = os.fspath(self.data.proposal_dir(proposal, record.tier))
            return walks.may_read(f"{tiers[record.tier]}/{record.relpath}")
        return readable

    def _rows(self, proposal_id: str, folder: str, after: str | None, skip: int, count: int) -> list[DataFile]:
        """`count` records under folder, in path order, after the path `after` and `skip` rows more."""
        query = (select(DataFile).where(DataFile.proposal_id == proposal_id, under(DataFile.relpath, folder))
                 .order_by(DataFile.relpath).offset(skip).limit(count))
        if after is not None:
            query = query.where(DataFile.relpath > after)
        with self.db.session() as db:
            return list(db.scalars(query))

    def _real(self, proposal: Proposal, record: DataFile) -> Path:
        """Where a catalogue record's file is (built from the catalogue, never from a request)."""
        return self.data.proposal_dir(proposal, record.tier).joinpath(*record.relpath.split("/"))

    def recent_proposal(self, principal: Principal, proposal_id: str) -> Proposal:
        """DataService.get from a row at most PROPOSAL_SECONDS old, for reads asked many times a second; a refusal is
        always asked of the database (a member just added is let in at once)."""
        proposal = self.recent.get(proposal_id)
        if proposal is None or not self.data.visible(principal, proposal):
            proposal = self.data.load(proposal_id)
            self.recent.put(proposal_id, proposal)
        if not self.data.visible(principal, proposal):
            raise NotFound("no proposal %(proposal)s", proposal=proposal_id)
        return proposal

    def readable_file(self, principal: Principal, proposal_id: str, relative: str) -> Path:
        """The real path of a regular file of the proposal that the caller may read now, per its ACL."""
        return self.readable_in(principal, self.data.get(principal, proposal_id), relative)

    def readable_in(self, principal: Principal, proposal: Proposal, relative: str) -> Path:
        """readable_file in a proposal the caller may know (DataService.get's or recent_proposal's answer)."""
        caller = self._caller(principal)
        for path in self._candidates(proposal, relative):
            if stat.S_ISREG(os.stat(path).st_mode) and may_read(path, caller):
                return path
        raise NotFound("no such file: %(file)s", file=relative)

    def open_readable_in(self, principal: Principal, proposal: Proposal, relative: str) -> int:
        """readable_in's file, found, checked and opened read-only in one descriptor walk (paths.open_readable)."""
        caller = self._caller(principal)
        for root in self._roots(proposal, relative):
            try:
                return open_readable(root, relative, caller)
            except NotFound:
                continue
        raise NotFound("no such file: %(file)s", file=relative)

    def _candidates(self, proposal: Proposal, relative: str) -> Iterator[Path]:
        """The real paths `relative` names in the proposal's folder on each tier, in _roots' order."""
        for root in self._roots(proposal, relative):
            try:
                yield resolve_inside(root, relative)
            except NotFound:
                continue

    def _roots(self, proposal: Proposal, relative: str) -> list[Path]:
        """The proposal's folder on each tier that holds one, the tier catalogued for `relative` first (the catalogue
        is asked only when more than one tier holds a folder of the proposal); Invalid if `relative` could escape."""
        check_relative(relative)
        tiers = [tier for tier, _ in self.data.tier_dirs(proposal)]
        if len(tiers) > 1:
            with self.db.session() as db:
                catalogued = db.scalar(select(DataFile.tier).where(DataFile.proposal_id == proposal.id,
                                                                   DataFile.relpath == relative.strip("/")))
            tiers.sort(key=lambda t: t != catalogued)
        return [self.data.proposal_dir(proposal, tier) for tier in tiers]

    def readers(self, principal: Principal, proposal_id: str,
                relative: str) -> tuple[Path, list[ReadAccess], list[GroupAccess]]:
        """Who can read a file or folder of the proposal, from its real ACL: for administrators."""
        principal.require_admin()
        proposal = self.data.get(principal, proposal_id)
        path = next(self._candidates(proposal, relative), None)
        if path is None and not relative:
            raise NotFound("no folder in proposal %(proposal)s", proposal=proposal_id)
        if path is None:
            raise NotFound("no %(path)s in proposal %(proposal)s", path=relative, proposal=proposal_id)
        return path, *path_readers(path, self.data.identity, self.data.settings)

    def folder_entries(self, principal: Principal, proposal_id: str, dataset: str,
                       folder: str = "") -> tuple[Iterator[tuple[str, Path]], str]:
        """(name in the zip, path) of each file of a dataset's folder the caller may read, and the zip's name."""
        parts = check_relative(dataset)
        if len(parts) != 1:
            raise NotFound("no dataset %(dataset)s", dataset=dataset)
        proposal = self.data.get(principal, proposal_id)
        caller = self._caller(principal)
        relative = "/".join([*parts, *check_relative(folder)])
        for path in self._candidates(proposal, relative):
            if stat.S_ISDIR(os.stat(path).st_mode) and may_access(path, caller, FOLDER):
                entries = ((name, file) for name, file in tree_entries(path, relative) if may_read(file, caller))
                return entries, f"{proposal.id}-{relative.replace('/', '-')}.zip"
        raise NotFound("no folder %(relative)s in proposal %(proposal)s", relative=relative, proposal=proposal_id)
