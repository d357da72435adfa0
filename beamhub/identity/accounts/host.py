"""System accounts kept in step with beamhub's users (useradd/groupadd), idempotently."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import subprocess
from pathlib import Path

from beamhub.errors import Conflict, HostRefused
from beamhub.locks import HOST_ACCOUNTS, HostLock

log = logging.getLogger(__name__)


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        log.error("%s failed (status %d): %s", " ".join(argv), result.returncode,
                  result.stderr.strip() or result.stdout.strip())
        raise HostRefused("%(program)s failed on this host; the server's log says why", program=argv[0])


HOST = HostLock(HOST_ACCOUNTS)
"""Held while a process checks and changes the host's accounts and groups: two requests would otherwise both find
a group missing and both try to add it."""


def ensure_group(name: str, gid: int | None = None) -> int:
    """The GID of a system group, created when missing."""
    with HOST:
        return _ensure_group(name, gid)


def _ensure_group(name: str, gid: int | None) -> int:
    try:
        existing = grp.getgrnam(name)
    except KeyError:
        _run(["groupadd", *(["-g", str(gid)] if gid is not None else []), name])
        return grp.getgrnam(name).gr_gid
    if gid is not None and existing.gr_gid != gid:
        raise Conflict("system group %(name)s exists with GID %(gr_gid)s, not %(gid)s",
                       name=name, gr_gid=existing.gr_gid, gid=gid)
    return existing.gr_gid


def ensure_account(username: str, uid: int, gid: int, groups: list[str], home: Path) -> None:
    """A system user with this UID, primary GID, supplementary groups and a private home."""
    with HOST:
        _ensure_account(username, uid, gid, groups, home)


def remove_new_account(username: str) -> None:
    """Take back an account (its home and private group too) that beamhub has just begun to create."""
    with HOST:
        subprocess.run(["userdel", "-r", username], capture_output=True)
        subprocess.run(["groupdel", username], capture_output=True)


def _ensure_account(username: str, uid: int, gid: int, groups: list[str], home: Path) -> None:
    ensure_group(username, gid)
    for group in groups:
        ensure_group(group)
    try:
        existing = pwd.getpwnam(username)
    except KeyError:
        _run(["useradd", "-u", str(uid), "-g", str(gid), "-d", str(home), "-m", "-s", "/bin/bash",
              *(["-G", ",".join(groups)] if groups else []), username])
        home.chmod(0o700)  # useradd follows login.defs' UMASK, which leaves homes world-readable
        return
    if existing.pw_uid != uid:
        raise Conflict("system user %(username)s exists with UID %(pw_uid)s, not %(uid)s",
                       username=username, pw_uid=existing.pw_uid, uid=uid)
    _run(["usermod", "-g", str(gid), "-G", ",".join(groups), username])
    if not home.exists():
        home.mkdir(mode=0o700, parents=True)
        os.chown(home, uid, gid)


def account_named(name: str) -> pwd.struct_passwd | None:
    """The system account of this name, or None."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def group_named(name: str) -> grp.struct_group | None:
    """The system group of this name, or None."""
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def group_name(gid: int) -> str:
    """The name of a GID on this host, or the number if NSS has no name for it."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def uid_taken(uid: int) -> bool:
    """Whether a system account already uses this UID."""
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def gid_taken(gid: int) -> bool:
    """Whether a system group already uses this GID."""
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


def set_group_member(group: str, username: str, member: bool) -> None:
    """Add a system user to a system group, or take them out; idempotent."""
    try:
        present = username in grp.getgrnam(group).gr_mem
    except KeyError:
        raise Conflict("system group %(group)s does not exist", group=group) from None
    if member and not present:
        _run(["gpasswd", "-a", username, group])
    elif not member and present:
        _run(["gpasswd", "-d", username, group])


def set_home(username: str, home: Path) -> None:
    """Point a system user's home at `home` (the directory itself is not moved)."""
    _run(["usermod", "-d", str(home), username])
