"""Proposals and their members; who may know them; the ACLs that follow them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, select, union, update
from sqlalchemy.orm import Session

from beamhub.config import Settings
from beamhub.data.access import Caller
from beamhub.data.acl import AccessList, set_tree_acl
from beamhub.data.current import point_current
from beamhub.data.models import MemberRole, Proposal, ProposalMember
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.db import Database, utcnow
from beamhub.errors import Conflict, Forbidden, Invalid, NotFound
from beamhub.identity.accounts.groups import GroupService
from beamhub.identity.accounts.models import Group, User
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.audit.service import AuditService
from beamhub.identity.principal import Principal
from beamhub.locks import HostLock, HostLocks

log = logging.getLogger(__name__)

def _page(column: Any, where: ColumnElement[bool], after: str | None, limit: int) -> Select[tuple[str]]:
    """SELECT id: `limit` proposal ids of column where `where` holds, after `after`, in order (an index range)."""
    query = select(column.label("id")).where(where).order_by(column).limit(limit)
    if after is not None:
        query = query.where(column > after)
    return select(query.subquery().c.id)


def staff_group(beamline: str) -> str:
    """The name of the group of a beamline's staff."""
    return f"{beamline}-staff"


class DataService:
    def __init__(self, db: Database, settings: Settings, identity: IdentityService, groups: GroupService,
                 audit: AuditService, locks: HostLocks) -> None:
        self.db = db
        self.settings = settings
        self.identity = identity
        self.groups = groups
        self.audit = audit
        self.locks = locks

    # --- where data lives ----------------------------------------------------------------
    @property
    def public_group(self) -> str | None:
        """The group that may read proposals past their embargo (every user's); None: data never becomes public."""
        return self.settings.all_users_group

    def proposal_dir(self, proposal: Proposal, tier: str | None = None) -> Path:
        """<storage_root>/<tier>/<beamline>/<proposal>: the proposal's folder on one tier (its own by default)."""
        return self.settings.storage_root / (tier or proposal.tier) / proposal.beamline / proposal.id

    def tier_dirs(self, proposal: Proposal) -> list[tuple[str, Path]]:
        """(tier, folder) of each tier that holds a folder of the proposal, its own tier first."""
        tiers = [proposal.tier, *[t for t in self.settings.storage_tiers if t != proposal.tier]]
        return [(tier, self.proposal_dir(proposal, tier)) for tier in tiers
                if self.proposal_dir(proposal, tier).is_dir()]

    def check_tier(self, tier: str) -> str:
        """The tier, if it is one of storage_tiers; Invalid otherwise."""
        if tier not in self.settings.storage_tiers:
            raise Invalid("unknown tier %(tier)r; configured: %(storage_tiers)s",
                          tier=tier, storage_tiers=', '.join(self.settings.storage_tiers))
        return tier

    # --- who may see and do what -----------------------------------------------------------
    @staticmethod
    def caller(principal: Principal) -> Caller | None:
        """The UID and GIDs the kernel would check for this principal (read with its credential); None when it has
        no UID."""
        return None if principal.uid is None else Caller(uid=principal.uid, gids=principal.gids)

    @staticmethod
    def staffed_beamlines(principal: Principal) -> set[str]:
        """Beamlines whose proposals the principal sees as staff: by role, or by being in `<beamline>-staff`."""
        beamlines = set(principal.beamlines) if principal.is_staff else set()
        return beamlines | {name.removesuffix("-staff") for name in principal.groups if name.endswith("-staff")}

    def visible(self, principal: Principal, proposal: Proposal) -> bool:
        """Whether the principal may know the proposal: admin, member, its beamline's staff, or it is public."""
        if principal.is_admin or (proposal.embargo_released_at is not None and self.public_group):
            return True
        if proposal.beamline in self.staffed_beamlines(principal):
            return True
        return principal.user_id is not None and any(m.user_id == principal.user_id for m in proposal.members)

    def get(self, principal: Principal, proposal_id: str) -> Proposal:
        """A proposal the principal may know; NotFound otherwise, so its existence is not revealed."""
        proposal = self.load(proposal_id)
        if not self.visible(principal, proposal):
            raise NotFound("no proposal %(proposal)s", proposal=proposal_id)
        return proposal

    def load(self, proposal_id: str) -> Proposal:
        """A proposal by id, for whoever asks: the caller checks who may know it."""
        with self.db.session() as db:
            proposal = db.get(Proposal, proposal_id)
        if proposal is None:
            raise NotFound("no proposal %(proposal)s", proposal=proposal_id)
        return proposal

    def _may_manage(self, principal: Principal, proposal: Proposal) -> bool:
        return principal.is_admin or principal.serves(proposal.beamline)

    def _is_pi(self, principal: Principal, proposal: Proposal) -> bool:
        return any(m.user_id == principal.user_id and m.role is MemberRole.pi for m in proposal.members)

    # --- proposals -------------------------------------------------------------------------
    def create(self, principal: Principal, body: ProposalCreate) -> Proposal:
        """A new proposal (admin, or staff of its beamline), its folder and its ACLs."""
        if not (principal.is_admin or principal.serves(body.beamline)):
            raise Forbidden("only administrators and staff of beamline %(beamline)s create its proposals",
                            beamline=body.beamline)
        tier = self.check_tier(body.tier or self.settings.storage_tiers[0])
        with self.db.session() as db:
            if db.get(Proposal, body.id) is not None:
                raise Conflict("proposal %(proposal)s already exists", proposal=body.id)
            proposal = Proposal(id=body.id, title=body.title, beamline=body.beamline, tier=tier,
                                beamtime_start=body.beamtime_start, beamtime_end=body.beamtime_end,
                                embargo_until=body.embargo_until, acl_version=1, acl_applied_version=0)
            if body.embargo_until is not None and body.embargo_until <= utcnow() and self.public_group:
                proposal.embargo_released_at = utcnow()
            proposal.members = [ProposalMember(user_id=self._user(db, m.username).id, role=m.role)
                                for m in {m.username: m for m in body.members}.values()]
            db.add(proposal)
            db.flush()
            self.audit.add_as(db, principal, "proposal.create", proposal.id, beamline=proposal.beamline,
                              members={m.username: m.role.value for m in body.members})
            self._make_folder(proposal)
        self.apply_acls(proposal.id)
        return self.get(principal, proposal.id)

    def _make_folder(self, proposal: Proposal) -> None:
        """Create the proposal's folder (owner-only until its ACL is set) and its stable path; the folders above
        stay traversable."""
        folder = self.proposal_dir(proposal)
        try:
            folder.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700, exist_ok=True)
            point_current(self.settings.storage_root, proposal.beamline, proposal.id, proposal.tier)
        except OSError as exc:
            raise Conflict("cannot create %(folder)s: %(reason)s", folder=folder, reason=exc.strerror) from exc

    def list(self, principal: Principal, after: str | None, limit: int) -> list[Proposal]:
        """The proposals the principal may know, in id order, after the given id."""
        query = select(Proposal).order_by(Proposal.id).limit(limit)
        if not principal.is_admin:
            visible = union(*self._visible_pages(principal, after, limit)).subquery()
            query = query.join(visible, visible.c.id == Proposal.id)
        elif after is not None:
            query = query.where(Proposal.id > after)
        with self.db.session() as db:
            return list(db.scalars(query))

    def _visible_pages(self, principal: Principal, after: str | None, limit: int) -> list[Select[tuple[str]]]:
        """The ids `visible` lets in, one keyset page from each index that holds them: the principal's memberships,
        their staffed beamlines, the released proposals; combined by UNION, never a filter over the whole table."""
        member = principal.user_id if principal.user_id is not None else -1
        sources: list[tuple[Any, ColumnElement[bool]]] = [
            (ProposalMember.proposal_id, ProposalMember.user_id == member)]
        staffed = self.staffed_beamlines(principal)
        sources += [(Proposal.id, Proposal.beamline == beamline) for beamline in sorted(staffed)]
        if self.public_group:
            sources.append((Proposal.id, Proposal.embargo_released_at.is_not(None)))
        return [_page(column, where, after, limit) for column, where in sources]

    # --- members ---------------------------------------------------------------------------
    def set_member(self, principal: Principal, proposal_id: str, username: str, role: MemberRole,
                   progress: Callable[[int], None] | None = None) -> Proposal:
        """Add a member (or change their role), then re-ACL the proposal's data."""
        self._change_members(principal, proposal_id, username, role, progress)
        return self.get(principal, proposal_id)

    def remove_member(self, principal: Principal, proposal_id: str, username: str,
                      progress: Callable[[int], None] | None = None) -> Proposal:
        """Take a member out; the kernel refuses them the data as soon as the ACLs are rewritten."""
        self._change_members(principal, proposal_id, username, None, progress)
        return self.get(principal, proposal_id)

    def _change_members(self, principal: Principal, proposal_id: str, username: str, role: MemberRole | None,
                        progress: Callable[[int], None] | None) -> None:
        proposal = self.get(principal, proposal_id)
        with self.db.session() as db:
            user = self._user(db, username)
            current = db.get(ProposalMember, (proposal_id, user.id))
            self._check_member_change(principal, proposal, current, role)
            if role is None and current is None:
                raise NotFound("%(username)s is not a member of %(proposal)s", username=username, proposal=proposal_id)
            if role is None:
                db.delete(current)
            elif current is None:
                db.add(ProposalMember(proposal_id=proposal_id, user_id=user.id, role=role))
            else:
                current.role = role
            db.execute(update(Proposal).where(Proposal.id == proposal_id)
                       .values(acl_version=Proposal.acl_version + 1))
            self.audit.add_as(db, principal, "proposal.member.remove" if role is None else "proposal.member.set",
                              proposal_id, user=username, role=role.value if role else None)
        self.apply_acls(proposal_id, progress)

    def _check_member_change(self, principal: Principal, proposal: Proposal, current: ProposalMember | None,
                             role: MemberRole | None) -> None:
        """Admins and the beamline's staff change anyone; a PI adds and removes members, not PIs."""
        if self._may_manage(principal, proposal):
            return
        if not self._is_pi(principal, proposal):
            raise Forbidden("only the PI, the beamline staff and administrators change the members of %(proposal)s",
                            proposal=proposal.id)
        if role is MemberRole.pi or (current is not None and current.role is MemberRole.pi):
            raise Forbidden("only the beamline staff and administrators name or remove a PI")

    @staticmethod
    def _user(db: Session, username: str) -> User:
        user = db.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound("no user %(username)s", username=username)
        return user

    # --- ACLs ----------------------------------------------------------------------------
    def access_list(self, proposal: Proposal) -> AccessList:
        """Who the ACL lets read: the members, the beamline's staff group, the public group after the embargo."""
        names = [staff_group(proposal.beamline)]
        if proposal.embargo_released_at is not None and self.public_group:
            names.append(self.public_group)
        with self.db.session() as db:
            uids = db.scalars(select(User.uid).join(ProposalMember, ProposalMember.user_id == User.id)
                              .where(ProposalMember.proposal_id == proposal.id))
            gids = db.scalars(select(Group.gid).where(Group.name.in_(names)))
            return AccessList(users=frozenset(uids), groups=frozenset(gids))

    def acl_lock(self, proposal_id: str) -> HostLock:
        """The lock a proposal's ACL writes and registrations take turns on, in every process of this host."""
        return self.locks.striped("acl", proposal_id)

    def apply_acls(self, proposal_id: str, progress: Callable[[int], None] | None = None) -> int:
        """Rewrite the ACL of every folder and file of the proposal, on every tier; return how many paths.

        The catalogue's acl_version is read first and recorded as applied last, so a change made
        meanwhile (or a crash half-way) leaves the proposal pending for `sync_acls`.
        """
        with self.acl_lock(proposal_id):
            proposal = self.load(proposal_id)
            access = self.access_list(proposal)
            done = 0
            for _, folder in self.tier_dirs(proposal):
                done += set_tree_acl(folder, access, None if progress is None else lambda n, d=done: progress(d + n))
            with self.db.session() as db:
                db.execute(update(Proposal).where(Proposal.id == proposal_id,
                                                  Proposal.acl_applied_version < proposal.acl_version)
                           .values(acl_applied_version=proposal.acl_version))
        return done

    def sync_acls(self, progress: Callable[[str, int], None] | None = None) -> list[str]:
        """Apply the ACLs of every proposal whose catalogue changed since its ACLs were written."""
        with self.db.session() as db:
            pending = list(db.scalars(select(Proposal.id).where(Proposal.acl_applied_version < Proposal.acl_version)
                                      .order_by(Proposal.id)))
        for proposal_id in pending:
            self.apply_acls(proposal_id, None if progress is None else lambda n, p=proposal_id: progress(p, n))
        return pending

    def release_embargoes(self, now: datetime | None = None) -> list[str]:
        """Mark the proposals whose embargo has ended as public and open their ACLs to the public group."""
        if not self.public_group:
            return []
        now = now or utcnow()
        with self.db.session() as db:
            due = list(db.scalars(select(Proposal).where(Proposal.embargo_until <= now,
                                                         Proposal.embargo_released_at.is_(None))))
            for proposal in due:
                proposal.embargo_released_at = now
                proposal.acl_version += 1
                self.audit.add_as(db, None, "proposal.embargo.end", proposal.id)
        for proposal in due:
            self.apply_acls(proposal.id)
        return [proposal.id for proposal in due]
