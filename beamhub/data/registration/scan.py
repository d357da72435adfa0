"""A registration's work on the file system, a batch of one directory's entries at a time: set their ACLs,
stat them, hash the files the catalogue does not know as they are.

Batches run in this process while a registration is small and in worker processes once it has
shown itself large, so that on a many-core node ACLs and checksums of different batches proceed
at once while the registration itself writes the catalogue. The workers come from a forkserver
(forking a server with its threads and database pool is unsafe; measured, plain fork was no
faster). As every multiprocessing worker does, each imports the program's main module: a script
that registers large trees must keep its own work under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import select
import stat
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from beamhub.data.acl import AccessList, AclValues, open_entry, set_acl_xattrs
from beamhub.data.fsmeta import CHUNK, O_READ
from beamhub.data.links import Linked, Proven, linked, may_set

HASH_THREADS = 4
INLINE_BATCHES = 4
"""Batches a registration runs in its own process before it starts worker processes."""
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ScannedFile(NamedTuple):
    """A regular file of a batch: its stat, and its SHA-256 if it was read (None: changed while read)."""

    name: str
    size: int
    mtime_ns: int
    read: bool
    sha256: str | None
    bytes_read: int


@dataclass
class BatchScan:
    """What one batch found: how many ACLs it set, its regular files, and those it left alone: hard-linked
    files not proven to have all their names inside the proposal (links.py)."""

    acl_paths: int = 0
    files: list[ScannedFile] = field(default_factory=list)
    linked: list[Linked] = field(default_factory=list)


def sha256_of(path: str | os.PathLike[str], dir_fd: int | None = None) -> tuple[str | None, int]:
    """The SHA-256 of a regular file (None if it changed while being read) and the bytes read."""
    fd = os.open(path, O_READ, dir_fd=dir_fd)
    try:
        return sha256_of_fd(fd, os.fstat(fd))
    finally:
        os.close(fd)


def sha256_of_fd(fd: int, before: os.stat_result) -> tuple[str | None, int]:
    """The SHA-256 of what fd is open on, read from its start (None if it changed since its fstat `before`
    or while being read), and the bytes read."""
    digest = hashlib.sha256()
    read = 0
    while True:
        # What is left and one byte more, so the end shows without another call: os.pread allocates
        # all it is asked for, and a 1 MiB buffer costs more than hashing a small file.
        want = min(CHUNK, before.st_size - read + 1) if read < before.st_size else CHUNK
        chunk = os.pread(fd, want, read)
        digest.update(chunk)
        read += len(chunk)
        if len(chunk) < want:  # the end (a short read mid-file shows below as a changed file)
            break
    after = os.fstat(fd)
    steady = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) and read == after.st_size
    return (digest.hexdigest() if steady else None), read


def open_below(root: str, relative: str) -> int:
    """A directory fd for `relative` under root, no component of it followed if it is a symlink."""
    fd = os.open(root, _OPEN_DIR)
    try:
        for part in relative.split("/") if relative else []:
            inner = os.open(part, _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def scan_batch(root: str, relative: str, names: list[str], access: AccessList,
               known: dict[str, tuple[int, int]], proven: Proven) -> BatchScan:
    """Set the ACL of each named entry of folder `relative` and fstat its regular files; hash those whose
    (size, mtime_ns) is not what `known` says. Entries gone meanwhile, and symlinks, are left out; a
    hard-linked file that `proven` does not vouch for is only listed in `linked`. Each entry is opened
    once, and its ACL set and its bytes read through that fd."""
    scan = BatchScan()
    values = AclValues(access)
    dirfd = open_below(root, relative)
    try:
        large: list[tuple[str, int, int]] = []
        for name in names:
            fd = open_entry(dirfd, name)
            if fd is None:
                continue
            try:
                info = os.fstat(fd)
                if not may_set(info, proven):
                    scan.linked.append(linked(name, info))
                    continue
                if set_acl_xattrs(fd, info.st_mode, values):
                    scan.acl_paths += 1
                if not stat.S_ISREG(info.st_mode):
                    continue
                if known.get(name) == (info.st_size, info.st_mtime_ns):
                    scan.files.append(ScannedFile(name, info.st_size, info.st_mtime_ns, False, None, 0))
                elif info.st_size > CHUNK:
                    large.append((name, info.st_size, info.st_mtime_ns))
                else:
                    scan.files.append(ScannedFile(name, info.st_size, info.st_mtime_ns, True,
                                                  *sha256_of_fd(fd, info)))
            finally:
                os.close(fd)
        if large:  # hashlib and os.pread release the GIL on large buffers: threads pay here
            with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="sha256") as hashers:
                for hashing in [hashers.submit(_append_hashed, scan, dirfd, *file) for file in large]:
                    hashing.result()
    finally:
        os.close(dirfd)
    return scan


def _append_hashed(scan: BatchScan, dirfd: int, name: str, size: int, mtime_ns: int) -> None:
    """Hash a large file again opened by name; what was replaced or changed since its listing is not read."""
    fd = open_entry(dirfd, name)
    if fd is None:
        return
    try:
        info = os.fstat(fd)
        same = stat.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns) == (size, mtime_ns)
        digest, read = sha256_of_fd(fd, info) if same else (None, 0)
    finally:
        os.close(fd)
    scan.files.append(ScannedFile(name, size, mtime_ns, True, digest, read))


def _end_with(registration: int) -> None:
    """A worker's initializer: end the worker when the registration's process ends, however it ends (a
    worker of a killed registration would otherwise wait for its next batch forever)."""
    try:
        watched = os.pidfd_open(registration)
    except ProcessLookupError:
        os._exit(1)

    def watch() -> None:
        select.select([watched], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="end-with-registration", daemon=True).start()


class BatchRunner:
    """Runs scan_batch: here for the first INLINE_BATCHES, then in `workers` worker processes."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.inline_left = INLINE_BATCHES
        self._pool: Executor | None = None

    def submit(self, *args: Any) -> Future[BatchScan]:
        if self._inline():
            done: Future[BatchScan] = Future()
            try:
                done.set_result(scan_batch(*args))
            except BaseException as exc:
                done.set_exception(exc)
            return done
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_end_with,
                                             initargs=(os.getpid(),))
        return self._pool.submit(scan_batch, *args)

    def _inline(self) -> bool:
        if self.workers == 1 or self.inline_left > 0:
            self.inline_left -= 1
            return True
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> BatchRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
