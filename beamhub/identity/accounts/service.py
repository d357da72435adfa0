"""Users, their roles, state and system accounts; API tokens; who a credential stands for."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from beamhub.cache import SharedEpoch
from beamhub.compute.backend import Account
from beamhub.config import Settings
from beamhub.db import Database, utcnow
from beamhub.errors import Conflict, Forbidden, HostRefused, Invalid, NotFound, Unauthenticated
from beamhub.identity.accounts import host, ids, reads, sources
from beamhub.identity.accounts.groups import GroupService
from beamhub.identity.accounts.models import ApiToken, Role, User, UserState
from beamhub.identity.audit.service import AuditService
from beamhub.identity.fields import beamline_names
from beamhub.identity.principal import SCOPES, Principal, role_scopes

BOOTSTRAP_ADMIN = "admin-token"
RECORD_ATTEMPTS = 3
"""Tries at recording a new user when another replica takes the same UID or group at the same moment."""


def _check_no_wider(by: Principal, scopes: list[str]) -> None:
    """A limited token may only issue tokens limited to its own scopes (else it could mint an unlimited one)."""
    if by.scopes is None or by.is_admin:
        return
    wider = set(scopes) - by.scopes
    if wider:
        raise Forbidden("this token lacks the scopes %(wider)s, so it cannot issue a token with them",
                        wider=sorted(wider))


def _audited_fields(user: User) -> dict[str, object]:
    """The fields of a user whose changes the audit log records."""
    return {"roles": list(user.roles), "beamlines": list(user.beamlines), "state": user.state.value,
            "display_name": user.display_name, "email": user.email}


def _changes(before: dict[str, object], after: dict[str, object]) -> dict[str, dict[str, object]]:
    """Each field that changed, from what to what."""
    return {key: {"from": before[key], "to": after[key]} for key in before if before[key] != after[key]}


class IdentityService:
    def __init__(self, db: Database, settings: Settings, groups: GroupService, audit: AuditService) -> None:
        self.db = db
        self.settings = settings
        self.groups = groups
        self.audit = audit
        self.on_disable: list[Callable[[User], None]] = []
        self.epoch = SharedEpoch(settings.state_dir / "revocations")
        """Moved when a credential or a right may have ended (a revoked token, a changed user, a logout): every
        cache of decisions built on it, in every process of this host, forgets them at its next look."""

    # --- users -------------------------------------------------------------------------
    def create_user(self, username: str, uid: int | None = None, groups: list[str] | None = None,
                    roles: list[str] | None = None, beamlines: list[str] | None = None,
                    display_name: str = "", email: str = "", *, by: Principal) -> User:
        """A new user with a UID from the configured range and a matching system account; for administrators.

        On the nss source the account must already exist: its UID, GID and groups are taken, none is created.
        Everything is checked before anything is written, so a refused user leaves nothing behind.
        """
        by.require_admin()
        roles = sorted(set(roles or [Role.user.value]) | {Role.user.value})
        profile = {"username": username, "roles": roles, "beamlines": beamline_names(beamlines or []),
                   "display_name": display_name, "email": email, "state": UserState.active}
        for attempt in range(RECORD_ATTEMPTS):
            try:
                with self.groups.creating:
                    user = self._record_user(profile, uid, groups)
                break
            except IntegrityError as exc:  # another replica recorded the same UID or group first: pick again
                if attempt == RECORD_ATTEMPTS - 1:
                    raise Conflict("user %(username)s could not be recorded: %(error)s",
                                   username=username, error=type(exc.orig).__name__) from exc
        self._make_system_account(user)
        self.audit.record_as(by, "user.create", username, uid=user.uid, roles=user.roles, groups=user.groups,
                             beamlines=user.beamlines)
        return user

    def _record_user(self, profile: dict[str, Any], uid: int | None, groups: list[str] | None) -> User:
        """Check everything and record the user with their UID, GID and groups, in one transaction."""
        username = profile["username"]
        with self.db.session() as db:
            if db.scalar(select(User).where(User.username == username)):
                raise Conflict("user %(username)s already exists", username=username)
            if self.settings.identity_source == "nss":
                uid, gid, groups = sources.nss_identity(username, uid, groups)
                ids.check_host_account(self.settings, username, uid)
            else:
                uid = ids.new_uid(db, self.settings, username, uid)
                gid = uid
                groups = self._new_groups(db, groups or [])
            user = User(**profile, uid=uid, gid=gid)
            user.group_list = [self.groups.ensure(db, name) for name in groups]
            db.add(user)
        return user

    def _make_system_account(self, user: User) -> None:
        """The host's account and groups of a user just recorded (db source, unless a service user); if the host
        refuses, the record goes again, so that no user exists without an account."""
        if (not self.settings.manage_system_accounts or Role.service.value in user.roles
                or self.settings.identity_source == "nss"):
            return
        try:
            self.groups.make_system_groups(user.group_list)
            host.ensure_account(user.username, user.uid, user.gid, user.groups, self.home(user.username))
        except HostRefused:
            host.remove_new_account(user.username)  # useradd may leave an account it failed to finish
            with self.db.session() as db:
                db.execute(delete(User).where(User.id == user.id))
            raise

    def _new_groups(self, db: Session, names: list[str]) -> list[str]:
        """The groups a new user joins (with the all-users group), each one beamhub may give members."""
        wanted = set(names) | ({self.settings.all_users_group} if self.settings.all_users_group else set())
        for name in sorted(wanted):
            self.groups.check_grantable(db, name)
        return sorted(wanted)

    def home(self, username: str) -> Path:
        return self.settings.home_root / username

    def get_user(self, username: str, *, by: Principal) -> User:
        """A user, for the user themself or an administrator."""
        by.require_self_or_admin(username)
        with self.db.session() as db:
            user = db.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound("no user %(username)s", username=username)
        return user

    def list_users(self, offset: int = 0, limit: int = 100, *, by: Principal) -> list[User]:
        """A page of users by name, for administrators."""
        by.require_admin()
        with self.db.session() as db:
            return list(db.scalars(select(User).order_by(User.username).offset(offset).limit(limit)))

    def profile(self, username: str, *, by: Principal) -> reads.UserView:
        """A user as the API shows them (one statement), for the user themself or an administrator."""
        by.require_self_or_admin(username)
        with self.db.engine.connect() as connection:
            view = reads.user_view(connection, username)
        if view is None:
            raise NotFound("no user %(username)s", username=username)
        return view

    def profiles(self, offset: int = 0, limit: int = 100, *, by: Principal) -> list[reads.UserView]:
        """A page of users by name as the API shows them (one statement), for administrators."""
        by.require_admin()
        with self.db.engine.connect() as connection:
            return reads.user_views(connection, offset, limit)

    def count_users(self, *, by: Principal) -> int:
        """How many users there are, for administrators."""
        by.require_admin()
        with self.db.session() as db:
            return db.scalar(select(func.count()).select_from(User)) or 0

    def update_user(self, username: str, roles: list[str] | None = None, beamlines: list[str] | None = None,
                    state: UserState | None = None, display_name: str | None = None,
                    email: str | None = None, *, by: Principal) -> User:
        """Change a user's roles, beamlines, state or profile (administrators); disabling ends their sessions."""
        by.require_admin()
        with self.db.session() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFound("no user %(username)s", username=username)
            before = _audited_fields(user)
            if roles is not None:
                user.roles = sorted(set(roles) | {Role.user.value})
            if beamlines is not None:
                user.beamlines = beamline_names(beamlines)
            if display_name is not None:
                user.display_name = display_name
            if email is not None:
                user.email = email
            disabling = state is UserState.disabled and user.state is not UserState.disabled
            if state is not None:
                user.state = state
            changes = _changes(before, _audited_fields(user))
            if changes:
                self.audit.add_as(db, by, "user.update", username, changes=changes)
        if changes:
            self.revoked()
        if disabling:
            for hook in self.on_disable:
                hook(user)
        return user

    def principal_of(self, user: User, scopes: frozenset[str] | None = None,
                     token_id: int | None = None) -> Principal:
        """The principal of a user's credential, with the UID and groups the kernel knows them by (so that a
        request's data rights need no second read of the user)."""
        groups = [(group.name, group.gid) for group in user.group_list]
        return self._principal(user.username, user.id, user.roles, user.beamlines, user.uid, user.gid, groups,
                               scopes, token_id)

    def account(self, user: User) -> Account:
        """The UID, GID, supplementary GIDs (from NSS on the nss source) and home a user's sessions run as."""
        groups = self._group_ids(user.username, user.gid, tuple(group.gid for group in user.group_list))
        return Account(username=user.username, uid=user.uid, gid=user.gid, groups=groups,
                       home=self.home(user.username))

    def _group_ids(self, username: str, gid: int, beamhub_gids: tuple[int, ...]) -> tuple[int, ...]:
        """A user's supplementary GIDs: from NSS on the nss source, else those of their groups in beamhub."""
        return sources.nss_group_ids(username, gid) if self.settings.identity_source == "nss" else beamhub_gids

    # --- tokens ------------------------------------------------------------------------
    def issue_token(self, username: str, name: str, expires_in: int | None = None,
                    scopes: list[str] | None = None, *, by: Principal) -> tuple[str, ApiToken]:
        """A new bearer token of the user themself or (by) an administrator; the plain token is returned once."""
        user = self.get_user(username, by=by)
        unknown = set(scopes or []) - SCOPES
        if unknown:
            raise Invalid("unknown scopes %(unknown)s; known: %(scopes)s",
                          unknown=sorted(unknown), scopes=sorted(SCOPES))
        if "admin" in (scopes or []) and not user.is_admin:
            raise Forbidden("only administrators can hold a token with the admin scope")
        scopes = sorted(set(scopes) if scopes else role_scopes(user.roles))
        _check_no_wider(by, scopes)
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(seconds=expires_in) if expires_in else None
        record = ApiToken(user_id=user.id, name=name, digest=reads.token_digest(token), expires_at=expires_at,
                          scopes=scopes)
        with self.db.session() as db:
            db.add(record)
            db.flush()
            self.audit.add_as(db, by, "token.issue", username, token_id=record.id, token_name=name,
                              scopes=record.scopes, expires_at=expires_at)
        return token, record

    def list_tokens(self, username: str, *, by: Principal) -> list[ApiToken]:
        """A user's tokens, oldest first, for the user themself or an administrator."""
        user = self.get_user(username, by=by)
        with self.db.session() as db:
            query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at)
            return list(db.scalars(query))

    def revoke_token(self, username: str, token_id: int, *, by: Principal) -> ApiToken:
        """End one of a user's tokens now: the user themself or an administrator."""
        user = self.get_user(username, by=by)
        with self.db.session() as db:
            record = db.get(ApiToken, token_id)
            if record is None or record.user_id != user.id:
                raise NotFound("%(username)s has no token %(token_id)s", username=username, token_id=token_id)
            record.revoked_at = record.revoked_at or utcnow()
            self.audit.add_as(db, by, "token.revoke", username, token_id=token_id, token_name=record.name)
        self.revoked()
        return record

    def revoke_tokens_named(self, user_id: int, name: str, *, by: Principal) -> None:
        """End every live token of a user that has this name (what beamhub issued for one purpose): administrators
        and beamhub itself."""
        by.require_admin()
        with self.db.session() as db:
            query = select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.name == name,
                                           ApiToken.revoked_at.is_(None))
            for record in db.scalars(query):
                record.revoked_at = utcnow()
                self.audit.add_as(db, by, "token.revoke", record.user.username, token_id=record.id, token_name=name)
        self.revoked()

    def revoked(self) -> None:
        """Some credential or right may have ended: every process forgets the decisions it keeps."""
        self.epoch.move()

    def authenticate(self, token: str | None, address: str = "") -> Principal:
        """The principal a bearer token stands for; Unauthenticated (401) or Forbidden (403) if none.
        A refused token is audited, and a token's use at most once a minute (when last_used_at moves)."""
        if not token:
            raise Unauthenticated("credentials are required")
        admin = self.settings.admin_token
        if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
            return Principal(username=BOOTSTRAP_ADMIN, user_id=None, roles=frozenset({"admin"}), address=address)
        with self.db.engine.connect() as connection:
            found = reads.token_with_user(connection, "digest", reads.token_digest(token))
        now = utcnow()
        refusal = reads.token_refusal(found, now)
        if refusal is None and found is not None:
            if found.last_used_at is None or now - found.last_used_at > timedelta(minutes=1):
                with self.db.session() as db:
                    db.execute(update(ApiToken).where(ApiToken.id == found.id).values(last_used_at=now))
                    self.audit.add(db, found.username, "token.use", found.username, address, token_id=found.id,
                                   token_name=found.name)
            return replace(self._token_principal(found), address=address)
        actor = found.username if found is not None else ""
        token_id = found.id if found is not None else None
        assert refusal is not None
        self.audit.record(actor, "token.refused", actor, address, success=False, reason=str(refusal),
                          token_id=token_id)
        raise refusal

    def principal_of_token(self, token_id: int) -> Principal:
        """The principal of an API token found by its id, if it still stands (what a session's entry cookie
        obtained with that token stands on); 401 or 403 as for the token itself."""
        with self.db.engine.connect() as connection:
            found = reads.token_with_user(connection, "id", token_id)
        refusal = reads.token_refusal(found, utcnow())
        if refusal is not None:
            raise refusal
        assert found is not None
        return self._token_principal(found)

    def _token_principal(self, found: Row[Any]) -> Principal:
        """The principal of a token read by reads.token_with_user."""
        return replace(self.principal_of_read(found, frozenset(found.scopes), found.id), expires_at=found.expires_at)

    def principal_of_read(self, found: Row[Any], scopes: frozenset[str] | None = None,
                          token_id: int | None = None) -> Principal:
        """The principal of a user read as reads.USER_COLUMNS and reads.groups_column, as principal_of makes it."""
        return self._principal(found.username, found.user_id, found.roles, found.beamlines, found.uid, found.gid,
                               reads.parse_groups(found.group_entries), scopes, token_id)

    def _principal(self, username: str, user_id: int, roles: list[str], beamlines: list[str], uid: int, gid: int,
                   groups: list[tuple[str, int]], scopes: frozenset[str] | None, token_id: int | None) -> Principal:
        """A user's principal from their identity and beamhub groups (name, GID), by name."""
        gids = self._group_ids(username, gid, tuple(group_gid for _, group_gid in groups))
        return Principal(username=username, user_id=user_id, roles=frozenset(roles), beamlines=frozenset(beamlines),
                         scopes=scopes, token_id=token_id, uid=uid, gids=frozenset({gid, *gids}),
                         groups=frozenset(name for name, _ in groups), gid=gid, supplementary_gids=gids)

    def _target_name(self, principal: Principal, username: str | None) -> str:
        """The name of the user a request acts for: oneself, or anyone for an administrator."""
        if username is None or username == principal.username:
            if principal.user_id is None:
                raise Invalid("the administrator token must name the user to act for")
            return principal.username
        if not principal.is_admin:
            raise Forbidden("you may only act for yourself")
        return username

    def resolve_target(self, principal: Principal, username: str | None) -> User:
        """The user a request acts for (as _target_name decides), as an ORM object."""
        return self.get_user(self._target_name(principal, username), by=principal)

    def target_account(self, principal: Principal, username: str | None) -> tuple[int, Account]:
        """The id and host account of the user a request acts for, by resolve_target's rules: one's own as the
        credential read it (account() of the same row), or one statement for the user an administrator names."""
        name = self._target_name(principal, username)
        user_id, uid, gid = principal.user_id, principal.uid, principal.gid
        if name == principal.username and user_id is not None and uid is not None and gid is not None:
            return user_id, Account(username=name, uid=uid, gid=gid, groups=principal.supplementary_gids,
                                    home=self.home(name))
        with self.db.engine.connect() as connection:
            found = reads.user_identity(connection, name)
        if found is None:
            raise NotFound("no user %(username)s", username=name)
        gids = self._group_ids(name, found.gid, tuple(gid for _, gid in reads.parse_groups(found.group_entries)))
        return found.user_id, Account(username=name, uid=found.uid, gid=found.gid, groups=gids, home=self.home(name))
