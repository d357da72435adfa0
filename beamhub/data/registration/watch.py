"""Watch mode: register a proposal's files as the DAQ closes them (inotify).

Every folder of the tree is watched first, then the whole tree is registered (what arrived while
nobody watched): a file closed in between raises an event, so none is missed. Then each file closed
after writing, or renamed into place, is registered by RegistrationService.register_files in batches: its
ACL set from the proposal's access list, its record upserted with its SHA-256, by the same code as
`register` (a hard-linked file only if the proposal's folder holds all its names: it is refused
otherwise). A new folder is watched at once and then scanned, for what was written into it before
its watch existed. A file or folder deleted or moved away loses its records. When the kernel's
event queue overflows, the tree is watched and registered anew.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inotify_simple import INotify, flags

from beamhub.data.registration.ingest import RegisterResult
from beamhub.errors import Conflict, InsufficientResources, Invalid, NotFound
from beamhub.identity.principal import Principal

if TYPE_CHECKING:
    from beamhub.data.registration.service import RegistrationService

log = logging.getLogger(__name__)

WINDOW = 0.5
"""Seconds the events of one batch are gathered for, counted from its first file."""
BATCH = 500
"""Files that make a batch full before its window ends."""
POLL_MS = 200
"""How often an idle watcher looks at its stop event."""

MASK = (flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.CREATE | flags.DELETE
        | flags.ONLYDIR | flags.DONT_FOLLOW | flags.EXCL_UNLINK)

Report = Callable[[str, RegisterResult], None]
"""report(kind, result) after each registration: kind is "start-up", "batch" or "rescan"."""


@dataclass
class WatchSummary:
    """What one run of a watcher did."""

    started: RegisterResult = field(default_factory=RegisterResult)
    files: int = 0
    """Files registered (added or updated) from events, start-up and rescans not counted."""
    batches: int = 0
    rescans: int = 0
    refused: set[str] = field(default_factory=set)
    """Hard-linked files refused (RegisterResult.refused), from events, start-up and rescans."""


class _Stopped(Exception):
    """Raised from a registration's progress callback to end it early: it is safe to re-run."""


def open_for_writing(path: Path) -> bool:
    """Whether a process holds this regular file open for writing: the kernel then refuses a read lease.

    Where leases are unavailable (some network file systems, no CAP_LEASE) the answer is False:
    the file is registered now, and again at its close.
    """
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # gone, or not a file: the registration passes it over
    try:
        # A writer opening the file while the lease is held breaks it, and the kernel signals us:
        # SIGURG is ignored by default, SIGIO (the default signal) would end the process.
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


class ProposalWatcher:
    """Registers the files of one proposal folder (or a folder inside it) as they are closed, until stopped."""

    def __init__(self, service: RegistrationService, principal: Principal, proposal_id: str, root: Path | None = None,
                 report: Report | None = None, window: float = WINDOW, batch: int = BATCH) -> None:
        self.service = service
        self.principal = principal
        self.target = service.locate(proposal_id, root)
        if not self.target.start.is_dir():
            raise NotFound("%(folder)s is not a folder", folder=self.target.start)
        self.report = report or (lambda kind, result: None)
        self.window = window
        self.batch = batch
        self.summary = WatchSummary()
        self._watches: dict[int, Path] = {}
        self._pending: dict[Path, bool] = {}
        self._due = 0.0
        self._overflowed = False
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> WatchSummary:
        """Register the tree, then what is closed in it, until `stop` is set; a registration under way is cut short."""
        self._stop = stop
        self._inotify = INotify()
        try:
            self._start("start-up")
            while not stop.is_set():
                self._step()
            self._flush()
        except _Stopped:
            pass
        finally:
            self._inotify.close()
        self.service.audit.record_as(self.principal, "data.watch", self.target.proposal_id,
                                     path=self.target.relative(self.target.start), tier=self.target.tier,
                                     files=self.summary.files, batches=self.summary.batches,
                                     rescans=self.summary.rescans, refused=len(self.summary.refused))
        return self.summary

    # --- whole-tree registration ------------------------------------------------------------
    def _start(self, kind: str) -> None:
        """Watch every folder, then register the whole tree (idempotent: unchanged files are not read)."""
        self._add_tree(self.target.start)
        result = self.service.register(self.principal, self.target.proposal_id,
                                       self.target.relative(self.target.start), self.target.tier, self._check_stop)
        if kind == "start-up":
            self.summary.started = result
        self.summary.refused.update(result.refused)
        self.report(kind, result)

    def _check_stop(self, phase: str, done: int) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _rescan(self) -> None:
        """After lost events: a fresh queue, every folder watched again, the tree registered again."""
        log.warning("inotify queue overflowed under %s: registering the whole tree again", self.target.start)
        self._inotify.close()
        self._inotify = INotify()
        self._watches.clear()
        self._pending.clear()
        self._overflowed = False
        self.summary.rescans += 1
        self._start("rescan")

    # --- events -----------------------------------------------------------------------------
    def _step(self) -> None:
        """Read the events of at most one poll interval; register the batch once it is due or full."""
        wait = POLL_MS if not self._pending else min(POLL_MS, max(0, round((self._due - time.monotonic()) * 1000)))
        for event in self._inotify.read(timeout=wait):
            self._handle(event.wd, event.mask, event.name)
        if self._overflowed:
            self._rescan()
        elif self._pending and (len(self._pending) >= self.batch or time.monotonic() >= self._due):
            self._flush()

    def _handle(self, wd: int, mask: int, name: str) -> None:
        if mask & flags.Q_OVERFLOW:
            self._overflowed = True
            return
        if mask & flags.IGNORED:  # the folder was deleted (a watch we removed is no longer in the map)
            if self._watches.pop(wd, None) == self.target.start:
                raise NotFound("%(folder)s was removed: nothing is left to watch", folder=self.target.start)
            return
        directory = self._watches.get(wd)
        if directory is None or self._overflowed:
            return
        path = directory / name
        if mask & flags.ISDIR:
            if mask & (flags.CREATE | flags.MOVED_TO):
                dirs, files = self._add_tree(path)
                self._queue(*dirs, directory=True)
                self._queue(*files, directory=False)
            elif mask & flags.MOVED_FROM:
                self._drop_tree(path)
                self._queue(path, directory=True)
        elif mask & (flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE):
            self._queue(path, directory=False)  # registered if it is there then, its record removed if not

    def _queue(self, *paths: Path, directory: bool) -> None:
        if paths and not self._pending:
            self._due = time.monotonic() + self.window
        for path in paths:
            self._pending[path] = directory

    def _flush(self) -> None:
        """Register the pending paths, except files some process still writes (their close will come)."""
        paths = [p for p, directory in self._pending.items() if directory or not open_for_writing(p)]
        self._pending.clear()
        if not paths:
            return
        try:
            result = self._register(paths)
        except Conflict:  # a registration in another process wrote the same records; they are committed now
            result = self._register(paths)
        self.summary.files += result.added + result.updated
        self.summary.batches += 1
        self.summary.refused.update(result.refused)
        self.report("batch", result)

    def _register(self, paths: list[Path]) -> RegisterResult:
        return self.service.register_files(self.principal, self.target.proposal_id, self.target.tier, paths)

    # --- watches ----------------------------------------------------------------------------
    def _add_tree(self, top: Path) -> tuple[list[Path], list[Path]]:
        """Watch top and every real folder below it, each before it is listed; its (folders, files)."""
        dirs: list[Path] = []
        files: list[Path] = []
        stack = [top]
        while stack:
            directory = stack.pop()
            if not self._watch(directory):
                continue
            dirs.append(directory)
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            stack.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
            files.extend(Path(e.path) for e in entries if e.is_file(follow_symlinks=False))
        return dirs, files

    def _watch(self, directory: Path) -> bool:
        """Watch one folder (never through a symlink); False if it is gone or not a folder."""
        try:
            wd = self._inotify.add_watch(directory, MASK)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientResources("cannot watch %(directory)s: the inotify watch limit is reached; raise "
                                            "fs.inotify.max_user_watches", directory=directory) from exc
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return False
            raise Invalid("cannot watch %(directory)s: %(reason)s", directory=directory, reason=exc.strerror) from exc
        self._watches[wd] = directory
        return True

    def _drop_tree(self, top: Path) -> None:
        """Stop watching a folder moved away and everything below it (its watches would name wrong paths)."""
        for wd, directory in list(self._watches.items()):
            if directory == top or top in directory.parents:
                del self._watches[wd]
                try:
                    self._inotify.rm_watch(wd)
                except OSError:
                    pass  # already gone with its folder
