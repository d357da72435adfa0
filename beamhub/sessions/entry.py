"""Entering a session on its own origin: the console hands its owner a one-time code, the session's origin
exchanges it for a cookie of its own, and that cookie stands only while the credential behind it does.

A code is bound to the browser that asked for it: the session's origin first gives the browser a state cookie of
its own, and the code is good only together with that state. So nobody can send a victim's browser into their own
session with a code they asked for (a login CSRF), which would let their pages run beside the victim's sessions.

A session's pages run whatever its user's program serves, so they never share an origin with the console: the
console's cookies never reach them, and their cookie opens that one session only.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, select

from beamhub.config import Settings
from beamhub.db import Database, utcnow
from beamhub.errors import Invalid, Unauthenticated
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.login.service import LoginService
from beamhub.identity.principal import Principal
from beamhub.sessions.models import SessionGrant
from beamhub.sessions.service import SessionService

CODE_TTL = timedelta(seconds=60)
"""How long the console's one-time code may take to reach the session's origin."""

COOKIE_TTL = timedelta(hours=12)
"""The longest an entry cookie stands, even while its login session lasts longer."""


STATE_MIN_LENGTH = 32
"""The shortest browser state a code is bound to (the session's origin makes 43 characters)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _bound(code: str, state: str) -> str:
    """A code together with the state of the browser it was issued to: only both redeem it."""
    return f"{state}:{code}"


def new_state() -> str:
    """A fresh browser state for entering a session (kept in a cookie of the session's origin)."""
    return secrets.token_urlsafe(32)


def session_origin(settings: Settings, session_id: str) -> str:
    """The origin (scheme://host[:port]) a session is served on."""
    return settings.session_url_pattern.replace("{session}", session_id).rstrip("/")


def session_host_pattern(settings: Settings) -> str:
    """The host name of every session's origin, with `{session}` where the session's id goes."""
    placeholder = "beamhub-session-id"
    host = urlsplit(settings.session_url_pattern.replace("{session}", placeholder)).hostname or ""
    return host.replace(placeholder, "{session}")


class SessionEntry:
    """Grants a session's owner entry on the session's own origin."""

    def __init__(self, db: Database, sessions: SessionService, identity: IdentityService,
                 login: LoginService) -> None:
        self.db = db
        self.sessions = sessions
        self.identity = identity
        self.login = login

    def issue_code(self, principal: Principal, session_id: str, state: str) -> str:
        """A one-time code that lets the owner of a running session in on its origin, for a login session or an
        API token (the bootstrap token owns no session), good only with the browser's `state`."""
        self.sessions.entered(principal, session_id)
        if principal.login_id is None and principal.token_id is None:
            raise Invalid("only a login session or an API token can open a session in a browser")
        if len(state) < STATE_MIN_LENGTH:
            raise Invalid("the link to the session lacks its state; open the session again from the console")
        code = secrets.token_urlsafe(32)
        self._grant("code", _bound(code, state), session_id, principal, utcnow() + CODE_TTL)
        return code

    def redeem_code(self, session_id: str, code: str, state: str | None) -> str:
        """The entry cookie for a one-time code and the state of the browser it was issued to (spent now, whatever
        happens next)."""
        spend = (delete(SessionGrant).where(SessionGrant.digest == _digest(_bound(code, state or "")),
                                            SessionGrant.kind == "code")
                 .returning(SessionGrant.session_id, SessionGrant.login_session_id, SessionGrant.token_id,
                            SessionGrant.expires_at))
        with self.db.session() as db:  # one statement: of two redemptions at once, only one gets the row
            row = db.execute(spend).first()
        grant = None if row is None else SessionGrant(session_id=row.session_id, token_id=row.token_id,
                                                      login_session_id=row.login_session_id,
                                                      expires_at=row.expires_at)
        if grant is None or grant.session_id != session_id or grant.expires_at <= utcnow():
            raise Unauthenticated("this link to the session is unknown, used, expired or was asked for by another "
                                  "browser; open the session again from the console")
        principal = self._behind(grant)
        self.sessions.entered(principal, session_id)
        cookie = secrets.token_urlsafe(32)
        self._grant("cookie", cookie, session_id, principal, utcnow() + COOKIE_TTL)
        return cookie

    def principal_for_cookie(self, session_id: str, cookie: str | None) -> Principal:
        """Who an entry cookie stands for, in this session only, while its login session or token stands."""
        if not cookie:
            raise Unauthenticated("credentials are required")
        with self.db.session() as db:
            grant = db.scalar(select(SessionGrant).where(SessionGrant.digest == _digest(cookie),
                                                         SessionGrant.kind == "cookie"))
        if grant is None or grant.session_id != session_id or grant.expires_at <= utcnow():
            raise Unauthenticated("the session's entry cookie is unknown or expired; open it from the console")
        return self._behind(grant)

    def _behind(self, grant: SessionGrant) -> Principal:
        """The principal of the credential a grant was issued to, if it still stands."""
        if grant.login_session_id is not None:
            return self.login.principal_of_login(grant.login_session_id)
        assert grant.token_id is not None
        return self.identity.principal_of_token(grant.token_id)

    def _grant(self, kind: str, secret: str, session_id: str, principal: Principal, expires_at: datetime) -> None:
        now = utcnow()
        with self.db.session() as db:
            db.execute(delete(SessionGrant).where(SessionGrant.expires_at <= now))
            db.add(SessionGrant(digest=_digest(secret), kind=kind, session_id=session_id,
                                login_session_id=principal.login_id,
                                token_id=principal.token_id if principal.login_id is None else None,
                                created_at=now, expires_at=expires_at))
