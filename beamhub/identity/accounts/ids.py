"""The ids of a new user: a free UID of beamhub's range (also its private group's GID) that no user or group has
here or on the host, and on the nss source an account inside that range."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from beamhub.config import Settings
from beamhub.errors import Conflict, Forbidden, Invalid
from beamhub.identity.accounts import host
from beamhub.identity.accounts.models import Group, User


def check_host_account(settings: Settings, username: str, uid: int) -> None:
    """On the nss source, refuse an account outside beamhub's UID range (root, daemon, the host's users)."""
    if not settings.uid_min <= uid <= settings.uid_max:
        raise Forbidden("%(username)s has UID %(uid)s on this host, outside beamhub's UID range "
                        "%(uid_min)s-%(uid_max)s: beamhub does not take over host accounts",
                        username=username, uid=uid, uid_min=settings.uid_min, uid_max=settings.uid_max)


def _check_free_name(db: Session, settings: Settings, username: str) -> None:
    """Refuse a name whose account or private group beamhub could not create as its own (on the host when it
    manages system accounts; a name without one is only a label, e.g. for PAM logins)."""
    managed = settings.manage_system_accounts
    held = host.account_named(username) if managed else None
    if held is not None:
        raise Conflict("%(username)s is already an account on this host (UID %(pw_uid)s): beamhub creates its own "
                       "accounts and takes over none", username=username, pw_uid=held.pw_uid)
    system = host.group_named(username) if managed else None
    if system is not None or db.scalar(select(Group.id).where(Group.name == username)) is not None:
        raise Conflict("a group named %(username)s already exists, so %(username)s cannot have a private group",
                       username=username)


def new_uid(db: Session, settings: Settings, username: str, uid: int | None) -> int:
    """The UID of a new user on the db source (and its private group's GID); refuses what the host holds."""
    _check_free_name(db, settings, username)
    if uid is None:
        return _free_uid(db, settings)
    if not settings.uid_min <= uid <= settings.uid_max:
        raise Invalid("UID %(uid)s is outside beamhub's UID range %(uid_min)s-%(uid_max)s",
                      uid=uid, uid_min=settings.uid_min, uid_max=settings.uid_max)
    if uid in _used_ids(db) or host.uid_taken(uid) or host.gid_taken(uid):
        raise Conflict("UID %(uid)s is already taken (by a user, or as the GID of a group)", uid=uid)
    return uid


def _used_ids(db: Session) -> set[int]:
    """UIDs of beamhub's users and GIDs of its groups: a new user's UID is also its private group's GID."""
    return set(db.scalars(select(User.uid))) | set(db.scalars(select(Group.gid)))


def _free_uid(db: Session, settings: Settings) -> int:
    """The first UID of the range that no user, and no group as its GID, has here or on the host."""
    used = _used_ids(db)
    for uid in range(settings.uid_min, settings.uid_max + 1):
        if uid not in used and not host.uid_taken(uid) and not host.gid_taken(uid):
            return uid
    raise Conflict("no free UID left in %(uid_min)s-%(uid_max)s",
                   uid_min=settings.uid_min, uid_max=settings.uid_max)
