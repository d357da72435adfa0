"""The entries a migration moves, one at a time: names of half-written copies, symbolic links recreated, whether
a destination already holds a source's entry, and removals that tolerate what is already gone."""

from __future__ import annotations

import hashlib
import os
import stat
from contextlib import suppress
from pathlib import Path

PARTIAL_PREFIX = ".beamhub-partial."
"""A file being copied is named this plus a digest of its name: always a valid name, recognised after a crash."""


class Unverified(Exception):
    """One entry cannot be copied faithfully; the message says why."""


def copy_symlink(source: Path, destination: Path) -> bool:
    """Recreate a symbolic link (never followed) with its owner and times, by rename; False if it was there."""
    info, target = os.lstat(source), os.readlink(source)
    present = os.path.islink(destination) and os.readlink(destination) == target
    if present:
        partial = destination
    else:
        if is_real_dir(destination):
            raise Unverified("the destination holds a folder of that name")
        partial = destination.parent / partial_name(destination.name)
        unlink_quietly(partial)
        os.symlink(target, partial)
    os.chown(partial, info.st_uid, info.st_gid, follow_symlinks=False)
    os.utime(partial, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
    if not present:
        os.rename(partial, destination)
    return not present


def same_entry(source: Path, destination: Path) -> bool:
    """Whether the destination holds the source's file (same size and mtime) or link (same target)."""
    try:
        src, dst = os.lstat(source), os.lstat(destination)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(src.st_mode):
        return stat.S_ISLNK(dst.st_mode) and os.readlink(source) == os.readlink(destination)
    return (stat.S_ISREG(src.st_mode) and stat.S_ISREG(dst.st_mode)
            and (src.st_size, src.st_mtime_ns) == (dst.st_size, dst.st_mtime_ns))


def entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as scan:
        return sorted(scan, key=lambda entry: entry.name)


def partial_name(name: str) -> str:
    return PARTIAL_PREFIX + hashlib.sha256(os.fsencode(name)).hexdigest()[:32]


def remove_partials(folder: Path) -> None:
    """Delete what a killed copy left half-written in this folder."""
    for name in os.listdir(folder):
        if name.startswith(PARTIAL_PREFIX):
            unlink_quietly(folder / name)


def unlink_quietly(path: Path) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
