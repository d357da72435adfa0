"""Identity sources: `db` (beamhub allocates UIDs/GIDs and keeps system accounts in step, `sync` repairs
drift) and `nss` (existing accounts from pwd/grp, e.g. LDAP/SSSD, read-only). Chosen by `identity_source`.

On `db`, sync compares the database with pwd/grp for beamhub's users (service accounts have none) and
groups: accounts, UIDs, primary GIDs, homes, groups, GIDs and memberships of beamhub users in beamhub
groups. System users that are not beamhub users, groups beamhub does not know, and recorded groups it does not
manage (a host group outside its GID range that host_groups does not list) are left alone.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from beamhub.config import Settings
from beamhub.db import Database
from beamhub.errors import BeamhubError, Invalid
from beamhub.identity.accounts import host
from beamhub.identity.accounts.groups import manages
from beamhub.identity.accounts.models import Group, Role, User

PHASES = {"group": 0, "user": 1, "member": 2}
"""Repairs run groups first, then accounts, then memberships."""


# --- nss -----------------------------------------------------------------------------------------
def nss_identity(username: str, uid: int | None, groups: list[str] | None) -> tuple[int, int, list[str]]:
    """UID, primary GID and supplementary group names of an existing account; Invalid if it has none."""
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        raise Invalid("identity source is nss: no account %(username)s exists in pwd (getent passwd %(username)s); "
                      "create it in the directory (LDAP/SSSD) first", username=username) from None
    if uid is not None and uid != entry.pw_uid:
        raise Invalid("identity source is nss: %(username)s has UID %(pw_uid)s there, not %(uid)s",
                      username=username, pw_uid=entry.pw_uid, uid=uid)
    names = sorted({host.group_name(gid) for gid in nss_group_ids(username, entry.pw_gid) if gid != entry.pw_gid})
    missing = sorted(set(groups or []) - set(names))
    if missing:
        raise Invalid("identity source is nss: group membership comes from NSS and %(username)s is not in %(missing)s",
                      username=username, missing=', '.join(missing))
    return entry.pw_uid, entry.pw_gid, names


def nss_group_ids(username: str, gid: int) -> tuple[int, ...]:
    """Every GID NSS gives this user (primary first), as `id USER` shows."""
    return tuple(os.getgrouplist(username, gid))


# --- db: drift and sync --------------------------------------------------------------------------
@dataclass
class Drift:
    """One difference between the database and the system, and whether sync can repair it."""

    kind: str
    name: str
    problem: str
    fix: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    repaired: bool = False
    error: str = ""

    @property
    def repairable(self) -> bool:
        return self.fix is not None


@dataclass(frozen=True)
class _UserRow:
    username: str
    uid: int
    gid: int
    groups: tuple[str, ...]


@dataclass(frozen=True)
class _GroupRow:
    name: str
    gid: int
    members: tuple[str, ...]


def _load(db: Database) -> tuple[list[_UserRow], list[_GroupRow]]:
    """beamhub's users with system accounts, and its groups (members limited to those users)."""
    with db.session() as session:
        users = [_UserRow(u.username, u.uid, u.gid, tuple(u.groups))
                 for u in session.scalars(select(User).order_by(User.username))
                 if Role.service.value not in u.roles]
        names = {u.username for u in users}
        groups = [_GroupRow(g.name, g.gid, tuple(m.username for m in g.members if m.username in names))
                  for g in session.scalars(select(Group).order_by(Group.name))]
    return users, groups


def _group_drift(group: _GroupRow) -> list[Drift]:
    """A beamhub group missing from grp, or there with another GID."""
    try:
        entry = grp.getgrnam(group.name)
    except KeyError:
        return [Drift("group", group.name, f"system group missing (GID {group.gid})",
                      _create_group(group.name, group.gid))]
    if entry.gr_gid != group.gid:
        return [Drift("group", group.name, f"system group has GID {entry.gr_gid}, database {group.gid}")]
    return []


def _user_drift(user: _UserRow, home: Path) -> list[Drift]:
    """A beamhub user's account: missing, another UID, primary group, home."""
    def ensure() -> None:
        host.ensure_account(user.username, user.uid, user.gid, list(user.groups), home)

    try:
        entry = pwd.getpwnam(user.username)
    except KeyError:
        return [Drift("user", user.username, f"system account missing (UID {user.uid})", ensure)]
    if entry.pw_uid != user.uid:
        return [Drift("user", user.username, f"system account has UID {entry.pw_uid}, database {user.uid}: "
                      "files may belong to either; change one by hand")]
    drift = []
    if not host.gid_taken(user.gid):
        drift.append(Drift("group", user.username, f"private group missing (GID {user.gid})",
                           _create_group(user.username, user.gid)))
    if entry.pw_gid != user.gid:
        drift.append(Drift("user", user.username, f"primary GID is {entry.pw_gid}, database {user.gid}", ensure))
    if Path(entry.pw_dir) != home:
        drift.append(Drift("user", user.username, f"home is {entry.pw_dir}, expected {home}",
                           lambda: host.set_home(user.username, home)))
    if not home.is_dir():
        drift.append(Drift("user", user.username, f"home directory {home} missing", ensure))
    return drift


def _member_drift(group: _GroupRow, beamhub_users: set[str]) -> list[Drift]:
    """beamhub users missing from, or extra in, a beamhub group's system member list."""
    try:
        present = set(grp.getgrnam(group.name).gr_mem)
    except KeyError:
        present = set()
    wanted = set(group.members)
    drift = [Drift("member", f"{group.name}:{name}", f"{name} missing from system group {group.name}",
                   _membership(group.name, name, True)) for name in sorted(wanted - present)]
    drift += [Drift("member", f"{group.name}:{name}", f"{name} in system group {group.name}, not in the database",
                    _membership(group.name, name, False)) for name in sorted((present & beamhub_users) - wanted)]
    return drift


def _create_group(name: str, gid: int) -> Callable[[], None]:
    """A repair that creates one system group."""
    def create() -> None:
        host.ensure_group(name, gid)
    return create


def _membership(group: str, username: str, member: bool) -> Callable[[], None]:
    """A repair that sets one membership."""
    return lambda: host.set_group_member(group, username, member)


def find_drift(db: Database, settings: Settings) -> list[Drift]:
    """Every difference between beamhub's database and pwd/grp, in repair order."""
    users, recorded = _load(db)
    groups = [g for g in recorded if manages(settings, g.name, g.gid)]
    names = {u.username for u in users}
    drift = [d for g in groups for d in _group_drift(g)]
    drift += [d for u in users for d in _user_drift(u, settings.home_root / u.username)]
    drift += [d for g in groups for d in _member_drift(g, names)]
    return sorted(drift, key=lambda d: PHASES[d.kind])


def sync(db: Database, settings: Settings, dry_run: bool = False) -> list[Drift]:
    """Find drift on the db source and, unless dry_run, repair what can be repaired, idempotently."""
    if settings.identity_source != "db":
        raise Invalid("identity sync works on the db source; identity_source is %(identity_source)s, whose accounts "
                      "are read-only", identity_source=settings.identity_source)
    drift = find_drift(db, settings)
    if not dry_run:
        for item in drift:
            _repair(item)
    return drift


def _repair(item: Drift) -> None:
    """Run one repair, recording success or the error."""
    if item.fix is None:
        return
    try:
        item.fix()
    except (BeamhubError, OSError) as exc:
        item.error = str(exc)
    else:
        item.repaired = True
