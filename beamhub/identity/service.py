"""Users, their system accounts and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from beamhub.compute.backend import Account
from beamhub.config import Settings
from beamhub.db import Database, utcnow
from beamhub.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from beamhub.identity import accounts
from beamhub.identity.models import ApiToken, User


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a user, or the bootstrap admin (user_id None)."""

    username: str
    user_id: int | None
    is_admin: bool

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs an administrator")

    def may_act_for(self, user_id: int) -> bool:
        return self.is_admin or self.user_id == user_id


BOOTSTRAP_ADMIN = "admin-token"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def create_user(self, username: str, uid: int | None = None, groups: list[str] | None = None,
                    is_admin: bool = False) -> User:
        """A new user with a UID from the configured range and a matching system account."""
        groups = sorted(set(groups or []))
        with self.db.session() as db:
            if db.scalar(select(User).where(User.username == username)):
                raise Conflict(f"user {username} already exists")
            uid = uid if uid is not None else self._free_uid(db)
            user = User(username=username, uid=uid, gid=uid, groups=groups, is_admin=is_admin)
            db.add(user)
            try:
                db.flush()
            except IntegrityError as exc:
                raise Conflict(f"UID {uid} is already taken") from exc
            if self.settings.manage_system_accounts:
                accounts.ensure_account(username, uid, uid, groups, self.home(username))
        return user

    def _free_uid(self, db: Session) -> int:
        used = set(db.scalars(select(User.uid).where(User.uid.between(self.settings.uid_min,
                                                                         self.settings.uid_max))))
        for uid in range(self.settings.uid_min, self.settings.uid_max + 1):
            if uid not in used and not accounts.uid_taken(uid):
                return uid
        raise Conflict(f"no free UID left in {self.settings.uid_min}-{self.settings.uid_max}")

    def home(self, username: str) -> Path:
        return self.settings.home_root / username

    def get_user(self, username: str) -> User:
        with self.db.session() as db:
            user = db.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user {username}")
        return user

    def list_users(self, offset: int = 0, limit: int = 100) -> list[User]:
        with self.db.session() as db:
            return list(db.scalars(select(User).order_by(User.username).offset(offset).limit(limit)))

    def count_users(self) -> int:
        with self.db.session() as db:
            return db.scalar(select(func.count()).select_from(User)) or 0

    def account(self, user: User) -> Account:
        """The UID, GID, supplementary GIDs and home a user's sessions run as."""
        return Account(username=user.username, uid=user.uid, gid=user.gid,
                       groups=accounts.group_ids(user.groups), home=self.home(user.username))

    def issue_token(self, username: str, name: str, expires_in: int | None = None) -> tuple[str, ApiToken]:
        """A new bearer token for a user; the plain token is returned once and never stored."""
        user = self.get_user(username)
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(seconds=expires_in) if expires_in else None
        record = ApiToken(user_id=user.id, name=name, digest=token_digest(token), expires_at=expires_at)
        with self.db.session() as db:
            db.add(record)
        return token, record

    def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token stands for; Unauthenticated if none."""
        if not token:
            raise Unauthenticated("credentials are required")
        admin = self.settings.admin_token
        if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
            return Principal(username=BOOTSTRAP_ADMIN, user_id=None, is_admin=True)
        with self.db.session() as db:
            record = db.scalar(select(ApiToken).where(ApiToken.digest == token_digest(token)))
            if record is None or (record.expires_at is not None and record.expires_at <= utcnow()):
                raise Unauthenticated("the token is unknown or expired")
            user = record.user
            return Principal(username=user.username, user_id=user.id, is_admin=user.is_admin)

    def resolve_target(self, principal: Principal, username: str | None) -> User:
        """The user a request acts for: oneself, or anyone for an administrator."""
        if username is None or username == principal.username:
            if principal.user_id is None:
                raise Invalid("the administrator token must name the user to act for")
            return self.get_user(principal.username)
        if not principal.is_admin:
            raise Forbidden("you may only act for yourself")
        return self.get_user(username)
