"""Registration: walk a proposal's tree, set its ACLs, record every regular file with its SHA-256.

Safe to re-run at any time, after a crash too: records are upserted WRITE_BATCH to a transaction,
keyed by (proposal, relative path), and a file whose size and mtime match its record is not read
again. What the walk no longer finds is removed from the catalogue.

A regular file with more than one name (st_nlink > 1) may share its inode, and so its ACL, with a
name in another proposal: its scan leaves it alone, and once the walk is done, the proposal's folder
is searched for its names (links.py). If it holds them all, the file's ACL is set and it is
catalogued; if not, every name of it found here is refused: reported, logged, not catalogued.
"""

from __future__ import annotations

import logging
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Row, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from beamhub.data.acl import AccessList, set_path_acl
from beamhub.data.catalogue import Deltas, Target, apply_deltas, count_into, refresh_datasets, removed, touched, under
from beamhub.data.links import NONE_PROVEN, Linked, Proven, proven_links
from beamhub.data.models import PATH_BYTES, DataFile
from beamhub.data.registration.catalogue_writer import CatalogueWriter
from beamhub.data.registration.scan import BatchRunner, BatchScan, ScannedFile
from beamhub.db import Database, database_value, insert_rows, utcnow
from beamhub.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

SCAN_BATCH = 512
"""Entries of one directory handed to one scan_batch call."""
WRITE_BATCH = 1024
"""Records written to (or removed from) the catalogue in one transaction."""

Progress = Callable[[str, int], None]
"""progress(phase, running total): phase "acl" counts paths, "files" counts files examined, "refused" counts
hard-linked files refused."""


@dataclass
class RegisterResult:
    files: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    acl_paths: int = 0
    hashed_bytes: int = 0
    refused: list[str] = field(default_factory=list)
    """Hard-linked files with a name outside the proposal (or not shown inside it): ACL left alone, not catalogued."""


@dataclass
class _Directory:
    """One directory on its way through the scan: its catalogue records and the files its batches found."""

    parent: str
    known: dict[str, Row[Any]]
    prune: bool
    batches_left: int
    seen: set[str] = field(default_factory=set)


def recordable(relpath: str) -> bool:
    """Whether the catalogue can hold this path: valid UTF-8 and short enough for its index."""
    try:
        return len(relpath.encode("utf-8")) <= PATH_BYTES
    except UnicodeEncodeError:
        return False


def register_tree(database: Database, target: Target, access: AccessList, progress: Progress | None = None,
                  workers: int = 1) -> RegisterResult:
    """Set the ACLs under target.start (and on the folders above it in the proposal), and catalogue its files.

    The start's own ACL is set first and alone: every lookup below it needs search on it, so a
    removed member is shut out of new path lookups at once. Below it, each directory's entries
    are scanned in batches (ACLs, stat, SHA-256 of what changed), by `workers` processes when
    the tree is large, and each batch is written to the catalogue in one transaction.
    """
    result = RegisterResult()
    start_is_file = stat.S_ISREG(os.lstat(target.start).st_mode)  # its scan sets its ACL, hard links checked
    for folder in _folders_between(target.root, target.start) + ([] if start_is_file else [target.start]):
        set_path_acl(folder, access)
    result.acl_paths = 0 if start_is_file else 1
    with BatchRunner(workers) as runner, CatalogueWriter(database) as writer:
        walker = _Walker(database, target, result, runner, writer, access, progress)
        try:
            walker.run()
        except IntegrityError as exc:
            raise Conflict("another registration of %(proposal)s ran at the same time; run this one again",
                           proposal=target.proposal_id) from exc
    refresh_datasets(database, target, touched(target))
    return result


def register_paths(database: Database, target: Target, paths: Iterable[Path], access: AccessList) -> RegisterResult:
    """Set the ACL of each given folder and regular file and catalogue the files; no walk (but a search of the
    proposal's folder for the other names of a hard-linked file).

    A path that no longer exists loses its record (a folder: the records below it). One that is
    neither a folder nor a regular file (a symlink) is passed over.
    """
    result = RegisterResult()
    files: dict[Path, list[str]] = {}
    gone: set[str] = set()
    datasets: set[str] = set()
    for path in paths:
        relative = target.relative(path)
        if not os.path.lexists(path):
            gone.add(relative)
        elif (regular := _prepare(path, target, access, result)) is None:
            continue
        elif regular:
            files.setdefault(path.parent, []).append(path.name)
        datasets.add(relative.split("/", 1)[0])
    with BatchRunner(1) as runner, CatalogueWriter(database) as writer:
        try:
            walker = _Walker(database, target, result, runner, writer, access, None)
            walker.forget(gone - {""})
            walker.run_files(files)
        except IntegrityError as exc:
            raise Conflict("another registration of %(proposal)s ran at the same time; run this one again",
                           proposal=target.proposal_id) from exc
    refresh_datasets(database, target, datasets - {""})
    return result


def _prepare(path: Path, target: Target, access: AccessList, result: RegisterResult) -> bool | None:
    """Set the ACL of a folder: False; True for a regular file to scan (which sets its ACL); None: skipped."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            if recordable(target.relative(path)):
                return True
            result.skipped += 1
            return None
        set_path_acl(path, access)
    except (FileNotFoundError, NotFound, Invalid):
        return None
    result.acl_paths += 1
    return False


def _folders_between(root: Path, start: Path) -> list[Path]:
    """The proposal folder and every folder below it down to start's parent (none when start is root)."""
    parts = start.relative_to(root).parts
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts))]


class _Walker:
    """One registration's walk: directories listed here, their entries scanned in batches (see scan.py), the
    batches' files upserted as their scans come back, in order, by the writer's thread."""

    def __init__(self, database: Database, target: Target, result: RegisterResult, runner: BatchRunner,
                 writer: CatalogueWriter, access: AccessList, progress: Progress | None) -> None:
        self.database = database
        self.target = target
        self.result = result
        self.runner = runner
        self.writer = writer
        self.access = access
        self.progress = progress
        self.visited: set[str] = set()
        self.pending: deque[tuple[_Directory, Any]] = deque()
        self.depth = 2 * runner.workers + 2
        self.new: list[tuple[str, str, int, int, str]] = []
        self.updates: list[dict[str, Any]] = []
        self.deltas: Deltas = {}
        self.held: list[tuple[str, Linked]] = []
        """(folder, file) of the hard-linked files the scans left alone."""

    def run(self) -> None:
        start = self.target.start
        if stat.S_ISREG(os.lstat(start).st_mode):
            self.run_files({start.parent: [start.name]})
            return
        for relative, files, folders in self._listings(start):
            self.visited.add(relative)
            self._scan(relative, files, folders, prune=True)
        self._drain()
        self._settle_links()
        self._prune_unvisited(self.target.relative(start))

    def run_files(self, files: dict[Path, list[str]]) -> None:
        """Set the ACLs of the given files (names by directory) and catalogue them, and nothing else."""
        for directory in sorted(files):
            self._scan(self.target.relative(directory), sorted(files[directory]), [], prune=False)
        self._drain()
        self._settle_links()

    def forget(self, relpaths: set[str]) -> None:
        """Remove the records of these paths on this tier, and of every file below those that were folders."""
        with self.database.session() as db:
            for relpath in sorted(relpaths):
                self.result.removed += removed(db, delete(DataFile).where(
                    DataFile.proposal_id == self.target.proposal_id, DataFile.tier == self.target.tier,
                    under(DataFile.relpath, relpath)))

    def _listings(self, start: Path) -> Iterator[tuple[str, list[str], list[str]]]:
        """(relative path, its files' names, its folders' names) for start and every real directory below it,
        in name order; the kinds come from the directory itself (no stat)."""
        pending = [start]
        while pending:
            directory = pending.pop()
            relative = self.target.relative(directory)
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
            folders = [e.name for e in entries if e.is_dir(follow_symlinks=False) and self._keep(relative, e.name)]
            files = [e.name for e in entries if e.is_file(follow_symlinks=False) and self._keep(relative, e.name)]
            pending.extend(directory / name for name in reversed(folders))
            yield relative, files, folders

    def _keep(self, parent: str, name: str) -> bool:
        relpath = f"{parent}/{name}" if parent else name
        if recordable(relpath):
            return True
        self.result.skipped += 1
        log.warning("not registered (name not UTF-8 or path too long): %r", relpath)
        return False

    def _scan(self, parent: str, files: list[str], folders: list[str], prune: bool,
              proven: Proven = NONE_PROVEN) -> None:
        """Queue the batches of one directory (folders first: their ACLs matter most); finish the oldest
        batches while too many are queued."""
        query = (select(DataFile.id, DataFile.relpath, DataFile.size, DataFile.mtime_ns, DataFile.sha256,
                        DataFile.tier)
                 .where(DataFile.proposal_id == self.target.proposal_id, DataFile.parent == parent))
        if not prune:  # only these files matter: do not read the records of a whole large directory
            query = query.where(DataFile.relpath.in_([_join(parent, name) for name in files]))
        with self.database.session() as db:
            known = {row.relpath: row for row in db.execute(query)}
        current = {row.relpath.rsplit("/", 1)[-1]: (row.size, row.mtime_ns) for row in known.values()
                   if row.sha256 is not None and row.tier == self.target.tier}
        entries = folders + files
        batches = [entries[i:i + SCAN_BATCH] for i in range(0, len(entries), SCAN_BATCH)]
        directory = _Directory(parent, known, prune, len(batches))
        if not batches:
            self._finish(directory)
        for batch in batches:
            self.pending.append((directory, self.runner.submit(
                str(self.target.root), parent, batch, self.access,
                {name: current[name] for name in batch if name in current}, proven)))
            while len(self.pending) > self.depth:
                self._finish_oldest()

    def _drain(self) -> None:
        """Finish every queued batch, and wait until all is written."""
        while self.pending:
            self._finish_oldest()
        self._write()
        self.writer.flush()

    def _finish_oldest(self) -> None:
        directory, scanning = self.pending.popleft()
        scan: BatchScan = scanning.result()
        self.result.acl_paths += scan.acl_paths
        self._store(directory, scan.files)
        for file in scan.linked:  # kept from pruning: _settle_links decides
            directory.seen.add(_join(directory.parent, file.name))
            self.held.append((directory.parent, file))
        directory.batches_left -= 1
        if directory.batches_left == 0:
            self._finish(directory)
        if self.progress is not None:
            self.progress("acl", self.result.acl_paths)
            self.progress("files", self.result.files)

    def _settle_links(self) -> None:
        """Scan again the held hard-linked files whose every name the proposal's folder holds (now proven);
        refuse the others, and any whose links changed meanwhile."""
        held, self.held = self.held, []
        if not held:
            return
        proven = proven_links(self.target.root, [file for _, file in held])
        names: dict[str, list[str]] = {}
        for parent, file in held:
            if file.key in proven:
                names.setdefault(parent, []).append(file.name)
            else:
                self.held.append((parent, file))
        for parent in sorted(names):
            self._scan(parent, sorted(names[parent]), [], prune=False, proven=proven)
        self._drain()
        self._refuse(sorted(_join(parent, file.name) for parent, file in self.held))
        self.held = []

    def _refuse(self, relpaths: list[str]) -> None:
        """Report and log hard-linked files left alone, and drop their records (no ACL vouches for them)."""
        for relpath in relpaths:
            log.warning("refused %s of proposal %s: a hard link whose other names are not all inside its folder; "
                        "its ACL is left alone", relpath, self.target.proposal_id)
        self.result.refused += relpaths
        for index in range(0, len(relpaths), WRITE_BATCH):
            with self.database.session() as db:
                self.result.removed += removed(db, delete(DataFile).where(
                    DataFile.proposal_id == self.target.proposal_id, DataFile.tier == self.target.tier,
                    DataFile.relpath.in_(relpaths[index:index + WRITE_BATCH])))
        if relpaths and self.progress is not None:
            self.progress("refused", len(self.result.refused))

    def _finish(self, directory: _Directory) -> None:
        """A directory whose batches are all stored: drop the records of files it no longer has."""
        if directory.prune:
            self._remove(set(directory.known) - directory.seen)

    def _store(self, directory: _Directory, files: list[ScannedFile]) -> None:
        """Queue the records of one batch's new and changed files; write them once enough are queued."""
        for file in files:
            relpath = _join(directory.parent, file.name)
            directory.seen.add(relpath)
            if not file.read or file.sha256 is None:  # unchanged, or changed while read: the next run takes it
                continue
            self.result.hashed_bytes += file.bytes_read
            record = directory.known.get(relpath)
            if record is None:
                self.new.append((relpath, directory.parent, file.size, file.mtime_ns, file.sha256))
                count_into(self.deltas, relpath, 1, file.size)
                self.result.added += 1
            else:
                self.updates.append({"id": record.id, "size": file.size, "mtime_ns": file.mtime_ns,
                                     "sha256": file.sha256, "tier": self.target.tier})
                count_into(self.deltas, relpath, 0, file.size - record.size)
                self.result.updated += 1
        self.result.files += len(files)
        self.result.unchanged += sum(not file.read for file in files)
        if len(self.new) + len(self.updates) >= WRITE_BATCH:
            self._write()

    def _write(self) -> None:
        """Hand the queued records to the writer, as one transaction: new ones go in with the driver's executemany."""
        if self.new or self.updates:
            self.writer.submit(partial(_write_records, self.target, self.new, self.updates, self.deltas))
        self.new, self.updates, self.deltas = [], [], {}

    def _remove(self, relpaths: set[str]) -> None:
        ordered = sorted(relpaths)
        for index in range(0, len(ordered), WRITE_BATCH):
            self.writer.submit(partial(_remove_records, self.target, ordered[index:index + WRITE_BATCH]))
        self.result.removed += len(relpaths)

    def _prune_unvisited(self, start: str) -> None:
        """Remove the records of files in directories of this tier that no longer exist."""
        with self.database.session() as db:  # from the index alone: a folder of another tier deletes nothing
            parents = set(db.scalars(select(DataFile.parent).distinct().where(
                DataFile.proposal_id == self.target.proposal_id, under(DataFile.parent, start))))
        for parent in sorted(parents - self.visited):
            with self.database.session() as db:
                self.result.removed += removed(db, delete(DataFile).where(
                    DataFile.proposal_id == self.target.proposal_id, DataFile.tier == self.target.tier,
                    DataFile.parent == parent))


def _write_records(target: Target, new: list[tuple[str, str, int, int, str]], updates: list[dict[str, Any]],
                   deltas: Deltas, db: Session) -> None:
    if new:
        table = DataFile.__table__
        fixed = (target.proposal_id, target.tier, database_value(db, table, "registered_at", utcnow()))
        insert_rows(db, table, ("relpath", "parent", "size", "mtime_ns", "sha256", "proposal_id", "tier",
                                "registered_at"), [row + fixed for row in new])
    if updates:
        db.execute(update(DataFile), updates)
    apply_deltas(db, target.proposal_id, deltas)


def _remove_records(target: Target, relpaths: list[str], db: Session) -> None:
    removed(db, delete(DataFile).where(DataFile.proposal_id == target.proposal_id, DataFile.relpath.in_(relpaths),
                                       DataFile.tier == target.tier))


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
