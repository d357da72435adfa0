"""Groups: first-class, with members; kept in step with the system's groups."""

from __future__ import annotations

import grp

from sqlalchemy import select
from sqlalchemy.orm import Session

from beamhub.config import Settings
from beamhub.db import Database
from beamhub.errors import Conflict, Invalid, NotFound
from beamhub.identity import accounts
from beamhub.identity.audit import AuditService
from beamhub.identity.models import Group, User
from beamhub.identity.principal import Principal


class GroupService:
    def __init__(self, db: Database, settings: Settings, audit: AuditService) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit

    def ensure(self, db: Session, name: str) -> Group:
        """The group of this name, recorded (with the system's GID, or a free one) if new."""
        group = db.scalar(select(Group).where(Group.name == name))
        if group is not None:
            return group
        gid = self._gid_for(db, name)
        holder = db.scalar(select(Group).where(Group.gid == gid))
        if holder is not None:
            raise Conflict(f"the system's group {name} has GID {gid}, which beamhub records for group {holder.name}; "
                           f"the GID was reused: remove or renumber one of them")
        group = Group(name=name, gid=gid, members=[])
        db.add(group)
        db.flush()
        if self.settings.manage_system_accounts:
            accounts.ensure_group(name, group.gid)
        return group

    def _gid_for(self, db: Session, name: str) -> int:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            pass
        used = set(db.scalars(select(Group.gid)))
        for gid in range(self.settings.gid_min, self.settings.gid_max + 1):
            if gid not in used and not accounts.gid_taken(gid):
                return gid
        raise Conflict(f"no free GID left in {self.settings.gid_min}-{self.settings.gid_max}")

    def create(self, name: str, description: str = "", by: Principal | None = None) -> Group:
        with self.db.session() as db:
            if db.scalar(select(Group).where(Group.name == name)):
                raise Conflict(f"group {name} already exists")
            group = self.ensure(db, name)
            group.description = description
            self.audit.add_as(db, by, "group.create", name, gid=group.gid)
        return group

    def get(self, name: str) -> Group:
        with self.db.session() as db:
            group = db.scalar(select(Group).where(Group.name == name))
            if group is None:
                raise NotFound(f"no group {name}")
        return group

    def list(self) -> list[Group]:
        with self.db.session() as db:
            return list(db.scalars(select(Group).order_by(Group.name)))

    def set_member(self, name: str, username: str, member: bool, by: Principal | None = None) -> Group:
        """Add or remove a member, in the database and in the system group; the nss source is read-only."""
        if self.settings.identity_source == "nss":
            raise Invalid("groups come from the system (identity_source nss): change them there, e.g. in LDAP")
        with self.db.session() as db:
            group = db.scalar(select(Group).where(Group.name == name))
            user = db.scalar(select(User).where(User.username == username))
            if group is None or user is None:
                raise NotFound(f"no group {name}" if group is None else f"no user {username}")
            changed = (user in group.members) != member
            if member and changed:
                group.members.append(user)
            elif changed:
                group.members.remove(user)
            self.audit.add_as(db, by, "group.member.add" if member else "group.member.remove", name,
                              user=username, changed=changed)
            if self.settings.manage_system_accounts:
                accounts.set_group_member(name, username, member)
        return group

