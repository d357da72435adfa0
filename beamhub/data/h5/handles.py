"""HDF5 files kept open a few seconds, for the many requests a viewer makes to one file.

Only the opening is shared, never the decision: every request still finds its file and decides the caller's read
by its own descriptor walk (paths.open_readable), and reaches a kept file only through the inode that walk
opened, while the file's size, mtime and ctime are still those the kept one was opened with (a file being
written, or whose ACL was rewritten, is opened anew). A kept file holds its inode open, so its number cannot be
reused by another file meanwhile. h5py's lock serialises HDF5 calls from the request threads. Kept files take no
HDF5 file lock, so a writer (the DAQ) can always open a file a viewer reads; as HDF5's own lock would, a request
is refused (409) while a writer holds the file's lock. A kept file is closed within about two KEEP_SECONDS once
no request uses it (a timer sweeps while any is kept), or at once when more than MAX_FILES would be kept;
with keep_seconds 0 (the setting h5_keep_seconds) none is kept.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import h5py

from beamhub.errors import Conflict, Invalid

KEEP_SECONDS = 2.0
_NO_LOCKS = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK)
MAX_FILES = 16  # each holds HDF5's metadata cache (2 MiB to start, up to 32 MiB as a file's use asks)

Inode = tuple[int, int]
Version = tuple[int, int, int]


@dataclass
class _Kept:
    """An open file, the version it was opened at, how many requests use it, when it was last released."""

    h5: h5py.File
    version: Version
    users: int = 1
    released: float = 0.0
    listed: bool = False


def open_h5(fd: int, name: str) -> h5py.File:
    """The HDF5 file open as the descriptor `fd`, read-only, taking no lock (fd stays the caller's); `name` only
    for the error."""
    try:
        # The magic link reopens this very inode, whatever is renamed into its path afterwards.
        return h5py.File(f"/proc/self/fd/{fd}", "r", locking=False)
    except OSError:
        raise Invalid("not an HDF5 file: %(file)s", file=_base(name)) from None


def refuse_if_written(fd: int, name: str) -> None:
    """Conflict while a writer holds the file's HDF5 lock (as HDF5's own shared lock on open would fail); the
    shared lock taken to see it is held only until fd is closed, never while the file is kept."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Conflict("%(file)s is being written (its writer holds the file's lock): try again once it is closed",
                       file=_base(name)) from None
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise  # a filesystem without flock has no writer's lock to see (HDF5's best-effort locking ignores it too)


def _base(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def version(st: os.stat_result) -> tuple[Inode, Version]:
    """The inode a descriptor names, and what must match for a kept file of that inode to stand for it now."""
    return (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class OpenFiles:
    """HDF5 files kept open, one an inode, at the version they were opened; thread-safe."""

    def __init__(self, keep_seconds: float = KEEP_SECONDS, most: int = MAX_FILES) -> None:
        self.keep_seconds = keep_seconds
        self.most = most
        self._lock = threading.Lock()
        self._kept: dict[Inode, _Kept] = {}
        self._timer: threading.Timer | None = None

    @contextmanager
    def use(self, fd: int, name: str) -> Iterator[h5py.File]:
        """The HDF5 file open as `fd` (closed here): the kept one of its inode and version, else opened now."""
        try:
            refuse_if_written(fd, name)
            kept = self._open(fd, name, *version(os.fstat(fd)))
        finally:
            os.close(fd)
        try:
            yield kept.h5
        finally:
            self._release(kept)

    def _open(self, fd: int, name: str, inode: Inode, now: Version) -> _Kept:
        """The kept file of this inode at this version; else one opened now, kept if no other version of the
        inode is still open (HDF5 would hand out that one's state again for the same inode)."""
        with self._lock:
            kept = self._kept.get(inode)
            if kept is not None and kept.version == now:
                kept.users += 1
                return kept
            older = self._unlist(inode) if kept is not None else None
            older_busy = older is not None and older.users > 0  # then its last request closes it
        if older is not None and not older_busy:
            older.h5.close()
        opened = _Kept(open_h5(fd, name), now)
        with self._lock:
            if self.keep_seconds and not older_busy and inode not in self._kept:
                self._kept[inode], opened.listed = opened, True
                self._arm()
        return opened

    def kept(self) -> int:
        """How many files are kept open now."""
        with self._lock:
            return len(self._kept)

    def _release(self, kept: _Kept) -> None:
        """One request less on `kept`, closed at once if it is not (or no more) kept."""
        with self._lock:
            kept.users -= 1
            kept.released = time.monotonic()
            due = [] if kept.listed or kept.users else [kept]
            if len(self._kept) > self.most:
                idle = sorted((item for item in self._kept.items() if not item[1].users), key=lambda i: i[1].released)
                due += [self._unlist(key) for key, _ in idle[:len(self._kept) - self.most]]
        for entry in due:
            entry.h5.close()

    def _sweep(self) -> None:
        """Close the kept files idle for KEEP_SECONDS; look again later while some are kept."""
        now = time.monotonic()
        with self._lock:
            due = [self._unlist(key) for key, entry in list(self._kept.items())
                   if not entry.users and now - entry.released > self.keep_seconds]
            self._timer = None
            self._arm()
        for entry in due:
            entry.h5.close()

    def _arm(self) -> None:
        """A sweep in KEEP_SECONDS, if files are kept and none is due yet (call with the lock held)."""
        if self._kept and self._timer is None:
            self._timer = threading.Timer(self.keep_seconds, self._sweep)
            self._timer.daemon = True
            self._timer.start()

    def _unlist(self, key: Inode) -> _Kept:
        entry = self._kept.pop(key)
        entry.listed = False
        return entry
