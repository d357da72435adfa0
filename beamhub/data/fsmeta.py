"""A file's metadata besides its bytes (owner, mode, times, access and default ACLs, xattrs), read and applied by fd."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import posix1e

CHUNK = 1024 * 1024
O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class FileMeta:
    """What a copy must carry over besides the bytes."""

    uid: int
    gid: int
    mode: int
    atime_ns: int
    mtime_ns: int
    acl: posix1e.ACL
    default: posix1e.ACL | None
    xattrs: dict[str, bytes]

    @classmethod
    def read(cls, fd: int) -> FileMeta:
        """Owner, mode, times, access and default ACL and xattrs of what fd is open on."""
        info = os.fstat(fd)
        default = posix1e.ACL(filedef=f"/proc/self/fd/{fd}") if stat.S_ISDIR(info.st_mode) else None
        xattrs = {name: os.getxattr(fd, name) for name in os.listxattr(fd) if not name.startswith("system.")}
        return cls(info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode), info.st_atime_ns, info.st_mtime_ns,
                   posix1e.ACL(fd=fd), default if default is not None and len(list(default)) else None, xattrs)

    def apply(self, fd: int, directory: bool) -> None:
        """Give what fd is open on this owner, mode, ACLs, xattrs and times (times last)."""
        info = os.fstat(fd)
        if (info.st_uid, info.st_gid) != (self.uid, self.gid):
            os.fchown(fd, self.uid, self.gid)
        os.fchmod(fd, self.mode)
        self.acl.applyto(fd)
        if directory:  # a new folder inherits its parent's default ACL: set or remove it, never keep that one
            if self.default is not None:
                self.default.applyto(f"/proc/self/fd/{fd}", posix1e.ACL_TYPE_DEFAULT)
            else:
                posix1e.delete_default(f"/proc/self/fd/{fd}")
        for name in os.listxattr(fd):
            if name.startswith(("user.", "trusted.")) and name not in self.xattrs:
                os.removexattr(fd, name)
        for name, value in self.xattrs.items():
            os.setxattr(fd, name, value)
        os.utime(fd, ns=(self.atime_ns, self.mtime_ns))


def copy_meta(source: Path, destination: Path, directory: bool, sync: bool = False) -> None:
    """Give destination (not followed) the source's metadata; sync: fsync it, which makes a folder's renames durable."""
    with opened(source, O_READ) as src, opened(destination, O_READ | (os.O_DIRECTORY if directory else 0)) as out:
        FileMeta.read(src).apply(out, directory)
        if sync:
            os.fsync(out)


@contextmanager
def opened(path: Path, flags: int) -> Iterator[int]:
    fd = os.open(path, flags, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)
