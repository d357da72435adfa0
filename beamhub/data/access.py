"""May this user read this path? Decided as the Linux kernel decides it, from the file's real ACL.

This mirrors fs/namei.c and fs/posix_acl.c: the path walk (link_path_walk: search, i.e.
x, on every directory from / down, symlinks followed, may_follow_link for trailing links
when fs.protected_symlinks is on), then inode_permission on the target: sb_permission
(read-only mount), the immutable flag, generic_permission -> acl_permission_check (owner
bits; the ACL only when the mode's group bits, i.e. the mask, are not all clear) ->
posix_acl_permission (named user, then owning and named groups: any matching entry that
grants wins, masked; a match that grants nothing denies) -> other; and for uid 0 the
CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH overrides, then faccessat's noexec check.

Symlinks are followed like the kernel does, so a caller may pass any path; the directories
on the way to the link's target must be searchable too. A relative path is taken from the
process's working directory, walked from / (the caller has no working directory of its own).
Not modelled: LSMs (SELinux, AppArmor), the device cgroup, idmapped mounts, nosymfollow mounts.
The answer is a snapshot: a path that changes while it is checked may get either answer.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import posix1e

_MAXSYMLINKS = 40
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL = 0x10
_PROTECTED_SYMLINKS = Path("/proc/sys/fs/protected_symlinks")


@dataclass(frozen=True)
class Caller:
    """The identity a decision is made for: the UID and every GID (primary + supplementary)."""

    uid: int
    gids: frozenset[int]


def may_access(path: Path, caller: Caller, mode: int = os.R_OK) -> bool:
    """Whether access(2) with mode (R_OK|W_OK|X_OK, or F_OK) would succeed for caller."""
    if mode & ~0o7:
        raise ValueError(f"mode {mode:#o} is not a combination of R_OK, W_OK and X_OK")
    try:
        found = _lookup(os.path.join(os.getcwd(), path), caller)
        return found is not None and _access_target(found[0], found[1], caller, mode)
    except OSError:
        return False  # missing, a loop, or unreadable to beamhub itself: deny


@dataclass(frozen=True)
class Grant:
    """The entry of a file's ACL or mode bits that lets a caller in: owner, user or group (with its ID), other."""

    tag: str
    qualifier: int | None = None


def granting_entry(path: Path, caller: Caller, mode: int = os.R_OK) -> Grant | None:
    """Which entry of path's own ACL (or mode) grants caller mode; None when none does (root may still override).

    It names the entry, it does not decide: the walk to path is may_access's to check.
    """
    return _dac_grant(os.fspath(path), os.stat(path), caller, mode)


def may_read(path: Path, caller: Caller) -> bool:
    """may_access(path, caller, os.R_OK): for a directory that means listing it.

    Entering a directory (opening what it holds) needs x, which may_access(path, caller, os.X_OK) tells.
    """
    return may_access(path, caller, os.R_OK)


class FolderWalks:
    """may_read for the files of a page: each folder's walk (and search on it) decided once, then per file only
    its own lookup and inode_permission; a symlink is walked in full by may_access, as ever.

    Meant for one request: a folder's answer is kept for the checker's life.
    """

    def __init__(self, caller: Caller) -> None:
        self.caller = caller
        self._folders: dict[str, str | None] = {}

    def may_read(self, path: Path) -> bool:
        """may_read(path, caller), the walk to path's folder shared with the other paths of the page."""
        full = os.fspath(path)
        folder, _, name = (full if full.startswith("/") else os.path.join(os.getcwd(), full)).rpartition("/")
        if name in ("", ".", ".."):
            return may_read(path, self.caller)
        real = self._folder(folder or "/")
        if real is None:
            return False
        child = os.path.join(real, name)
        try:
            child_st = os.lstat(child)
            if stat.S_ISLNK(child_st.st_mode):
                return may_read(path, self.caller)
            return _access_target(child, child_st, self.caller, os.R_OK)
        except OSError:
            return False

    def walks(self) -> int:
        """How many folders were walked from / so far."""
        return len(self._folders)

    def _folder(self, folder: str) -> str | None:
        """The symlink-free folder if the caller may walk to it and search it (its "/." as the kernel looks it up)."""
        if folder not in self._folders:
            try:
                found = _lookup(f"{folder}/.", self.caller)
            except OSError:
                found = None
            self._folders[folder] = None if found is None else found[0]
        return self._folders[folder]


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
    if want & os.W_OK and not _is_special(st) and os.statvfs(path).f_flag & os.ST_RDONLY:
        return False
    if want & os.W_OK and _is_immutable(path, st):
        return False
    if _dac_grant(path, st, caller, want) is not None:
        return True
    return caller.uid == 0 and _root_overrides(st, want)


def _root_overrides(st: os.stat_result, want: int) -> bool:
    """CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: all but x on a non-directory with no x bit at all."""
    if stat.S_ISDIR(st.st_mode):
        return True
    return not want & os.X_OK or bool(st.st_mode & 0o111)


def _dac_grant(path: str, st: os.stat_result, caller: Caller, want: int) -> Grant | None:
    """acl_permission_check: the owner's bits, else the ACL (if the mask grants anything), else group/other bits."""
    mode = st.st_mode
    if caller.uid == st.st_uid:
        return Grant("owner") if not want & ~(mode >> 6) & 0o7 else None
    if mode & stat.S_IRWXG:
        acl = _extended_acl(path)
        if acl is not None:
            return _posix_acl_grant(acl, st, caller, want)
    if want & (mode ^ (mode >> 3)) & 0o7 and st.st_gid in caller.gids:
        return Grant("group", st.st_gid) if not want & ~(mode >> 3) & 0o7 else None
    return Grant("other") if not want & ~mode & 0o7 else None


def _extended_acl(path: str) -> posix1e.ACL | None:
    """The access ACL if path has one beyond its mode bits (the kernel's check_acl gives -EAGAIN otherwise)."""
    try:
        if not posix1e.has_extended(path):
            return None
    except OSError:
        return None  # the filesystem does not support ACLs
    return posix1e.ACL(file=path)


def _posix_acl_grant(acl: posix1e.ACL, st: os.stat_result, caller: Caller, want: int) -> Grant | None:
    """posix_acl_permission for a caller who is not the owner: the named user, else the first matching group
    entry that grants (any match that grants nothing denies), else other; named user and groups masked."""
    mask, other = 0o7, 0
    user: int | None = None
    groups: list[tuple[int, int]] = []
    for entry in acl:
        bits = _bits(entry.permset)
        if entry.tag_type == posix1e.ACL_USER and entry.qualifier == caller.uid:
            user = bits
        elif entry.tag_type == posix1e.ACL_GROUP_OBJ and st.st_gid in caller.gids:
            groups.append((st.st_gid, bits))
        elif entry.tag_type == posix1e.ACL_GROUP and entry.qualifier in caller.gids:
            groups.append((entry.qualifier, bits))
        elif entry.tag_type == posix1e.ACL_MASK:
            mask = bits
        elif entry.tag_type == posix1e.ACL_OTHER:
            other = bits
    if user is not None:
        return Grant("user", caller.uid) if want & user & mask == want else None
    if groups:
        granting = (Grant("group", gid) for gid, bits in groups if want & bits == want)
        return next(granting, None) if want & mask == want else None
    return Grant("other") if want & other == want else None


def _bits(permset: posix1e.Permset) -> int:
    return permset.read << 2 | permset.write << 1 | permset.execute


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
