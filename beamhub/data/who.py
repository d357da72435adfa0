"""Who can read a path, through which entry of its ACL, and by which of beamhub's ways in (web, Jupyter, SMB).

Every way in acts as the user's own UID and GIDs (a download is decided by may_access, a Jupyter
kernel and smbd run as the user), so one kernel-exact decision answers for all of them: the path
walk from / and the target's ACL. What differs per user is only which ways in they have.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import posix1e

from beamhub.config import Settings
from beamhub.data import access
from beamhub.data.access import Caller, may_read
from beamhub.errors import NotFound
from beamhub.identity.accounts.host import group_name
from beamhub.identity.accounts.models import Role, User, UserState
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.principal import SYSTEM

WEB, JUPYTER, SMB = "web", "jupyter", "smb"

_NO_USER = -1
"""A UID no file and no ACL entry can carry ((uid_t)-1 is invalid): a Caller with it has only its groups' rights."""


@dataclass(frozen=True)
class Reader:
    """A candidate reader: the identity the kernel checks, and the ways into the data this user has."""

    username: str
    uid: int
    gids: frozenset[int]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class ReadAccess:
    """A user who can read the path: `via` names the granting entry (owner, user:<uid>, group:<name>, other, root)."""

    username: str
    uid: int
    via: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class GroupAccess:
    """A group named in the path's ACL, and whether its members read the path by being in it."""

    name: str
    gid: int
    reads: bool


def who_can_read(path: Path, candidates: Iterable[Reader]) -> list[ReadAccess]:
    """The candidates who can read path (the whole walk from / included), by username.

    A candidate with no ways in (a disabled user) is still listed when the ACL grants them, with no paths.
    """
    target = _existing(path)
    found = []
    for reader in candidates:
        caller = Caller(uid=reader.uid, gids=reader.gids)
        # the path as given: a symlink's own folders must be searchable too
        if may_read(path, caller) and (via := granting_entry(target, caller)) is not None:
            found.append(ReadAccess(reader.username, reader.uid, via, reader.paths))
    return sorted(found, key=lambda entry: entry.username)


def acl_groups(path: Path) -> list[GroupAccess]:
    """The named groups of path's access ACL, by GID, each with whether membership alone lets one read path."""
    target = _existing(path)
    return [GroupAccess(group_name(gid), gid, may_read(path, Caller(uid=_NO_USER, gids=frozenset({gid}))))
            for gid in _acl_groups(target)]


def granting_entry(path: Path, caller: Caller) -> str | None:
    """Which entry of path's ACL (or mode) the kernel reads by for caller; 'root' when only uid 0's override does.

    Meant for a caller may_read has let in: it names the entry, it does not decide. None when the file changed or
    vanished while it was read, or holds an ACL that is none: such a file grants nothing, as may_read would answer.
    """
    try:
        grant = access.granting_entry(path, caller)
    except (OSError, ValueError):  # access.Changed is an OSError
        return None
    if grant is None:
        return "root"
    if grant.qualifier is None:
        return grant.tag
    return f"group:{group_name(grant.qualifier)}" if grant.tag == "group" else f"{grant.tag}:{grant.qualifier}"


def access_paths(user: User, settings: Settings) -> tuple[str, ...]:
    """The ways into the data a user has: web if active, Jupyter unless a service account, SMB if it has a SID."""
    if user.state is not UserState.active:
        return ()
    paths = [WEB]
    if Role.service.value not in user.roles:  # service accounts have no system account to run a session as
        paths.append(JUPYTER)
    if settings.windows_domain_sid is not None and settings.idmap_range_low <= user.uid <= settings.idmap_range_high:
        paths.append(SMB)
    return tuple(paths)


def readers_from_users(users: Iterable[User], identity: IdentityService, settings: Settings) -> list[Reader]:
    """Readers for beamhub's users: the UID and GIDs their sessions run as, and their ways in."""
    readers = []
    for user in users:
        account = identity.account(user)
        readers.append(Reader(user.username, account.uid, frozenset({account.gid, *account.groups}),
                              access_paths(user, settings)))
    return readers


def path_readers(path: Path, identity: IdentityService,
                 settings: Settings) -> tuple[list[ReadAccess], list[GroupAccess]]:
    """Every beamhub user who can read `path`, and the groups its ACL names."""
    users = identity.list_users(0, max(identity.count_users(by=SYSTEM), 1), by=SYSTEM)
    return who_can_read(path, readers_from_users(users, identity, settings)), acl_groups(path)


def _existing(path: Path) -> Path:
    """The path with every symlink resolved; NotFound if nothing is there."""
    if not os.path.exists(path):
        raise NotFound("%(path)s does not exist", path=path)
    return Path(os.path.realpath(path))


def _acl_groups(path: Path) -> list[int]:
    """The GIDs of the named-group entries of path's access ACL."""
    try:
        acl = posix1e.ACL(file=os.fspath(path))
    except OSError:  # vanished since it was found: it names nobody
        return []
    return sorted({e.qualifier for e in acl if e.tag_type == posix1e.ACL_GROUP})
