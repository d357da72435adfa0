"""Hard links: a regular file with more than one name shares one inode, and so one ACL, with its other names.

Those names may lie in another proposal (a link made into this proposal's folder from another
one's): setting the ACL through one name would hand the other proposal's bytes to this one's
members and take them from their own. So registration and member changes set the ACL of a file
with st_nlink > 1 only once the proposal's folder is shown to hold every one of its names, found
by their directory entries' inode numbers, each confirmed by its lstat; any other is refused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

Key = tuple[int, int]
"""(st_dev, st_ino): one inode."""
Proven = Mapping[Key, int]
"""Key -> st_nlink of the hard-linked files whose every name was found inside the proposal's folder."""
NONE_PROVEN: Proven = {}
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Linked(NamedTuple):
    """A regular file with more names than proven inside the proposal: its ACL is left alone."""

    name: str
    key: Key
    nlink: int


def may_set(info: os.stat_result, proven: Proven) -> bool:
    """Whether an entry's ACL may be set: it has one name, is not a regular file, or all its names are proven."""
    if info.st_nlink < 2 or not stat.S_ISREG(info.st_mode):
        return True
    return proven.get((info.st_dev, info.st_ino)) == info.st_nlink


def linked(name: str, info: os.stat_result) -> Linked:
    """The Linked of an entry `may_set` refused."""
    return Linked(name, (info.st_dev, info.st_ino), info.st_nlink)


def count_names(root: Path, keys: set[Key]) -> dict[Key, int]:
    """How many distinct names each of these inodes has in root's tree: a name is (its folder's inode, its
    name), so a folder reached twice (a bind mount) counts once; symlinks and unreadable folders are not followed."""
    names: dict[Key, set[tuple[Key, str]]] = {}
    inodes = {ino for _, ino in keys}
    folders: set[Key] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            fd = os.open(folder, _OPEN_DIR)
        except OSError:  # gone, replaced by a symlink, or unreadable: its names are not counted
            continue
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) in folders:
                continue
            folders.add((info.st_dev, info.st_ino))
            with os.scandir(fd) as scan:
                for entry in scan:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(folder / entry.name)
                    elif entry.inode() in inodes and entry.is_file(follow_symlinks=False):
                        _add_name(names, keys, (info.st_dev, info.st_ino), entry)
        finally:
            os.close(fd)
    return {key: len(found) for key, found in names.items()}


def _add_name(names: dict[Key, set[tuple[Key, str]]], keys: set[Key], folder: Key, entry: os.DirEntry[str]) -> None:
    """Count one directory entry whose inode number matches, if its lstat says it is one of the inodes."""
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return
    key = (info.st_dev, info.st_ino)
    if key in keys:
        names.setdefault(key, set()).add((folder, entry.name))


def proven_links(root: Path, files: Iterable[Linked]) -> dict[Key, int]:
    """Of these hard-linked files, the inodes (with their st_nlink) whose every name lies in root's tree."""
    wanted = {file.key: file.nlink for file in files}
    if not wanted:
        return {}
    names = count_names(root, set(wanted))
    return {key: nlink for key, nlink in wanted.items() if names.get(key) == nlink}
