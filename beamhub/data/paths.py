"""Paths that come from requests, confined to the storage root.

A request path is refused before it touches the file system when its text could escape: an
absolute path, a `..` component, a NUL, a backslash, or a percent-encoded dot, slash,
backslash or NUL that some layer forgot (or will later try) to decode. What remains is
resolved with every symlink followed; a result outside the root answers NotFound, exactly
as a missing file does, so probing learns nothing about what lies outside. A symlink whose
target stays inside the root is allowed: the caller decides access on the returned real
path, so the target's own ACL is the one that counts.

open_readable finds a file and decides the caller's read in one walk: from / down, each directory opened
relative to the one before (O_NOFOLLOW) and its search right checked as the caller on that very inode, then
the file opened and its read right checked through the descriptor that is returned, so what was decided is
what is read. A symlink anywhere on the way sends the request to the full walk (resolve_inside, then the
same descriptor walk along the real path, where no symlink may appear any more).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from beamhub.data.access import Caller, fd_permission
from beamhub.errors import Invalid, NotFound

_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO opens at once (and is refused as no regular file); users cannot make device nodes.
_ENTRY = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _Detour(Exception):
    """A symlink (or a '.' or '..' in the root's own path) on the way: the descriptor walk does not follow it."""


def check_relative(relative: str) -> list[str]:
    """The components of a request path; Invalid if its text could leave the directory it is joined to."""
    if "\x00" in relative or "\\" in relative:
        raise Invalid("path must not contain NUL or backslash")
    if _ENCODED_SEPARATOR.search(relative):
        raise Invalid("path must not contain percent-encoded dots, slashes, backslashes or NUL")
    if relative.startswith("/"):
        raise Invalid("path must be relative")
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Invalid("path must not contain '..'")
    return parts


def is_inside(root: Path, path: Path) -> bool:
    """Whether `path` is `root` or lies below it (both taken as given, no resolution)."""
    return path == root or root in path.parents


def resolve_inside(root: Path, relative: str) -> Path:
    """The real path of `relative` under `root`; Invalid if its text escapes, NotFound if missing or outside."""
    parts = check_relative(relative)
    real_root = Path(os.path.realpath(root, strict=True))
    try:
        real = Path(os.path.realpath(real_root.joinpath(*parts), strict=True))
    except (OSError, RuntimeError):
        raise NotFound("no such file: %(file)s", file=relative) from None
    if not is_inside(real_root, real):
        raise NotFound("no such file: %(file)s", file=relative)
    return real


def open_readable(root: Path, relative: str, caller: Caller) -> int:
    """A read-only descriptor of the regular file `relative` names under `root`, if the caller may read it (every
    directory from / searchable, the file readable, as the kernel decides); Invalid if the text escapes, else
    NotFound as resolve_inside and may_read would answer."""
    parts = check_relative(relative)
    try:
        return _open_walked([*_plain_components(root), *parts], caller, relative)
    except _Detour:
        real = resolve_inside(root, relative)  # symlinks followed, the answer confined to the root's real path
    try:
        return _open_walked(_plain_components(real), caller, relative)
    except _Detour:  # a symlink appeared since: refuse rather than chase it
        raise NotFound("no such file: %(file)s", file=relative) from None


def _plain_components(path: Path) -> list[str]:
    """The components of an absolute path with no '.' or '..' in it; _Detour otherwise."""
    text = os.fspath(path)
    parts = [part for part in text.split("/") if part]
    if not text.startswith("/") or "." in parts or ".." in parts:
        raise _Detour
    return parts


def _open_walked(names: list[str], caller: Caller, relative: str) -> int:
    """Walk `names` from / by descriptors, each directory searchable by the caller, to a regular file they may read."""
    fd = os.open("/", _DIRECTORY)
    try:
        st = os.fstat(fd)
        for index, name in enumerate(names):
            if not _permitted(fd, st, caller, os.X_OK):
                raise NotFound("no such file: %(file)s", file=relative)
            child = _open_child(fd, name, index == len(names) - 1, relative)
            os.close(fd)
            fd = child
            st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _permitted(fd, st, caller, os.R_OK):
            raise NotFound("no such file: %(file)s", file=relative)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _permitted(fd: int, st: os.stat_result, caller: Caller, want: int) -> bool:
    """fd_permission, refused when the inode changed while its ACL was read or the ACL is unreadable (as may_access)."""
    try:
        return fd_permission(fd, st, caller, want)
    except (OSError, ValueError):
        return False


def _open_child(folder: int, name: str, last: bool, relative: str) -> int:
    """`name` in the folder open as `folder`, never through a symlink (_Detour if it is one); NotFound if missing."""
    try:
        return os.open(name, _ENTRY if last else _DIRECTORY, dir_fd=folder)
    except OSError:
        pass  # missing, no folder, a symlink (ELOOP, or ENOTDIR with O_DIRECTORY), a socket...: as may_access, no 500
    try:
        is_link = stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        is_link = False
    if is_link:
        raise _Detour
    raise NotFound("no such file: %(file)s", file=relative)
