"""Groups: first-class, with members; kept in step with the system's groups.

beamhub names (records, creates, gives members) only its own groups: those with a GID in gid_min..gid_max,
and the groups its configuration names (`host_groups`, `all_users_group`). Any other host group (root, sudo,
disk, ...) and every user's private group (the group of the user's own name) are refused.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from beamhub.config import Settings
from beamhub.db import Database
from beamhub.errors import Conflict, Forbidden, HostRefused, Invalid, NotFound
from beamhub.identity.accounts import host
from beamhub.identity.accounts.models import Group, User
from beamhub.identity.audit.service import AuditService
from beamhub.identity.principal import Principal
from beamhub.locks import HostLocks


def manages(settings: Settings, name: str, gid: int) -> bool:
    """Whether beamhub manages this group: a GID of its range, or a group the configuration names (host_groups,
    all_users_group), which the host's operator chose and no API caller can change."""
    return (settings.gid_min <= gid <= settings.gid_max or name in settings.host_groups
            or name == settings.all_users_group)


class GroupService:
    def __init__(self, db: Database, settings: Settings, audit: AuditService, locks: HostLocks) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit
        self.creating = locks("users-and-groups")
        self.on_member_change: list[Callable[[], None]] = []
        """Told when someone joined or left a group: credentials this process keeps carry their groups."""
        """Held while users or groups are created by any process of this host: two at once would pick the same free
        UID or record the same new group (replicas on other hosts retry on the database's refusal instead)."""

    def check_grantable(self, db: Session, name: str) -> None:
        """Forbidden unless beamhub may record this group and give it members; checks only, writes nothing."""
        if db.scalar(select(User.id).where(User.username == name)) is not None or host.account_named(name):
            raise Forbidden("group %(name)s is the private group of user %(name)s: it takes no other members",
                            name=name)
        gid = self._known_gid(db, name)
        if gid is not None and not manages(self.settings, name, gid):
            raise Forbidden("group %(name)s (GID %(gid)s) is a host group outside beamhub's GID range "
                            "%(gid_min)s-%(gid_max)s: beamhub does not manage it (the setting host_groups lists the "
                            "host groups it may)",
                            name=name, gid=gid, gid_min=self.settings.gid_min, gid_max=self.settings.gid_max)

    def _known_gid(self, db: Session, name: str) -> int | None:
        """The GID beamhub records for this group, else the system's; None for a group that does not exist."""
        recorded = db.scalar(select(Group.gid).where(Group.name == name))
        if recorded is not None:
            return recorded
        system = host.group_named(name)
        return system.gr_gid if system is not None else None

    def ensure(self, db: Session, name: str) -> Group:
        """The group of this name, recorded (with the system's GID, or a free one) if new; no policy check and no
        change to the host (make_system_groups does that once the transaction is committed)."""
        group = db.scalar(select(Group).where(Group.name == name))
        if group is not None:
            return group
        gid = self._gid_for(db, name)
        holder = db.scalar(select(Group).where(Group.gid == gid))
        if holder is not None:
            raise Conflict("the system's group %(name)s has GID %(gid)s, which beamhub records for group %(holder)s; "
                           "the GID was reused: remove or renumber one of them", name=name, gid=gid, holder=holder.name)
        group = Group(name=name, gid=gid, members=[])
        db.add(group)
        db.flush()
        return group

    def make_system_groups(self, groups: list[Group]) -> None:
        """The host's groups for these recorded ones, when beamhub manages system accounts."""
        if self.settings.manage_system_accounts:
            for group in groups:
                host.ensure_group(group.name, group.gid)

    def _gid_for(self, db: Session, name: str) -> int:
        """The system's GID of this group, or a GID of the range that no group and no private group uses."""
        system = host.group_named(name)
        if system is not None:
            return system.gr_gid
        used = set(db.scalars(select(Group.gid))) | set(db.scalars(select(User.gid)))
        for gid in range(self.settings.gid_min, self.settings.gid_max + 1):
            if gid not in used and not host.gid_taken(gid):
                return gid
        raise Conflict("no free GID left in %(gid_min)s-%(gid_max)s",
                       gid_min=self.settings.gid_min, gid_max=self.settings.gid_max)

    def create(self, name: str, description: str = "", *, by: Principal) -> Group:
        """A new group beamhub manages, for administrators: recorded first, then made on the host (a refusal
        there removes the record again)."""
        by.require_admin()
        with self.creating, self.db.session() as db:
            if db.scalar(select(Group).where(Group.name == name)):
                raise Conflict("group %(name)s already exists", name=name)
            self.check_grantable(db, name)
            group = self.ensure(db, name)
            group.description = description
            self.audit.add_as(db, by, "group.create", name, gid=group.gid)
        try:
            self.make_system_groups([group])
        except HostRefused:
            with self.db.session() as db:
                db.execute(delete(Group).where(Group.id == group.id))
            raise
        return group

    def get(self, name: str, *, by: Principal) -> Group:
        """One group and its members, for administrators."""
        by.require_admin()
        with self.db.session() as db:
            group = db.scalar(select(Group).where(Group.name == name))
            if group is None:
                raise NotFound("no group %(name)s", name=name)
        return group

    def list(self, *, by: Principal) -> list[Group]:
        """Every group by name, for administrators."""
        by.require_admin()
        with self.db.session() as db:
            return list(db.scalars(select(Group).order_by(Group.name)))

    def set_member(self, name: str, username: str, member: bool, *, by: Principal) -> Group:
        """Add or remove a member (administrators), in the database and in the system group; the nss source is
        read-only. Adding needs a group beamhub may give members (check_grantable); taking a member out never grants."""
        by.require_admin()
        if self.settings.identity_source == "nss":
            raise Invalid("groups come from the system (identity_source nss): change them there, e.g. in LDAP")
        with self.db.session() as db:
            group = db.scalar(select(Group).where(Group.name == name))
            user = db.scalar(select(User).where(User.username == username))
            if group is None:
                raise NotFound("no group %(name)s", name=name)
            if user is None:
                raise NotFound("no user %(username)s", username=username)
            if member:
                self.check_grantable(db, name)
            changed = (user in group.members) != member
            if member and changed:
                group.members.append(user)
            elif changed:
                group.members.remove(user)
            self.audit.add_as(db, by, "group.member.add" if member else "group.member.remove", name,
                              user=username, changed=changed)
        if changed:
            for hook in self.on_member_change:
                hook()
        if self.settings.manage_system_accounts:  # after the commit; `identity sync` repairs a refused change
            host.set_group_member(name, username, member)
        return group

