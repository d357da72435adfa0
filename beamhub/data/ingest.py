"""Registration: walk a proposal's tree, set its ACLs, record every regular file with its SHA-256.

Safe to re-run at any time, after a crash too: each directory's files are upserted in batches
that commit on their own, keyed by (proposal, relative path), and a file whose size and mtime
match its record is not read again. What the walk no longer finds is removed from the catalogue.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError

from beamhub.data.acl import AccessList, set_path_acl, set_tree_acl
from beamhub.data.models import PATH_BYTES, DataFile, Dataset
from beamhub.db import Database, utcnow
from beamhub.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
BATCH = 2000
HASH_WORKERS = 4

Progress = Callable[[str, int], None]
"""progress(phase, running total): phase "acl" counts paths, "files" counts files examined."""


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


@dataclass(frozen=True)
class Target:
    """What to register: a proposal's folder on one tier, and the path inside it to start from."""

    proposal_id: str
    root: Path
    start: Path
    tier: str

    def relative(self, path: Path) -> str:
        return "" if path == self.root else path.relative_to(self.root).as_posix()


@dataclass(frozen=True)
class Seen:
    """A file found by the walk, with the stat it had."""

    name: str
    relpath: str
    path: str
    size: int
    mtime_ns: int


def sha256_of(path: Path | str) -> tuple[str | None, int]:
    """The SHA-256 of a regular file (None if it changed while being read) and the bytes read."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        before = os.fstat(fd)
        read = 0
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
            read += len(chunk)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    steady = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) and read == after.st_size
    return (digest.hexdigest() if steady else None), read


def _hash(seen: Seen) -> tuple[str | None, int] | None:
    """sha256_of the file, or None if it was removed since the walk saw it."""
    try:
        return sha256_of(seen.path)
    except FileNotFoundError:
        return None


def recordable(relpath: str) -> bool:
    """Whether the catalogue can hold this path: valid UTF-8 and short enough for its index."""
    try:
        return len(relpath.encode("utf-8")) <= PATH_BYTES
    except UnicodeEncodeError:
        return False


def register_tree(database: Database, target: Target, access: AccessList,
                  progress: Progress | None = None) -> RegisterResult:
    """Set the ACLs under target.start (and on the folders above it in the proposal), then catalogue its files."""
    result = RegisterResult()
    for folder in _folders_between(target.root, target.start):
        set_path_acl(folder, access)
    result.acl_paths = set_tree_acl(target.start, access, _phase(progress, "acl"))
    with ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="sha256") as hashers:
        walker = _Walker(database, target, result, hashers, progress)
        try:
            walker.run()
        except IntegrityError as exc:
            raise Conflict(f"another registration of {target.proposal_id} ran at the same time; "
                           "run this one again") from exc
    refresh_datasets(database, target)
    return result


def register_paths(database: Database, target: Target, paths: Iterable[Path], access: AccessList) -> RegisterResult:
    """Set the ACL of each given folder and regular file and catalogue the files; no walk.

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
        elif (regular := _set_acl(path, target, access, result)) is None:
            continue
        elif regular:
            files.setdefault(path.parent, []).append(path.name)
        datasets.add(relative.split("/", 1)[0])
    with ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="sha256") as hashers:
        try:
            walker = _Walker(database, target, result, hashers, None)
            walker.forget(gone - {""})
            walker.run_files(files)
        except IntegrityError as exc:
            raise Conflict(f"another registration of {target.proposal_id} ran at the same time; "
                           "run this one again") from exc
    for name in sorted(datasets - {""}):
        _recount(database, target, name)
    return result


def _set_acl(path: Path, target: Target, access: AccessList, result: RegisterResult) -> bool | None:
    """Set the ACL of one folder or file: True for a regular file to catalogue, False for a folder, None: skipped."""
    try:
        regular = stat.S_ISREG(os.lstat(path).st_mode)
        if regular and not recordable(target.relative(path)):
            result.skipped += 1
            return None
        set_path_acl(path, access)
    except (FileNotFoundError, NotFound, Invalid):
        return None
    result.acl_paths += 1
    return regular


def _phase(progress: Progress | None, phase: str) -> Callable[[int], None] | None:
    return None if progress is None else (lambda done: progress(phase, done))


def _folders_between(root: Path, start: Path) -> list[Path]:
    """The proposal folder and every folder below it down to start's parent (none when start is root)."""
    parts = start.relative_to(root).parts
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts))]


class _Walker:
    """One registration's walk: a directory at a time, files upserted in committed batches."""

    def __init__(self, database: Database, target: Target, result: RegisterResult, hashers: ThreadPoolExecutor,
                 progress: Progress | None) -> None:
        self.database = database
        self.target = target
        self.result = result
        self.hashers = hashers
        self.progress = progress
        self.visited: set[str] = set()

    def run(self) -> None:
        start = self.target.start
        if stat.S_ISREG(os.lstat(start).st_mode):
            self._sync(self.target.relative(start.parent), [start.name], start.parent, prune=False)
            return
        for directory, entries in self._directories(start):
            relative = self.target.relative(directory)
            self.visited.add(relative)
            self._sync(relative, entries, directory, prune=True)
        self._prune_unvisited(self.target.relative(start))

    def run_files(self, files: dict[Path, list[str]]) -> None:
        """Catalogue the given files (names by directory) and nothing else."""
        for directory in sorted(files):
            self._sync(self.target.relative(directory), sorted(files[directory]), directory, prune=False)

    def forget(self, relpaths: set[str]) -> None:
        """Remove the records of these paths on this tier, and of every file below those that were folders."""
        with self.database.session() as db:
            for relpath in sorted(relpaths):
                gone = db.execute(delete(DataFile).where(DataFile.proposal_id == self.target.proposal_id,
                                                         DataFile.tier == self.target.tier,
                                                         under(DataFile.relpath, relpath)))
                self.result.removed += gone.rowcount or 0

    def _directories(self, start: Path) -> Iterator[tuple[Path, list[os.DirEntry[str]]]]:
        """(directory, its regular files) for start and every real directory below it, in name order."""
        pending = [start]
        while pending:
            directory = pending.pop()
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda e: e.name)
            relative = self.target.relative(directory)
            pending.extend(reversed([Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)
                                     and self._keep(f"{relative}/{e.name}" if relative else e.name)]))
            yield directory, [e for e in entries if e.is_file(follow_symlinks=False)]

    def _keep(self, relpath: str) -> bool:
        if recordable(relpath):
            return True
        self.result.skipped += 1
        log.warning("not registered (name not UTF-8 or path too long): %r", relpath)
        return False

    def _sync(self, parent: str, files: list[str] | list[os.DirEntry[str]], directory: Path, prune: bool) -> None:
        """Bring the catalogue's records of one directory's files (names or scandir entries) in line with it."""
        names = [f if isinstance(f, str) else f.name for f in files]
        query = (select(DataFile.id, DataFile.relpath, DataFile.size, DataFile.mtime_ns, DataFile.sha256,
                        DataFile.tier)
                 .where(DataFile.proposal_id == self.target.proposal_id, DataFile.parent == parent))
        if not prune:  # only these files matter: do not read the records of a whole large directory
            query = query.where(DataFile.relpath.in_([f"{parent}/{name}" if parent else name for name in names]))
        with self.database.session() as db:
            known = {row.relpath: row for row in db.execute(query)}
        seen = [s for s in (self._stat(parent, f, directory) for f in files) if s is not None]
        for index in range(0, len(seen), BATCH):
            self._store(parent, seen[index:index + BATCH], known)
        if prune:
            self._remove(set(known) - {s.relpath for s in seen})

    def _stat(self, parent: str, file: str | os.DirEntry[str], directory: Path) -> Seen | None:
        name = file if isinstance(file, str) else file.name
        relpath = f"{parent}/{name}" if parent else name
        if not self._keep(relpath):
            return None
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path) if isinstance(file, str) else file.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None
        return Seen(name, relpath, path, info.st_size, info.st_mtime_ns)

    def _digests(self, changed: list[Seen]) -> list[tuple[str | None, int] | None]:
        """The SHA-256 of each file: small ones here (a thread costs more than hashing them), large ones in parallel."""
        large = {s.relpath: f for s, f in ((s, self.hashers.submit(_hash, s)) for s in changed if s.size > CHUNK)}
        return [large[s.relpath].result() if s.relpath in large else _hash(s) for s in changed]

    def _store(self, parent: str, batch: list[Seen], known: dict[str, Row[Any]]) -> None:
        """Upsert one batch in one transaction (bulk statements), hashing only new or changed files."""
        changed = [s for s in batch if not _current(known.get(s.relpath), s, self.target.tier)]
        new, updates = [], []
        for item, hashed in zip(changed, self._digests(changed), strict=True):
            if hashed is None:
                continue
            self.result.hashed_bytes += hashed[1]
            values = {"size": item.size, "mtime_ns": item.mtime_ns, "sha256": hashed[0], "tier": self.target.tier}
            record = known.get(item.relpath)
            if record is None:
                new.append({"proposal_id": self.target.proposal_id, "relpath": item.relpath, "parent": parent,
                            "registered_at": utcnow(), **values})
            else:
                updates.append({"id": record.id, **values})
        if new or updates:
            with self.database.session() as db:
                if new:
                    db.execute(insert(DataFile.__table__), new)
                if updates:
                    db.execute(update(DataFile), updates)
        self.result.added += len(new)
        self.result.updated += len(updates)
        self.result.files += len(batch)
        self.result.unchanged += len(batch) - len(changed)
        if self.progress is not None:
            self.progress("files", self.result.files)

    def _remove(self, relpaths: set[str]) -> None:
        ordered = sorted(relpaths)
        for index in range(0, len(ordered), BATCH):
            with self.database.session() as db:
                db.execute(delete(DataFile).where(DataFile.proposal_id == self.target.proposal_id,
                                                  DataFile.relpath.in_(ordered[index:index + BATCH]),
                                                  DataFile.tier == self.target.tier))
        self.result.removed += len(relpaths)

    def _prune_unvisited(self, start: str) -> None:
        """Remove the records of files in directories of this tier that no longer exist."""
        with self.database.session() as db:
            parents = set(db.scalars(select(DataFile.parent).distinct().where(
                DataFile.proposal_id == self.target.proposal_id, DataFile.tier == self.target.tier,
                under(DataFile.parent, start))))
        for parent in sorted(parents - self.visited):
            with self.database.session() as db:
                gone = db.execute(delete(DataFile).where(DataFile.proposal_id == self.target.proposal_id,
                                                         DataFile.tier == self.target.tier,
                                                         DataFile.parent == parent))
                self.result.removed += gone.rowcount or 0


def _current(record: Row[Any] | None, seen: Seen, tier: str) -> bool:
    """Whether a record still describes the file: same size, mtime and tier, and a checksum."""
    return (record is not None and record.size == seen.size and record.mtime_ns == seen.mtime_ns
            and record.tier == tier and record.sha256 is not None)


def folder_range(prefix: str) -> tuple[str, str]:
    """[low, high) holding exactly the paths below folder `prefix` (byte order: '0' follows '/')."""
    return f"{prefix}/", f"{prefix}0"


def under(column: Any, folder: str) -> ColumnElement[bool]:
    """SQL: the path column is `folder` itself or lies below it ("" is the whole proposal)."""
    if not folder:
        return true()
    low, high = folder_range(folder)
    return (column == folder) | ((column >= low) & (column < high))


def refresh_datasets(database: Database, target: Target) -> None:
    """Recount the datasets (first-level folders) the registration touched; drop those that are gone."""
    relative = target.relative(target.start)
    if relative:
        names = {relative.split("/", 1)[0]} if "/" in relative or target.start.is_dir() else set()
    else:
        with database.session() as db:
            names = set(db.scalars(select(Dataset.name).where(Dataset.proposal_id == target.proposal_id)))
        names |= {entry.name for entry in os.scandir(target.root) if entry.is_dir(follow_symlinks=False)}
    for name in sorted(names):
        _recount(database, target, name)


def _recount(database: Database, target: Target, name: str) -> None:
    low, high = folder_range(name)
    with database.session() as db:
        count, total = db.execute(select(func.count(), func.coalesce(func.sum(DataFile.size), 0)).where(
            DataFile.proposal_id == target.proposal_id, DataFile.relpath >= low, DataFile.relpath < high)).one()
        dataset = db.scalar(select(Dataset).where(Dataset.proposal_id == target.proposal_id, Dataset.name == name))
        if not count and not (target.root / name).is_dir():
            if dataset is not None:
                db.delete(dataset)
            return
        if dataset is None:
            dataset = Dataset(proposal_id=target.proposal_id, name=name)
            db.add(dataset)
        dataset.file_count, dataset.total_bytes, dataset.updated_at = count, total, utcnow()
