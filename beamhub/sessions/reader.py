"""Reading sessions and their events as a principal may see them; the read half of SessionService."""

from __future__ import annotations

from sqlalchemy import func, select

from beamhub.compute.backend import Backend, Capacity
from beamhub.db import Database
from beamhub.errors import Forbidden, NotFound
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.principal import Principal
from beamhub.sessions import logs
from beamhub.sessions.models import ACTIVE_STATES, SessionEvent, SessionRecord


class SessionReader:
    """Queries over sessions; SessionService adds the lifecycle."""

    db: Database
    backend: Backend
    identity: IdentityService

    def get(self, principal: Principal, session_id: str) -> SessionRecord:
        """A session the principal may see: their own, their beamlines' (staff), any (admin)."""
        with self.db.session() as db:
            record = db.get(SessionRecord, session_id)
        if record is None:
            raise NotFound("no session %(session)s", session=session_id)
        if not principal.may_manage(record.user_id, record.beamline):
            raise Forbidden("this session belongs to another user")
        return record

    def list(self, principal: Principal, username: str | None = None, active_only: bool = False,
             limit: int | None = None) -> list[SessionRecord]:
        """Sessions of one user, newest first (the latest `limit`); by default your own (and your beamlines' for
        staff), or all for an admin."""
        query = select(SessionRecord).order_by(SessionRecord.created_at.desc()).limit(limit)
        if username is not None or principal.user_id is not None and not principal.is_admin:
            mine = SessionRecord.user_id == self._target_id(principal, username)
            if username is None and principal.is_staff and principal.beamlines:
                mine = mine | SessionRecord.beamline.in_(principal.beamlines)
            query = query.where(mine)
        if active_only:
            query = query.where(SessionRecord.state.in_(ACTIVE_STATES))
        with self.db.session() as db:
            return list(db.scalars(query))

    def _target_id(self, principal: Principal, username: str | None) -> int:
        """The id of the user a request acts for (identity.resolve_target), without reading the caller again."""
        if username in (None, principal.username) and principal.user_id is not None:
            return principal.user_id
        return self.identity.resolve_target(principal, username).id

    def find_active(self, principal: Principal, username: str, name: str) -> SessionRecord:
        """The active session of a user with this name."""
        user = self.identity.resolve_target(principal, username)
        with self.db.session() as db:
            record = db.scalar(select(SessionRecord).where(
                SessionRecord.user_id == user.id, SessionRecord.name == name,
                SessionRecord.state.in_(ACTIVE_STATES)))
        if record is None:
            raise NotFound("%(username)s has no active session named %(name)s", username=username, name=name)
        return record

    def log(self, principal: Principal, session_id: str, limit: int) -> str:
        """The tail of a session's log, for its owner and administrators: staff manage sessions from outside and
        do not read what a user's program printed."""
        record = self.get(principal, session_id)
        if principal.user_id != record.user_id and not principal.is_admin:
            raise Forbidden("only the session's owner and administrators may read its log")
        account = self.identity.account(record.user)
        return logs.read_tail(logs.log_path(account.home, record.id), account.uid, limit)

    def active(self) -> list[SessionRecord]:
        with self.db.session() as db:
            return list(db.scalars(select(SessionRecord).where(SessionRecord.state.in_(ACTIVE_STATES))))

    def events(self, principal: Principal, session_id: str, after: int = 0) -> list[SessionEvent]:
        self.get(principal, session_id)
        with self.db.session() as db:
            query = (select(SessionEvent).where(SessionEvent.session_id == session_id, SessionEvent.id > after)
                     .order_by(SessionEvent.id))
            return list(db.scalars(query))

    def events_of_user(self, principal: Principal, username: str, after: int) -> list[SessionEvent]:
        """Events after `after` of every session of one user the principal may see."""
        ids = [record.id for record in self.list(principal, username)]
        with self.db.session() as db:
            query = (select(SessionEvent).where(SessionEvent.session_id.in_(ids), SessionEvent.id > after)
                     .order_by(SessionEvent.id))
            return list(db.scalars(query))

    def latest_event_id(self) -> int:
        with self.db.session() as db:
            return db.scalar(select(func.max(SessionEvent.id))) or 0

    def partitions(self) -> list[str]:
        """The partitions (queues) the backend offers for a new session; none where it has no such choice."""
        return self.backend.partitions()

    def room(self) -> tuple[Capacity, Capacity]:
        """The node's capacity, and what of it is free for a new session now (less what active sessions hold)."""
        capacity = self.backend.capacity()
        active = self.active()
        used_gpus = {g for r in active for g in r.gpu_ids}
        return capacity, Capacity(ncores=max(capacity.ncores - sum(r.ncores for r in active), 0.0),
                                  memory=max(capacity.memory - sum(r.memory for r in active), 0),
                                  gpu_ids=tuple(g for g in capacity.gpu_ids if g not in used_gpus))
