"""Locks held across every beamhub process of this host (the worker processes of one server): a thread lock for
the threads of this process, then an exclusive flock on a file for the other processes. The kernel drops a flock
with its process, so a worker that dies holds nothing."""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

HOST_ACCOUNTS = Path("/run/beamhub-locks/host-accounts.lock")
"""The lock of the host's accounts and groups, one for every beamhub of the host (they share /etc/passwd). Not in
the world-writable /run/lock: a local user could make the file first there and hold its flock for ever."""


class HostLock:
    """Held by one thread of all the processes that open the same file; reentrant in its holding thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = threading.RLock()
        self._fd: int | None = None
        self._depth = 0  # changed only by the thread that holds _thread

    def __enter__(self) -> HostLock:
        self._thread.acquire()
        try:
            if self._depth == 0:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def _file(self) -> int:
        """The lock file, opened once (no symlink followed); its folder is made if missing. PermissionError if
        someone else could have made, swapped or opened it (a folder others may write to, a file this process does
        not own alone): whoever can open the file can hold its lock."""
        if self._fd is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_own(os.lstat(self.path.parent), stat.S_ISDIR, stat.S_IWGRP | stat.S_IWOTH)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                _check_own(os.fstat(fd), stat.S_ISREG, 0o077)  # a flock needs only a descriptor open for reading
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd


def _check_own(st: os.stat_result, kind: Callable[[int], bool], unwanted: int) -> None:
    """PermissionError unless st is of this kind, owned by this process's user and has none of the unwanted bits."""
    if not kind(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & unwanted:
        raise PermissionError("a host lock's file or folder is not this user's alone")


STRIPES = 64
"""Host locks a kind of many keys (a proposal each) is spread over: one open file each, whatever the number of keys."""


class HostLocks:
    """The host locks of one state directory, by name (its file named by the name's digest)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._locks: dict[str, HostLock] = {}
        self._guard = threading.Lock()

    def __call__(self, name: str) -> HostLock:
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                digest = hashlib.sha256(name.encode()).hexdigest()[:32]
                lock = self._locks[name] = HostLock(self.folder / f"{digest}.lock")
            return lock

    def striped(self, kind: str, key: str) -> HostLock:
        """The lock of `key` among the STRIPES locks of `kind` (keys that share one wait for each other)."""
        stripe = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % STRIPES
        return self(f"{kind}:{stripe}")
