"""POSIX ACLs of proposal data: who may read it, written on every file and directory of a tree.

The ACL a path gets REPLACES whatever it had (a removed member loses their entry):

    user::<owner bits>   the owner (the DAQ account) keeps the bits its mode gives it
    user:<uid>:r-x       each member: r-- on files, r-x on directories (enter and list)
    group::---           owning a file grants its group nothing: deny by default, the
                         beamline staff group reads through its own named entry
    group:<gid>:r-x      beamline staff, the 'everyone' group once the embargo is lifted
    mask::r-x            union of the named entries and group:: (absent when nobody is named)
    other::---

Nobody named gets w. A directory gets the same ACL as its default ACL, so what the DAQ
writes into it later inherits the same readers.

A regular file with more than one name (st_nlink > 1) shares its inode, and so its ACL, with its
other names, which may lie in another proposal: its ACL is set only once every name of it is
found inside the proposal's folder (see links.py), and left alone otherwise.

ACLs are written as the kernel's own xattr value (`linux/posix_acl_xattr.h`: version 2, then
little-endian (tag u16, perm u16, id u32) entries ordered by tag and id), built once per owner
bits and set with one fsetxattr on the entry, opened (never through a symlink) relative to its
directory's fd (measured: 1.2 µs, where a setxattr by its /proc path took 9.4 µs), and the
registration reads the file's bytes through the same fd. pylibacl reads them.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import struct
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import posix1e

from beamhub.data.access import ACCESS_XATTR, ACL_XATTR_VERSION, GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ
from beamhub.data.links import NONE_PROVEN, Linked, Proven, linked, may_set, proven_links
from beamhub.errors import Invalid, NotFound

log = logging.getLogger(__name__)

_BATCH = 256
DEFAULT_XATTR = "system.posix_acl_default"
_NO_ID = 0xFFFFFFFF
_OPEN_ENTRY = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class AccessList:
    """Who may read a proposal's data: member UIDs and group GIDs (beamline staff, embargo-lifted 'everyone' group)."""

    users: frozenset[int]
    groups: frozenset[int]


def acl_xattr(access: AccessList, owner_bits: int, directory: bool) -> bytes:
    """The ACL of the module docstring for one owner's bits (0-7), as the kernel's xattr value."""
    reader = 0o5 if directory else 0o4
    entries = [(USER_OBJ, owner_bits, _NO_ID)]
    entries += [(USER, reader, uid) for uid in sorted(access.users)]
    entries.append((GROUP_OBJ, 0, _NO_ID))
    entries += [(GROUP, reader, gid) for gid in sorted(access.groups)]
    if access.users or access.groups:
        entries.append((MASK, reader, _NO_ID))
    entries.append((OTHER, 0, _NO_ID))
    return struct.pack("<I", ACL_XATTR_VERSION) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def set_path_acl(path: Path, access: AccessList) -> None:
    """Replace the ACL of one regular file or directory (never through a symlink)."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound("%(path)s does not exist", path=path) from None
    try:
        try:
            os.stat(path.name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound("%(path)s does not exist", path=path) from None
        done = set_entry_acl(fd, path.name, AclValues(access))
        if isinstance(done, Linked):
            raise Invalid("%(path)s has %(nlink)s hard links, perhaps from another proposal; its ACL is left alone",
                          path=path, nlink=done.nlink)
        if not done:
            raise Invalid("%(path)s is not a regular file or directory; its ACL is left alone", path=path)
    finally:
        os.close(fd)


def set_tree_acl(root: Path, access: AccessList, progress: Callable[[int], None] | None = None,
                 workers: int = 1) -> int:
    """Replace the ACL of every directory and regular file under root (root included); return how many.

    Symlinks are skipped and never followed, whatever they point at. progress(done) is
    called from this thread with the running total; the last call gets the returned count.
    The root goes first and alone: every lookup from / needs search on it, so a removed
    member is shut out of new path lookups at once (a process already inside the tree, by
    its working directory or an open file, keeps what it has until the walk reaches it).
    On local ext4 one worker is fastest (Python's own work holds the GIL between the system
    calls); more workers overlap the calls themselves, which can pay on a network filesystem.
    """
    mode = _lstat(root).st_mode
    if stat.S_ISLNK(mode):
        raise Invalid("%(root)s is a symbolic link; set the ACLs on the real tree", root=root)
    set_path_acl(root, access)
    done = 1
    _report(progress, done)
    if not stat.S_ISDIR(mode):
        return done
    pending: deque[Future[tuple[int, list[Linked]]]] = deque()
    held: list[Linked] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="acl") as pool:
        for folder, names, dirfd in _batches(root):
            pending.append(pool.submit(_apply_batch, os.dup(dirfd), folder, names, access))
            while len(pending) > 2 * workers:
                done += _collect(pending.popleft(), held)
                _report(progress, done)
        while pending:
            done += _collect(pending.popleft(), held)
            _report(progress, done)
    done += _settle_links(root, held, access)
    _report(progress, done)
    return done


def _collect(batch: Future[tuple[int, list[Linked]]], held: list[Linked]) -> int:
    """How many ACLs a finished batch set; the hard-linked files it left alone are added to `held`."""
    count, linked_files = batch.result()
    held += linked_files
    return count


def _settle_links(root: Path, held: list[Linked], access: AccessList) -> int:
    """Set the ACL of the held hard-linked files whose every name is in root's tree; log the others. How many set."""
    proven = proven_links(root, held)
    values = AclValues(access)
    count = 0
    for file in held:
        done = _set_by_path(Path(file.name), values, proven) if file.key in proven else file
        if isinstance(done, Linked):
            log.warning("ACL left alone: %s has %d hard links, not all inside %s", file.name, done.nlink, root)
        else:
            count += done
    return count


def _set_by_path(path: Path, values: AclValues, proven: Proven) -> bool | Linked:
    """set_entry_acl of a path whose folder is opened without following a symlink; False if it is gone."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return set_entry_acl(fd, path.name, values, proven)
    finally:
        os.close(fd)


def read_access(path: Path) -> AccessList:
    """The named users and groups whose entry, after the mask, grants read on path's access ACL.

    Only named entries count: the owner, the owning group and other are not reported.
    """
    acl = posix1e.ACL(file=os.fspath(path))
    entries = list(acl)
    mask = next((e.permset.read for e in entries if e.tag_type == posix1e.ACL_MASK), True)
    readers = [e for e in entries if e.permset.read and mask]
    return AccessList(users=frozenset(e.qualifier for e in readers if e.tag_type == posix1e.ACL_USER),
                      groups=frozenset(e.qualifier for e in readers if e.tag_type == posix1e.ACL_GROUP))


class AclValues:
    """The xattr values of one access list, one per (directory?, owner bits), built on first use."""

    def __init__(self, access: AccessList) -> None:
        self.access = access
        self._values: dict[tuple[bool, int], bytes] = {}

    def get(self, directory: bool, owner_bits: int) -> bytes:
        key = (directory, owner_bits)
        if key not in self._values:
            self._values[key] = acl_xattr(self.access, owner_bits, directory)
        return self._values[key]


def open_entry(dirfd: int, name: str) -> int | None:
    """An fd on the entry `name` of directory dirfd, to read it and set its ACL; never a symlink's target.
    None if it is gone, a symlink or a socket. A FIFO opens without waiting (and its fstat says what it is)."""
    try:
        return os.open(name, _OPEN_ENTRY, dir_fd=dirfd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            return None
        raise


def set_acl_xattrs(target: int | str, mode: int, values: AclValues) -> bool:
    """Set the ACL (and a directory's default ACL) of target: an fd, or a path whose final component is
    not followed; its stat mode is `mode`. False, and nothing set, if it is neither a directory nor a regular file."""
    directory = stat.S_ISDIR(mode)
    if not (directory or stat.S_ISREG(mode)):
        return False
    value = values.get(directory, (mode >> 6) & 0o7)
    follow = isinstance(target, int)  # an fd is the file itself (and refuses follow_symlinks=False)
    os.setxattr(target, ACCESS_XATTR, value, follow_symlinks=follow)
    if directory:
        os.setxattr(target, DEFAULT_XATTR, value, follow_symlinks=follow)
    return True


def set_entry_acl(dirfd: int, name: str, values: AclValues, proven: Proven = NONE_PROVEN) -> bool | Linked:
    """Set the ACL of the entry `name` of directory dirfd, never through a symlink. False if it is neither a
    directory nor a regular file, or is gone; its Linked, and nothing set, if links.may_set refuses it."""
    try:
        fd = open_entry(dirfd, name)
    except PermissionError:  # not root, and the owner's own bits refuse reading: set it by name
        info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        if not may_set(info, proven):
            return linked(name, info)
        # dirfd's /proc link names this very directory; the final name is not followed.
        return set_acl_xattrs(f"/proc/self/fd/{dirfd}/{name}", info.st_mode, values)
    if fd is None:
        return False
    try:
        info = os.fstat(fd)
        return set_acl_xattrs(fd, info.st_mode, values) if may_set(info, proven) else linked(name, info)
    finally:
        os.close(fd)


def _apply_batch(dirfd: int, folder: str, names: Iterable[str], access: AccessList) -> tuple[int, list[Linked]]:
    """Set the ACL of each name inside dirfd (closed at the end), the folder `folder`: how many were set, and
    the hard-linked files left alone (by their path)."""
    values = AclValues(access)
    count = 0
    held: list[Linked] = []
    try:
        for name in names:
            done = set_entry_acl(dirfd, name, values)  # False for one removed while we walked
            if isinstance(done, Linked):
                held.append(done._replace(name=os.path.join(folder, name)))
            else:
                count += done
    finally:
        os.close(dirfd)
    return count, held


def _batches(root: Path) -> Iterable[tuple[str, list[str], int]]:
    """(folder, names, dirfd) for the entries of every real directory under root, a batch at a time."""
    walk = os.fwalk(root, follow_symlinks=False, onerror=_raise)
    with closing(walk):
        for folder, dirs, files, dirfd in walk:
            names = dirs + files
            for start in range(0, len(names), _BATCH):
                yield folder, names[start:start + _BATCH], dirfd


def _lstat(path: Path) -> os.stat_result:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        raise NotFound("%(path)s does not exist", path=path) from None


def _raise(error: OSError) -> None:
    if not isinstance(error, FileNotFoundError):  # a directory removed while we walked is no error
        raise error


def _report(progress: Callable[[int], None] | None, done: int) -> None:
    if progress is not None:
        progress(done)
