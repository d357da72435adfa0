"""Tier migration: move a proposal's folder to another tier with its owners, modes, ACLs, xattrs and mtimes.

Three phases, each safe to repeat, so a migration killed at any point is finished by running it again:

1. copy: each file is written under a temporary name in its destination folder, fsynced, read back from
   the disk and checked against the catalogue's SHA-256 (the source's for a file the catalogue lacks),
   given its owner, mode, ACL, xattrs and times, and only then renamed into place: a name at the
   destination is always a whole, verified copy, kept by a re-run. Folders get their mtime last.
2. switch: one transaction moves the proposal and its files' records to the new tier; readers see the old
   tier or the new one, never a mix. Every refusal comes before it and leaves the source untouched. The
   proposal's stable path (data/current.py) then leads to the new tier, so readers going through it keep going.
3. remove: the source is deleted entry by entry, only where the destination holds the same entry. A file
   written to the source meanwhile is copied first; one that differs from its copy is kept and reported.

Destination entries the source lacks are left alone. Hard links become separate files; sparse files are filled.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, select, update

from beamhub.data.current import point_current
from beamhub.data.fsmeta import CHUNK, O_READ, FileMeta, copy_meta, opened
from beamhub.data.models import DataFile, Proposal
from beamhub.data.registration.scan import sha256_of, sha256_of_fd
from beamhub.data.tiers.entries import (
    Unverified,
    copy_symlink,
    entries,
    is_real_dir,
    partial_name,
    remove_partials,
    same_entry,
    unlink_quietly,
)
from beamhub.errors import N_, Conflict, Forbidden, Invalid, NotFound
from beamhub.identity.principal import Principal

if TYPE_CHECKING:
    from beamhub.data.proposals.service import DataService

LOCK_DIR = ".beamhub-locks"
"""Under storage_root, so migrations started on any host that mounts the storage exclude each other."""
_O_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Progress = Callable[[str, int, int], None]
"""progress(phase, bytes done, files done): phase "copy" counts bytes copied, "remove" bytes removed."""


@dataclass
class MigrationReport:
    proposal_id: str
    from_tier: str
    to_tier: str
    files_copied: int = 0
    files_skipped: int = 0
    bytes_copied: int = 0
    files_verified: int = 0
    files_removed: int = 0
    bytes_removed: int = 0
    switched: bool = False
    kept: list[str] = field(default_factory=list)
    """Source entries left in place: they differ from their copy, or could not be verified."""
    seconds: float = 0.0


class MigrationRefused(Conflict):
    """Files that do not verify: nothing was switched and the source is untouched."""

    def __init__(self, report: MigrationReport, failures: dict[str, str]) -> None:
        self.report = report
        self.failures = failures
        listed = "; ".join(f"{path}: {why}" for path, why in sorted(failures.items())[:20])
        super().__init__(N_("%(proposal)s stays on tier %(tier)s: %(count)s files do not verify: %(failures)s"),
                         proposal=report.proposal_id, tier=report.from_tier, count=len(failures),
                         failures=listed + ("; ..." if len(failures) > 20 else ""))


def migrate_proposal(service: DataService, principal: Principal, proposal_id: str, to_tier: str,
                     progress: Progress | None = None) -> MigrationReport:
    """Move a proposal's data to another tier (administrators only); run it again to finish a killed one."""
    if not principal.is_admin:
        raise Forbidden("only administrators migrate data between tiers")
    return move_proposal(service, principal, proposal_id, to_tier, progress)


def move_proposal(service: DataService, principal: Principal, proposal_id: str, to_tier: str,
                  progress: Progress | None = None) -> MigrationReport:
    """Move a proposal's data to another tier for a caller who may (the caller decides: prefetch lets members)."""
    started = time.monotonic()
    if to_tier not in service.settings.storage_tiers:
        raise Invalid("unknown tier %(tier)r; configured: %(storage_tiers)s",
                      tier=to_tier, storage_tiers=', '.join(service.settings.storage_tiers))
    with _exclusive(service.settings.storage_root, proposal_id):
        proposal = service.get(principal, proposal_id)
        switched = proposal.tier == to_tier
        # After the switch, what is left of the proposal on another tier is still to be removed.
        sources = ([(tier, folder) for tier, folder in service.tier_dirs(proposal) if tier != to_tier] if switched
                   else [(proposal.tier, service.proposal_dir(proposal))])
        if not sources:
            raise Invalid("proposal %(proposal)s is already on tier %(tier)s", proposal=proposal_id, tier=to_tier)
        mover = _Mover(service, MigrationReport(proposal_id, sources[0][0], to_tier, switched=switched), progress)
        if not switched:
            mover.copy_and_switch(principal, proposal)
        # Readers follow the stable path to the new tier before anything of the old one is removed.
        point_current(service.settings.storage_root, proposal.beamline, proposal_id, to_tier)
        for tier, folder in sources:
            mover.remove(tier, folder, service.proposal_dir(proposal, to_tier))
    mover.report.kept = sorted(mover.failures)
    mover.report.seconds = time.monotonic() - started
    return mover.report


@contextmanager
def _exclusive(storage_root: Path, proposal_id: str) -> Iterator[None]:
    """Hold the proposal's migration lock (released by the kernel if the process dies); Conflict if taken."""
    folder = storage_root / LOCK_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with opened(folder / f"{proposal_id}.migrate", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC) as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict("another migration of %(proposal)s is running", proposal=proposal_id) from None
        yield


class _Mover:
    """One migration's copy, switch and removal walks, with their running totals."""

    def __init__(self, service: DataService, report: MigrationReport, progress: Progress | None) -> None:
        self.service = service
        self.report = report
        self.progress = progress
        self.failures: dict[str, str] = {}
        self.proposal_id = report.proposal_id
        self.phase = "copy"

    def copy_and_switch(self, principal: Principal, proposal: Proposal) -> None:
        """Copy and verify everything, then switch the catalogue; MigrationRefused if anything fails."""
        source = self.service.proposal_dir(proposal)
        if not source.is_dir() or source.is_symlink():
            raise NotFound("proposal %(proposal)s has no folder on tier %(tier)s",
                           proposal=self.proposal_id, tier=proposal.tier)
        destination = self.service.proposal_dir(proposal, self.report.to_tier)
        destination.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        acl_before = self._acl_versions()
        self._tick()
        self.copy_dir(source, destination, "")
        with opened(destination.parent, O_READ) as parent:
            os.fsync(parent)  # the copy's own name, like every name below it, is durable before the switch
        self._check_catalogued(destination)
        if self.failures:
            raise MigrationRefused(self.report, self.failures)
        if self._acl_versions() != acl_before or acl_before[0] != acl_before[1]:
            # Members changed while we copied: an ACL read from the source may predate the change.
            self.service.apply_acls(self.proposal_id)
        self._switch(principal)

    def _switch(self, principal: Principal) -> None:
        """Move the proposal and its files to the new tier in one transaction."""
        old, new = self.report.from_tier, self.report.to_tier
        with self.service.db.session() as db:
            moved = db.execute(update(Proposal).where(Proposal.id == self.proposal_id, Proposal.tier == old)
                               .values(tier=new))
            if moved.rowcount != 1:
                raise Conflict("proposal %(proposal)s left tier %(old)s during the migration",
                               proposal=self.proposal_id, old=old)
            db.execute(update(DataFile).where(DataFile.proposal_id == self.proposal_id, DataFile.tier == old)
                       .values(tier=new))
            self.service.audit.add_as(db, principal, "data.migrate", self.proposal_id, from_tier=old, to_tier=new,
                                      copied=self.report.files_copied, bytes=self.report.bytes_copied)
        self.report.switched = True

    def remove(self, tier: str, source: Path, destination: Path) -> None:
        """Delete what the destination holds from the source tree; re-tier the catalogue once it is gone."""
        self.phase = "remove"
        self._tick()
        if self.remove_dir(source, destination, ""):
            with self.service.db.session() as db:
                db.execute(update(DataFile).where(DataFile.proposal_id == self.proposal_id, DataFile.tier == tier)
                           .values(tier=self.report.to_tier))

    def copy_dir(self, source: Path, destination: Path, relative: str) -> None:
        """Copy one folder and everything below it; the folder's metadata is set again, mtime last, after them."""
        if os.path.lexists(destination) and not is_real_dir(destination):
            self.failures[relative or "."] = "the destination holds something else of that name"
            return
        destination.mkdir(mode=0o700, exist_ok=True)
        copy_meta(source, destination, directory=True)
        remove_partials(destination)
        records = self._records(relative)
        for entry in entries(source):
            self.copy_entry(entry, destination / entry.name, f"{relative}/{entry.name}" if relative else entry.name,
                            records)
        copy_meta(source, destination, directory=True, sync=True)

    def copy_entry(self, entry: os.DirEntry[str], destination: Path, relpath: str,
                   records: dict[str, Row[Any]]) -> None:
        try:
            if entry.is_dir(follow_symlinks=False):
                self.copy_dir(Path(entry.path), destination, relpath)
            elif entry.is_symlink():
                self._count_file(copied=copy_symlink(Path(entry.path), destination), verified=False)
            elif entry.is_file(follow_symlinks=False):
                self._copy_file(Path(entry.path), destination, records.get(relpath))
            else:
                raise Unverified("not a regular file, folder or symbolic link")
        except Unverified as exc:
            self.failures[relpath] = str(exc)

    def _copy_file(self, source: Path, destination: Path, record: Row[Any] | None) -> None:
        """Copy one regular file, or keep the verified copy a previous run left."""
        info = os.lstat(source)
        expected = _expected_sha256(record, info)
        if self._already_there(source, destination, info, expected):
            self._count_file(copied=False)
            return
        partial = destination.parent / partial_name(destination.name)
        if is_real_dir(destination):
            raise Unverified("the destination holds a folder of that name")
        unlink_quietly(partial)
        with opened(source, O_READ) as src, opened(partial, _O_CREATE) as out:
            try:
                self._write_verified(src, out, expected)
                FileMeta.read(src).apply(out, directory=False)
            except Unverified:
                os.unlink(partial)
                raise
        os.rename(partial, destination)
        self._count_file(copied=True)

    def _write_verified(self, src: int, out: int, expected: str | None) -> None:
        """Copy the bytes, fsync, read them back from the disk and compare the checksums."""
        before = os.fstat(src)
        digest, done = hashlib.sha256(), 0
        while chunk := os.read(src, CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
            done += len(chunk)
            self.report.bytes_copied += len(chunk)
            self._tick()
        after = os.fstat(src)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or done != after.st_size:
            raise Unverified("it changed while it was copied")
        if expected is not None and digest.hexdigest() != expected:
            raise Unverified("its content does not match the SHA-256 in the catalogue")
        os.fsync(out)
        os.posix_fadvise(out, 0, 0, os.POSIX_FADV_DONTNEED)
        if sha256_of_fd(out, os.fstat(out))[0] != digest.hexdigest():
            raise Unverified("the copy reads back different bytes")

    def _already_there(self, source: Path, destination: Path, info: os.stat_result, expected: str | None) -> bool:
        """Whether the destination holds this file whole (same size, mtime and checksum); refresh its metadata."""
        try:
            have = os.lstat(destination)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(have.st_mode) or (have.st_size, have.st_mtime_ns) != (info.st_size, info.st_mtime_ns):
            return False
        want = expected or sha256_of(source)[0]
        if want is None or sha256_of(destination)[0] != want:
            return False
        copy_meta(source, destination, directory=False)
        return True

    def _check_catalogued(self, destination: Path) -> None:
        """Every file the catalogue places on the source tier must now be at the destination."""
        with self.service.db.session() as db:
            query = select(DataFile.relpath).where(DataFile.proposal_id == self.proposal_id,
                                                   DataFile.tier == self.report.from_tier)
            for relpath in db.scalars(query.execution_options(yield_per=1000)):
                if not os.path.lexists(destination / relpath):
                    self.failures.setdefault(relpath, f"catalogued on tier {self.report.from_tier} but not there")

    def remove_dir(self, source: Path, destination: Path, relative: str) -> bool:
        """Remove what the destination holds from one source folder; True if the folder itself is gone."""
        if not is_real_dir(destination):
            self.copy_dir(source, destination, relative)
        records = self._records(relative)
        empty = True
        for entry in entries(source):
            relpath = f"{relative}/{entry.name}" if relative else entry.name
            target = destination / entry.name
            if entry.is_dir(follow_symlinks=False):
                empty = self.remove_dir(Path(entry.path), target, relpath) and empty
                continue
            if not os.path.lexists(target):
                self.copy_entry(entry, target, relpath, records)
            if relpath in self.failures or not same_entry(Path(entry.path), target):
                self.failures.setdefault(relpath, "differs from the copy on the destination")
                empty = False
                continue
            size = entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)
            self.report.files_removed += 1
            self.report.bytes_removed += size
            self._tick()
        try:
            if empty:
                os.rmdir(source)
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
            self.failures.setdefault(relative or ".", "written to while it was removed: run the migration again")
            empty = False
        return empty

    def _records(self, parent: str) -> dict[str, Row[Any]]:
        """The catalogue's records of the files directly in one folder."""
        with self.service.db.session() as db:
            return {row.relpath: row for row in db.execute(
                select(DataFile.relpath, DataFile.size, DataFile.mtime_ns, DataFile.sha256)
                .where(DataFile.proposal_id == self.proposal_id, DataFile.parent == parent))}

    def _acl_versions(self) -> tuple[int, int]:
        with self.service.db.session() as db:
            row = db.execute(select(Proposal.acl_version, Proposal.acl_applied_version)
                             .where(Proposal.id == self.proposal_id)).one()
        return row[0], row[1]

    def _count_file(self, copied: bool, verified: bool = True) -> None:
        self.report.files_copied += copied
        self.report.files_skipped += not copied
        self.report.files_verified += verified
        self._tick()

    def _tick(self) -> None:
        done = self.report
        if self.progress is not None:
            self.progress(self.phase, *((done.bytes_copied, done.files_copied + done.files_skipped)
                                        if self.phase == "copy" else (done.bytes_removed, done.files_removed)))


def _expected_sha256(record: Row[Any] | None, info: os.stat_result) -> str | None:
    """The catalogue's checksum of the file; None when it has none (the copy is checked against the source)."""
    if record is None or record.sha256 is None:
        return None
    if (record.size, record.mtime_ns) != (info.st_size, info.st_mtime_ns):
        raise Unverified("it changed since it was registered: register it again first")
    return str(record.sha256)
