"""May this user read this path? Decided as the Linux kernel decides it, from the file's real ACL.

This mirrors fs/namei.c and fs/posix_acl.c: the path walk (link_path_walk: search, i.e.
x, on every directory from / down, symlinks followed, may_follow_link for trailing links
when fs.protected_symlinks is on), then inode_permission on the target: sb_permission
(read-only mount), the immutable flag, generic_permission -> acl_permission_check (owner
bits; the ACL only when the mode's group bits, i.e. the mask, are not all clear) ->
posix_acl_permission (named user, then owning and named groups: any matching entry that
grants wins, masked; a match that grants nothing denies) -> other; and for uid 0 the
CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH overrides, then faccessat's noexec check.

The ACL is the kernel's own xattr value (`linux/posix_acl_xattr.h`: version 2, then little-endian entries of
tag u16, perm u16, id u32), read only when the answer can depend on it, and taken only if a stat after the
read shows the same inode unchanged (same inode, ctime, mode, owner): a file that changes under the check is
refused. Symlinks are followed like the kernel does, so a caller may pass any path; the directories
on the way to the link's target must be searchable too. A relative path is taken from the
process's working directory, walked from / (the caller has no working directory of its own).
Not modelled: LSMs (SELinux, AppArmor), the device cgroup, idmapped mounts, nosymfollow mounts.
The answer is a snapshot: a path that changes while it is checked may get either answer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ACCESS_XATTR = "system.posix_acl_access"
ACL_XATTR_VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_ENTRY = struct.Struct("<HHI")
_MAXSYMLINKS = 40
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL = 0x10
_PROTECTED_SYMLINKS = Path("/proc/sys/fs/protected_symlinks")
_NO_ACL = (errno.ENODATA, errno.EOPNOTSUPP)
_FOLDER = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

AclEntries = list[tuple[int, int, int]]
Restat = Callable[[], os.stat_result]


@dataclass(frozen=True)
class Caller:
    """The identity a decision is made for: the UID and every GID (primary + supplementary)."""

    uid: int
    gids: frozenset[int]


@dataclass(frozen=True)
class Grant:
    """The entry of a file's ACL or mode bits that lets a caller in: owner, user or group (with its ID), other."""

    tag: str
    qualifier: int | None = None


class Changed(OSError):
    """The file changed between its stat and the read of its ACL: no answer is taken from the mix."""


def parse_acl(value: bytes) -> AclEntries:
    """(tag, perm, id) of each entry of an ACL xattr value; ValueError if it is not one."""
    if len(value) < 4 or (len(value) - 4) % _ENTRY.size or int.from_bytes(value[:4], "little") != ACL_XATTR_VERSION:
        raise ValueError("not a POSIX ACL xattr value (version 2)")
    return list(_ENTRY.iter_unpack(memoryview(value)[4:]))


def may_access(path: Path | str, caller: Caller, mode: int = os.R_OK) -> bool:
    """Whether access(2) with mode (R_OK|W_OK|X_OK, or F_OK) would succeed for caller."""
    if mode & ~0o7:
        raise ValueError(f"mode {mode:#o} is not a combination of R_OK, W_OK and X_OK")
    try:
        found = _lookup(os.path.join(os.getcwd(), path), caller)
        return found is not None and _access_target(found[0], found[1], caller, mode)
    except (OSError, ValueError):
        return False  # missing, a loop, changed under the check, or unreadable to beamhub itself: deny


def granting_entry(path: Path, caller: Caller, mode: int = os.R_OK) -> Grant | None:
    """Which entry of path's own ACL (or mode) grants caller mode; None when none does (root may still override).

    It names the entry, it does not decide: the walk to path is may_access's to check.
    """
    full = os.fspath(path)
    st = os.stat(full)
    return _dac_grant(st, caller, mode, lambda: _read_acl(full, st, lambda: os.stat(full), follow=True))


def fd_permission(fd: int, st: os.stat_result, caller: Caller, want: int, tries: int = 10) -> bool:
    """inode_permission(want) of the inode open (not O_PATH) as fd, whose fstat is st: read or search only.

    The ACL is read through fd and taken only if fstat still shows st; else (a folder's ctime moves with every
    file made in it) it is decided again from a new fstat, `tries` times in all, then Changed. The walk to the
    inode is the caller's to check.
    """
    if want & ~(os.R_OK | os.X_OK):
        raise ValueError("fd_permission decides read and search; write needs the mount's and the inode's flags")
    for _ in range(tries - 1):
        try:
            return _fd_permission(fd, st, caller, want)
        except Changed:
            st = os.fstat(fd)
    return _fd_permission(fd, st, caller, want)


def _fd_permission(fd: int, st: os.stat_result, caller: Caller, want: int) -> bool:
    if _dac_grant(st, caller, want, lambda: _read_acl(fd, st, lambda: os.fstat(fd), follow=True)) is not None:
        return True
    return caller.uid == 0 and _root_overrides(st, want)


def may_read(path: Path | str, caller: Caller) -> bool:
    """may_access(path, caller, os.R_OK): for a directory that means listing it.

    Entering a directory (opening what it holds) needs x, which may_access(path, caller, os.X_OK) tells.
    """
    return may_access(path, caller, os.R_OK)


@dataclass(frozen=True)
class _Folder:
    """A folder the caller may search: its symlink-free path and an fd pinning the very inode that was walked."""

    real: str
    fd: int


class FolderWalks:
    """may_read for the files of a page: each folder's walk (and search on it) decided once, then per file one
    fstatat relative to the folder's fd and, only when the answer depends on it, its ACL xattr (each distinct
    ACL evaluated once); a symlink is walked in full by may_access, as ever.

    Meant for one request: a folder's answer is kept (and its fd open) for the checker's life.
    """

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self._folders: dict[str, _Folder | None] = {}
        self._fds: list[int] = []
        self._decided: dict[tuple[bytes, int, int, int], bool] = {}
        weakref.finalize(self, _close_all, self._fds)

    def may_read(self, path: Path | str) -> bool:
        """may_read(path, caller), the walk to path's folder shared with the other paths of the page."""
        full = os.fspath(path)
        parent, _, name = (full if full.startswith("/") else os.path.join(os.getcwd(), full)).rpartition("/")
        if name in ("", ".", ".."):
            return may_read(path, self.caller)
        folder = self._folder(parent or "/")
        if folder is None:
            return False
        try:
            st = os.stat(name, dir_fd=folder.fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return may_read(path, self.caller)
            return self._may_read_entry(folder, name, st)
        except (OSError, ValueError):
            return False

    def walks(self) -> int:
        """How many folders were walked from / so far."""
        return len(self._folders)

    def _may_read_entry(self, folder: _Folder, name: str, st: os.stat_result) -> bool:
        """inode_permission(R) of a folder's entry from its fstatat; the ACL read only if the answer needs it."""
        caller = self.caller
        if caller.uid == 0 or caller.uid == st.st_uid or not _acl_may_matter(st, os.R_OK):
            return _dac_grant(st, caller, os.R_OK, _no_acl) is not None or caller.uid == 0
        value = _read_acl(f"/proc/self/fd/{folder.fd}/{name}", st,  # through the pinned folder, as the restat
                          lambda: os.stat(name, dir_fd=folder.fd, follow_symlinks=False), follow=False)
        key = (value or b"", st.st_mode, st.st_uid, st.st_gid)
        if key not in self._decided:
            self._decided[key] = _dac_grant(st, caller, os.R_OK, lambda: value) is not None
        return self._decided[key]

    def _folder(self, folder: str) -> _Folder | None:
        """The folder if the caller may walk to it and search it (its "/." as the kernel looks it up)."""
        if folder not in self._folders:
            self._folders[folder] = self._open(folder)
        return self._folders[folder]

    def _open(self, folder: str) -> _Folder | None:
        try:
            found = _lookup(f"{folder}/.", self.caller)
            if found is None:
                return None
            fd = os.open(found[0], _FOLDER)
        except (OSError, ValueError):
            return None
        self._fds.append(fd)
        opened = os.fstat(fd)
        same = (opened.st_dev, opened.st_ino) == (found[1].st_dev, found[1].st_ino)
        return _Folder(found[0], fd) if same else None


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _lookup(path: str, caller: Caller) -> tuple[str, os.stat_result] | None:
    """Walk path from / as the kernel does for caller; the symlink-free target and its stat, or None."""
    todo = deque(_components(path))
    must_be_dir = path.endswith("/")
    current, current_st = "/", os.stat("/")
    links = 0
    while todo:
        name = todo.popleft()
        if not _inode_permission(current, current_st, caller, os.X_OK):
            return None
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            current_st = os.stat(current)
            continue
        child = os.path.join(current, name)
        child_st = os.lstat(child)
        if stat.S_ISLNK(child_st.st_mode):
            links += 1
            if links > _MAXSYMLINKS or (not todo and not _may_follow_link(current_st, child_st, caller)):
                return None
            target = os.readlink(child)
            if target.startswith("/"):
                current, current_st = "/", os.stat("/")
            todo.extendleft(reversed(_components(target)))
            continue
        if (todo or must_be_dir) and not stat.S_ISDIR(child_st.st_mode):
            return None
        current, current_st = child, child_st
    return current, current_st


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _may_follow_link(parent: os.stat_result, link: os.stat_result, caller: Caller) -> bool:
    """fs.protected_symlinks: no following another's link in a sticky world-writable directory."""
    if caller.uid == link.st_uid or parent.st_uid == link.st_uid:
        return True
    if parent.st_mode & (stat.S_ISVTX | stat.S_IWOTH) != stat.S_ISVTX | stat.S_IWOTH:
        return True
    return _PROTECTED_SYMLINKS.read_text().strip() == "0"


def _access_target(path: str, st: os.stat_result, caller: Caller, mode: int) -> bool:
    """faccessat's checks on the looked-up target: noexec mounts, then inode_permission."""
    if mode & os.X_OK and stat.S_ISREG(st.st_mode) and os.statvfs(path).f_flag & os.ST_NOEXEC:
        return False
    return _inode_permission(path, st, caller, mode)


def _inode_permission(path: str, st: os.stat_result, caller: Caller, want: int) -> bool:
    """inode_permission of a symlink-free path whose lstat is st."""
    if want & os.W_OK and not _is_special(st) and os.statvfs(path).f_flag & os.ST_RDONLY:
        return False
    if want & os.W_OK and _is_immutable(path, st):
        return False
    if _dac_grant(st, caller, want, lambda: _read_acl(path, st, lambda: os.lstat(path), follow=False)) is not None:
        return True
    return caller.uid == 0 and _root_overrides(st, want)


def _root_overrides(st: os.stat_result, want: int) -> bool:
    """CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: all but x on a non-directory with no x bit at all."""
    if stat.S_ISDIR(st.st_mode):
        return True
    return not want & os.X_OK or bool(st.st_mode & 0o111)


def _acl_may_matter(st: os.stat_result, want: int) -> bool:
    """Whether an access ACL could change the answer for a caller who is not the owner.

    The kernel reads it only when the mode's group bits (the mask) are not all clear; and where neither the
    group bits (capping named users and groups) nor other grant `want`, nobody but the owner gets it anyway.
    """
    group, other = (st.st_mode >> 3) & 0o7, st.st_mode & 0o7
    return bool(group) and (want & group == want or want & other == want)


def _dac_grant(st: os.stat_result, caller: Caller, want: int, acl: Callable[[], bytes | None]) -> Grant | None:
    """acl_permission_check: the owner's bits, else the ACL (if the mask grants anything), else group/other bits.

    `acl` reads the access ACL's xattr value (None: it has none); it is called only when the answer needs it.
    """
    mode = st.st_mode
    if caller.uid == st.st_uid:
        return Grant("owner") if not want & ~(mode >> 6) & 0o7 else None
    if _acl_may_matter(st, want):
        value = acl()
        if value is not None:
            return _posix_acl_grant(parse_acl(value), st, caller, want)
    if want & (mode ^ (mode >> 3)) & 0o7 and st.st_gid in caller.gids:
        return Grant("group", st.st_gid) if not want & ~(mode >> 3) & 0o7 else None
    return Grant("other") if not want & ~mode & 0o7 else None


def _no_acl() -> None:
    """The ACL reader for answers the mode alone decides."""
    return None


def _read_acl(path: str | int, st: os.stat_result, restat: Restat, follow: bool) -> bytes | None:
    """path's (or an fd's) access ACL xattr value, None if it has none; Changed if restat shows it changed since st
    was taken."""
    try:
        value: bytes | None = os.getxattr(path, ACCESS_XATTR, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno not in _NO_ACL:
            raise
        value = None  # no ACL beyond the mode, or a filesystem without ACLs
    now = restat()
    if (now.st_ino, now.st_dev, now.st_ctime_ns, now.st_mode, now.st_uid, now.st_gid) != (
            st.st_ino, st.st_dev, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid):
        raise Changed(errno.EAGAIN, "changed while its ACL was read", path)
    return value


def _posix_acl_grant(entries: AclEntries, st: os.stat_result, caller: Caller, want: int) -> Grant | None:
    """posix_acl_permission for a caller who is not the owner: the named user, else the first matching group
    entry that grants (any match that grants nothing denies), else other; named user and groups masked."""
    mask, other = 0o7, 0
    user: int | None = None
    groups: list[tuple[int, int]] = []
    for tag, bits, qualifier in entries:
        if tag == USER and qualifier == caller.uid:
            user = bits
        elif tag == GROUP_OBJ and st.st_gid in caller.gids:
            groups.append((st.st_gid, bits))
        elif tag == GROUP and qualifier in caller.gids:
            groups.append((qualifier, bits))
        elif tag == MASK:
            mask = bits
        elif tag == OTHER:
            other = bits
    if user is not None:
        return Grant("user", caller.uid) if want & user & mask == want else None
    if groups:
        granting = (Grant("group", gid) for gid, bits in groups if want & bits == want)
        return next(granting, None) if want & mask == want else None
    return Grant("other") if want & other == want else None


def _is_special(st: os.stat_result) -> bool:
    return not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode))


def _is_immutable(path: str, st: os.stat_result) -> bool:
    """The inode's immutable attribute (chattr +i): nobody, not even root, gets write."""
    if _is_special(st):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return False
    try:
        flags = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8))
    except OSError:
        return False  # the filesystem has no such attributes
    finally:
        os.close(fd)
    return bool(struct.unpack_from("i", flags)[0] & _FS_IMMUTABLE_FL)
