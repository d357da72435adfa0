"""Logging in: local passwords (argon2id), PAM, login sessions and the failed-login limit."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pam
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row, Select, bindparam, select

from beamhub.config import Settings
from beamhub.db import Database, utcnow
from beamhub.errors import N_, Forbidden, Invalid, NotFound, Unauthenticated
from beamhub.identity.accounts import reads
from beamhub.identity.accounts.models import User, UserState
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.audit.service import AuditService
from beamhub.identity.login.failures import FailureLimiter
from beamhub.identity.login.models import LoginSession
from beamhub.identity.principal import SYSTEM, Principal

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
WRONG_CREDENTIALS = N_("wrong username or password")
def cookie_digest(value: str) -> str:
    """The SHA-256 under which a cookie's session is stored."""
    return hashlib.sha256(value.encode()).hexdigest()


@functools.cache
def _login_query(dialect: str, by: str) -> Select[Any]:
    """The login session with the bound `key` in column `by` (digest or id), its user's identity and groups."""
    logins = LoginSession.__table__
    return (select(logins.c.id, logins.c.csrf_token, logins.c.expires_at, logins.c.ended_at, *reads.USER_COLUMNS,
                   reads.groups_column(dialect))
            .join_from(logins, reads.users, logins.c.user_id == reads.users.c.id)
            .where(logins.c[by] == bindparam("key")))


class LoginService:
    """Checks credentials and keeps browsers' login sessions."""

    def __init__(self, db: Database, settings: Settings, identity: IdentityService,
                 audit: AuditService | None = None) -> None:
        self.db = db
        self.settings = settings
        self.identity = identity
        self.audit = audit
        self.hasher = PasswordHasher()  # argon2id with argon2-cffi's current parameters
        self.limiter = FailureLimiter(db, settings.login_max_failures, settings.login_failure_window)

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """What unknown users' passwords are checked against, so that timing tells nothing (made when first needed)."""
        return self.hasher.hash(secrets.token_urlsafe(16))

    # --- passwords ---------------------------------------------------------------------
    def set_password(self, by: Principal, username: str, password: str) -> None:
        """Store an argon2id hash of a new local password: the user themself or an administrator, with a login
        session or an unscoped token (a limited token could otherwise take the account over)."""
        by.require_full_credential()
        if username != by.username:
            by.require_admin()
        if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise Invalid("a password needs %(minimum)s to %(maximum)s characters", minimum=MIN_PASSWORD_LENGTH,
                          maximum=MAX_PASSWORD_LENGTH)
        digest = self.hasher.hash(password)
        with self.db.session() as db:
            user = db.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFound("no user %(username)s", username=username)
            user.password_hash = digest
        self._record("user.password", by.username, target=username, address=by.address)

    def _password_matches(self, user: User | None, password: str) -> bool:
        """Verify against the stored hash (a dummy one for unknown users, so timing tells nothing)."""
        stored = user.password_hash if user is not None and user.password_hash else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        if user is None or not user.password_hash:
            return False
        if self.hasher.check_needs_rehash(stored):
            self._rehash(user.id, password)
        return True

    def _rehash(self, user_id: int, password: str) -> None:
        with self.db.session() as db:
            user = db.get(User, user_id)
            if user is not None:
                user.password_hash = self.hasher.hash(password)

    def _pam_matches(self, user: User | None, password: str) -> bool:
        """Ask PAM (service settings.pam_service), only for users beamhub knows."""
        if user is None:
            return self._password_matches(None, password)  # as slow as a real check; always False
        return bool(pam.pam().authenticate(user.username, password, service=self.settings.pam_service))

    # --- logging in --------------------------------------------------------------------
    def login(self, username: str, password: str, method: str, address: str) -> User:
        """The user, if the credentials are right: 401 if not, 403 if disabled, 429 after too many failures."""
        if method not in ("password", "pam") or method not in self.settings.login_methods:
            raise Invalid("login method %(method)r is not enabled here", method=method)
        self.limiter.check(username, address)
        user = self._find(username)
        check = self._password_matches if method == "password" else self._pam_matches
        if not password or len(password) > MAX_PASSWORD_LENGTH or not check(user, password):
            self.limiter.failed(username, address)
            self._record("login", username, address=address, success=False, method=method, reason="credentials")
            raise Unauthenticated(WRONG_CREDENTIALS)
        assert user is not None
        self.require_active(user, method, address)
        self.limiter.succeeded(username)
        return user

    def require_active(self, user: User, method: str, address: str) -> None:
        """Forbidden (403) for a disabled account, with an audit record."""
        if user.state is not UserState.active:
            self._record("login", user.username, address=address, success=False, method=method, reason="disabled")
            raise Forbidden("account disabled")

    def single_sign_on_user(self, username: str, claims: dict[str, object], address: str) -> User:
        """The active user a provider's username maps to, created (by beamhub) if configured; else 403, audited."""
        user = self._find(username)
        if user is None and not self.settings.oidc_auto_create:
            self.record_failure(username, address, "oidc", "no such user")
            raise Forbidden("%(username)s has no beamhub account; ask the user office for one", username=username)
        if user is None:
            user = self.identity.create_user(username, display_name=str(claims.get("name") or ""),
                                             email=str(claims.get("email") or ""), by=SYSTEM)
        self.require_active(user, "oidc", address)
        return user

    def record_failure(self, username: str, address: str, method: str, reason: str) -> None:
        """Audit a refused login that the service itself did not see (single sign-on)."""
        self._record("login", username, address=address, success=False, method=method, reason=reason)

    def _find(self, username: str) -> User | None:
        with self.db.session() as db:
            return db.scalar(select(User).where(User.username == username))

    # --- sessions ----------------------------------------------------------------------
    def start_session(self, user: User, method: str, address: str) -> tuple[str, str]:
        """A new login session: (cookie value, CSRF token); only the cookie's SHA-256 is stored."""
        value = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.session() as db:
            db.add(LoginSession(digest=cookie_digest(value), user_id=user.id, csrf_token=csrf, method=method,
                                address=address[:64], created_at=now,
                                expires_at=now + timedelta(seconds=self.settings.login_session_ttl)))
        self._record("login", user.username, address=address, method=method)
        return value, csrf

    def resolve_cookie(self, value: str | None) -> tuple[Principal, str]:
        """The principal and CSRF token of a live session cookie; 401 if ended or expired, 403 if disabled."""
        if not value:
            raise Unauthenticated("credentials are required")
        found = self._read("digest", cookie_digest(value))
        return self._live(found), found.csrf_token if found is not None else ""

    def principal_of_login(self, login_id: int) -> Principal:
        """The principal of a login session found by its id (what a session's entry cookie stands on)."""
        return self._live(self._read("id", login_id))

    def _read(self, by: str, key: str | int) -> Row[Any] | None:
        """The login session whose `by` (digest or id) is `key`, with its user and their groups: one statement."""
        with self.db.engine.connect() as connection:
            return connection.execute(_login_query(connection.dialect.name, by), {"key": key}).one_or_none()

    def _live(self, found: Row[Any] | None) -> Principal:
        """The principal of a login session that still stands; 401 if ended or expired, 403 if disabled."""
        if found is None or found.ended_at is not None or found.expires_at <= utcnow():
            raise Unauthenticated("the login session is unknown, ended or expired; log in again")
        if found.state is not UserState.active:
            raise Forbidden("account disabled")
        return replace(self.identity.principal_of_read(found), login_id=found.id, expires_at=found.expires_at)

    def principal_for_cookie(self, value: str | None) -> Principal:
        """The principal of a live session cookie."""
        return self.resolve_cookie(value)[0]

    def end_session(self, value: str | None, address: str = "") -> bool:
        """End the session of a cookie; False if there was none to end."""
        if not value:
            return False
        with self.db.session() as db:
            record = db.scalar(select(LoginSession).where(LoginSession.digest == cookie_digest(value)))
            if record is None or record.ended_at is not None:
                return False
            record.ended_at = utcnow()
            username = record.user.username
        self.identity.revoked()
        self._record("logout", username, address=address)
        return True

    # --- audit -------------------------------------------------------------------------
    def _record(self, action: str, actor: str, target: str = "", address: str = "", success: bool = True,
                **detail: object) -> None:
        """Write an audit event if the audit service is wired in; never a secret."""
        log.info("%s %s by %s from %s", action, "ok" if success else "refused", actor, address or "-")
        if self.audit is not None:
            self.audit.record(actor, action, target=target, address=address, success=success, **detail)


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted secret with the expected one."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())
