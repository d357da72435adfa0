"""The session lifecycle: create, launch, report, extend, stop; the database is the truth."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from beamhub.broadcast import notify
from beamhub.compute.backend import Backend, BackendError, Endpoint, Held
from beamhub.compute.tls import proxy_identity
from beamhub.config import Settings
from beamhub.db import Database, utcnow
from beamhub.errors import N_, Conflict, Forbidden, Invalid, NotFound, NotReady, Unauthenticated
from beamhub.identity.accounts.models import User
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.audit.service import AuditService
from beamhub.identity.principal import SYSTEM, Principal
from beamhub.locks import HostLocks
from beamhub.metrics import SPAWN_SECONDS
from beamhub.sessions import broadcast, kinds, reasons
from beamhub.sessions.credentials import end_session_credentials, session_credentials
from beamhub.sessions.launch import build_launch, image_folder
from beamhub.sessions.models import ACTIVE_STATES, SessionEvent, SessionRecord, SessionState, Workstation
from beamhub.sessions.reader import SessionReader
from beamhub.sessions.schemas import AgentReport, SessionSpec
from beamhub.sessions.workstations import check_claim, hold_workstation
from beamhub.units import format_size

log = logging.getLogger(__name__)
S = SessionState

TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.pending: frozenset({S.starting, S.stopping, S.completed, S.failed}),
    S.starting: frozenset({S.running, S.stopping, S.completed, S.failed, S.expired}),
    S.running: frozenset({S.stopping, S.completed, S.failed, S.expired}),
    S.stopping: frozenset({S.stopped, S.failed, S.expired}),
}

LIVE_STATES = frozenset({S.pending, S.starting, S.running})
"""Active and not yet being stopped."""

AUDITED_STATES = {S.starting: "session.start", S.stopped: "session.stop", S.completed: "session.complete",
                  S.failed: "session.fail", S.expired: "session.expire"}
"""The transitions the audit log records, and their action names."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionService(SessionReader):
    def __init__(self, db: Database, settings: Settings, backend: Backend, identity: IdentityService,
                 audit: AuditService, locks: HostLocks) -> None:
        self.db = db
        self.settings = settings
        self.backend = backend
        self.identity = identity
        self.audit = audit
        self._allocation = locks("session-allocation")  # by any process of this host
        self._moving = locks("session-states")  # requests, the reconciler and agent reports move states one at a time
        self._ending: set[str] = set()  # sessions whose processes a thread of this process is stopping now
        self.on_leaving_running: list[Callable[[], None]] = []
        """Called when a session stops running: the proxy forgets who it let in (it keeps that for seconds)."""
        self.user_env: Callable[[User], dict[str, str]] = lambda _user: {}  # what other domains tell its agents
        self.check_proposal: Callable[[Principal, str], object] = lambda _user, _proposal: None
        """Refuses a proposal the session's user may not know (NotFound)."""
        self.prefetch_proposal: Callable[[Principal, str], object] = lambda _user, _proposal: None
        """Starts copying a session's proposal's data to the fast tier, in the background."""

    def runtime_dir(self, session_id: str) -> Path:
        """The session's private directory on its node, where its program's socket lives."""
        return self.settings.runtime_dir / session_id

    def upstream_socket(self, session_id: str) -> Path:
        return self.runtime_dir(session_id) / kinds.SOCKET_NAME

    def entered(self, principal: Principal, session_id: str) -> SessionRecord:
        """A running session the principal may enter: only its owner does (staff and admins manage it from
        outside, they never run code as its user)."""
        record = self.get(principal, session_id)
        if principal.user_id != record.user_id:
            raise Forbidden("only %(owner)s may enter session %(session)s",
                            owner=record.user.username, session=session_id)
        if record.state is not S.running:
            raise NotReady("session %(session)s is %(state)s, not running",
                           session=session_id, state=record.state.value)
        return record

    def proxy_target(self, principal: Principal, session_id: str) -> tuple[Endpoint, str]:
        """Where a running session the principal owns answers, and its private token: its socket on this host, or
        its agent's endpoint on a node with the certificate the proxy pins."""
        record = self.entered(principal, session_id)
        if record.tls_cert is not None:
            return Endpoint(host=record.host, port=record.port, cert=record.tls_cert,
                            client=proxy_identity(self.settings.state_dir)), record.token
        return Endpoint(socket=self.upstream_socket(record.id)), record.token

    # --- creating ----------------------------------------------------------------------
    def create(self, principal: Principal, spec: SessionSpec, username: str | None = None) -> SessionRecord:
        """Record, place and launch a session; it answers once the agent reports it ready."""
        user = self.identity.resolve_target(principal, username)
        image = spec.image or self.settings.default_image
        image_path = image_folder(self.settings, image)
        kinds.program_for(spec.kind, image_path, "check", Path(), "", spec.command, spec.args)  # Invalid first
        runtime = spec.runtime or self.settings.default_runtime
        if runtime > self.settings.max_runtime:
            raise Invalid("runtime %(runtime)s s exceeds the maximum of %(maximum)s s",
                          runtime=runtime, maximum=self.settings.max_runtime)
        if spec.proposal:
            principal.require_scope("data:read")  # the session will read it, and its data moves
            self.check_proposal(self.identity.principal_of(user), spec.proposal)
        if spec.source_ip:
            with self.db.session() as db:
                check_claim(db, principal, spec.source_ip)
            self._release_workstation(spec.source_ip)
        secret = secrets.token_urlsafe(32)
        with self._allocation, self.db.session() as db:
            name = spec.name or self._free_name(db, user.id, spec.kind)
            if self._active_named(db, user.id, name):
                raise Conflict("you already have an active session named %(name)s", name=name)
            gpu_ids = self._allocate(db, spec)
            now = utcnow()
            record = SessionRecord(
                id=secrets.token_hex(8), user_id=user.id, name=name, kind=spec.kind, image=image,
                ncores=spec.ncores, memory=spec.memory, gpus=spec.gpus, gpu_ids=gpu_ids, command=spec.command,
                args=list(spec.args), env=dict(spec.env), source_ip=spec.source_ip, description=spec.description,
                nodes=spec.nodes, partition=spec.partition or self.settings.slurm_partition, proposal=spec.proposal,
                state=S.pending, token=secrets.token_hex(24), agent_secret=_digest(secret),
                backend=self.backend.name, created_at=now, expires_at=now + timedelta(seconds=runtime),
            )
            db.add(record)
            hold_workstation(db, spec.source_ip, record.id)
            requested = N_("requested %(cores)s cores, %(memory)s memory, %(gpus)s GPU(s) for %(runtime)s s")
            self._event(db, record, requested % {"cores": f"{spec.ncores:g}", "memory": format_size(spec.memory),
                                                 "gpus": spec.gpus, "runtime": runtime})
            self.audit.add_as(db, principal, "session.create", record.id, user=user.username, name=name,
                              kind=spec.kind, ncores=spec.ncores, memory=spec.memory, gpus=spec.gpus,
                              source_ip=spec.source_ip, beamline=record.beamline)
        self._launch(record, user, image_path, secret, principal)
        if spec.proposal:
            self.prefetch_proposal(self.identity.principal_of(user), spec.proposal)
        return self.get(SYSTEM, record.id)

    def _release_workstation(self, ip: str) -> None:
        """Stop the session a registered beamline workstation holds before it gets a new one."""
        with self.db.session() as db:
            held = db.scalar(select(Workstation.session_id).where(Workstation.ip == ip))
        if held:
            self.stop(SYSTEM, held, reason=N_("workstation %(ip)s started a new session") % {"ip": ip})

    @staticmethod
    def _active_named(db: Session, user_id: int, name: str) -> bool:
        query = select(SessionRecord.id).where(SessionRecord.user_id == user_id, SessionRecord.name == name,
                                               SessionRecord.state.in_(ACTIVE_STATES))
        return db.scalar(query) is not None

    def _free_name(self, db: Session, user_id: int, kind: str) -> str:
        for n in range(1, 1000):
            name = kind if n == 1 else f"{kind}-{n}"
            if not self._active_named(db, user_id, name):
                return name
        raise Conflict("too many active sessions")

    def _allocate(self, db: Session, spec: SessionSpec) -> list[str]:
        """GPU ids for a new session where the backend places it (InsufficientResources if there is no room)."""
        offered = self.backend.partitions()
        if spec.partition and not offered:
            raise Invalid("unknown partition %(partition)r; offered: none", partition=spec.partition)
        if spec.partition and spec.partition not in offered:
            raise Invalid("unknown partition %(partition)r; offered: %(offered)s", partition=spec.partition,
                          offered=", ".join(offered))
        active = db.scalars(select(SessionRecord).where(SessionRecord.state.in_(ACTIVE_STATES)))
        held = [Held(ncores=r.ncores, memory=r.memory, gpu_ids=tuple(r.gpu_ids)) for r in active]
        return self.backend.place(spec.ncores, spec.memory, spec.gpus, held)

    def _launch(self, record: SessionRecord, user: User, image_path: Path, secret: str, by: Principal) -> None:
        try:
            env = self.user_env(user) | session_credentials(self.identity, self.settings, user, record)
            launch = build_launch(self.settings, self.backend, record, self.identity.account(user), image_path,
                                  self.runtime_dir(record.id), secret, env)
            handle = self.backend.start(launch.spec)
        except BackendError as exc:
            self.transition(record.id, S.failed, str(exc), only_from=LIVE_STATES, by=by)
            return
        with self._moving, self.db.session() as db:
            live = self._locked(db, record.id)
            if live.state is S.pending:
                live.handle, live.tls_cert = handle, launch.tls_cert
                started = N_("started on backend %(backend)s") % {"backend": self.backend.name}
                self._transition(db, live, S.starting, started, by)
                return
        self.backend.stop(handle)  # it was stopped while it launched

    # --- changing ----------------------------------------------------------------------
    @staticmethod
    def _locked(db: Session, session_id: str) -> SessionRecord:
        """The session's row, locked until the unit of work ends (PostgreSQL; SQLite has one writer)."""
        query = select(SessionRecord).where(SessionRecord.id == session_id).with_for_update(of=SessionRecord)
        record = db.scalar(query)
        if record is None:
            raise NotFound("no session %(session)s", session=session_id)
        return record

    def transition(self, session_id: str, state: SessionState, message: str = "",
                   only_from: frozenset[SessionState] | None = None, by: Principal = SYSTEM) -> SessionRecord:
        """Move a session to `state`. With `only_from`, only if it is still in one of those states: otherwise a
        concurrent stop, the reconciler or an agent report moved it first, and it is returned as it stands."""
        with self._moving, self.db.session() as db:
            record = self._locked(db, session_id)
            if only_from is None or record.state in only_from:
                self._transition(db, record, state, message, by)
            return record

    def _transition(self, db: Session, record: SessionRecord, state: SessionState, message: str,
                    by: Principal = SYSTEM) -> None:
        if state not in TRANSITIONS.get(record.state, frozenset()):
            raise Conflict("session %(session)s is %(state)s; it cannot become %(new_state)s",
                           session=record.id, state=record.state.value, new_state=state.value)
        if record.state is S.running:
            for hook in self.on_leaving_running:
                hook()
        record.state = state
        now = utcnow()
        if state is S.running:
            record.started_at = now
        if not state.is_active:
            record.ended_at = now
            ended = partial(end_session_credentials, self.identity, record.user_id, record.id)
            event.listen(db, "after_commit", lambda _db: ended(), once=True)  # its own unit of work, after this one
        if state in (S.completed, S.failed, S.expired) or (state is S.stopped and message):
            record.reason = message or record.reason
        self._event(db, record, message)
        self._audit_transition(db, record, by)

    def _audit_transition(self, db: Session, record: SessionRecord, by: Principal) -> None:
        """Record a session's start and its end (stopped, completed, failed, expired) in the audit log."""
        action = AUDITED_STATES.get(record.state)
        if action is not None:
            self.audit.add_as(db, by, action, record.id, success=record.state is not S.failed,
                              user=record.user.username if record.user else None, name=record.name,
                              kind=record.kind, beamline=record.beamline, reason=record.reason)

    @staticmethod
    def _event(db: Session, record: SessionRecord, message: str, kind: str = "transition") -> None:
        """Record an event; on PostgreSQL, the event streams' broadcaster is woken when it commits."""
        db.add(SessionEvent(session=record, state=record.state.value, kind=kind, message=message))
        notify(db, broadcast.CHANNEL)

    def stop_all_of(self, user_id: int, reason: str) -> None:
        """End every active session of a user (they were disabled)."""
        with self.db.session() as db:
            ids = list(db.scalars(select(SessionRecord.id).where(SessionRecord.user_id == user_id,
                                                                 SessionRecord.state.in_(ACTIVE_STATES))))
        for session_id in ids:
            self.stop(SYSTEM, session_id, reason=reason)

    def warn_expiry(self, session_id: str) -> None:
        """Tell the session's watchers that it expires soon (the reconciler decides when)."""
        with self.db.session() as db:
            record = db.get(SessionRecord, session_id)
            if record is None:
                return
            record.warned_at = now = utcnow()
            minutes = max(round((record.expires_at - now).total_seconds() / 60), 1)
            self._event(db, record, N_("ends in %(minutes)s min, at %(time)s; extend it to keep it")
                        % {"minutes": minutes, "time": record.expires_at.isoformat()}, kind="warning")

    def stop(self, principal: Principal, session_id: str, final: SessionState = S.stopped,
             reason: str = "") -> SessionRecord:
        """End a session and free what it held; a session already ended is returned as it is."""
        record = self.get(principal, session_id)
        if not record.state.is_active:
            return record
        asked = N_("stop requested by %(username)s") % {"username": principal.username}
        record = self.transition(session_id, S.stopping, reason or asked,
                                 only_from=LIVE_STATES, by=principal)
        if record.state is not S.stopping:
            return record
        with self._moving:
            if session_id in self._ending:
                return record  # a request or the reconciler of this process is ending it now
            self._ending.add(session_id)
        try:
            if record.handle:
                self.backend.stop(record.handle)
            return self.transition(session_id, final, reason, only_from=frozenset({S.stopping}), by=principal)
        finally:
            with self._moving:
                self._ending.discard(session_id)

    def extend(self, principal: Principal, session_id: str, expires_at: datetime | None,
               runtime: int | None) -> SessionRecord:
        """Move the expiry of an active session."""
        record = self.get(principal, session_id)
        if not record.state.is_active or record.state is S.stopping:
            raise Conflict("session %(session)s is %(state)s; only active sessions can be extended",
                           session=session_id, state=record.state.value)
        if (expires_at is None) == (runtime is None):
            raise Invalid("give either expires_at or runtime")
        new_expiry = expires_at if expires_at is not None else utcnow() + timedelta(seconds=runtime or 0)
        if new_expiry.tzinfo is None:
            raise Invalid("expires_at needs a timezone, e.g. 2026-01-01T12:00:00Z")
        if new_expiry <= utcnow():
            raise Invalid("the new expiry is in the past")
        if new_expiry > record.created_at + timedelta(seconds=self.settings.max_runtime):
            raise Invalid("a session may last at most %(maximum)s s", maximum=self.settings.max_runtime)
        if record.handle:
            try:
                self.backend.extend(record.handle, int((new_expiry - utcnow()).total_seconds()))
            except BackendError as exc:
                raise Conflict("the backend did not extend session %(session)s: %(reason)s",
                               session=session_id, reason=exc) from exc
        with self.db.session() as db:
            live = db.get(SessionRecord, session_id)
            assert live is not None
            live.expires_at, live.warned_at = new_expiry, None
            self._event(db, live, N_("expiry moved to %(time)s") % {"time": new_expiry.isoformat()}, kind="extended")
        return self.get(principal, session_id)

    def extend_inside(self, principal: Principal, session_id: str, seconds: int) -> SessionRecord:
        """The owner, from inside a running session, moves its expiry `seconds` later (at most to its longest)."""
        record = self.entered(principal, session_id)
        longest = record.created_at + timedelta(seconds=self.settings.max_runtime)
        if record.expires_at >= longest:
            raise Invalid("a session may last at most %(maximum)s s", maximum=self.settings.max_runtime)
        return self.extend(principal, session_id, min(record.expires_at + timedelta(seconds=seconds), longest), None)

    # --- the agent -----------------------------------------------------------------------
    def agent_report(self, session_id: str, secret: str, report: AgentReport) -> None:
        """Take an event from a session's agent, authenticated by the session's secret."""
        with self._moving, self.db.session() as db:
            record = db.get(SessionRecord, session_id, with_for_update={"of": SessionRecord})
            if record is None or not hmac.compare_digest(record.agent_secret, _digest(secret)):
                raise Unauthenticated("unknown session or wrong agent secret")
            if report.event == "ready" and record.state is S.starting:
                self._ready(db, record, report)
            elif report.event == "activity":
                record.last_activity = utcnow()
                record.activity = {"cpu_seconds": report.cpu_seconds}
        if report.event == "exited":
            self.exited(session_id, report.status)

    def _ready(self, db: Session, record: SessionRecord, report: AgentReport) -> None:
        """The agent says the program answers: on its socket, or (a session on another host) on the endpoint it
        opened, which the proxy reaches with the session's certificate pinned."""
        where = N_("answers on its socket")
        if record.tls_cert is not None:
            if report.host is None or report.port is None:
                raise Invalid("a session on another host reports the host and port it answers on")
            record.host, record.port = report.host, report.port
            where = N_("answers on %(host)s:%(port)s (TLS, the session's own certificate)") % {"host": report.host,
                                                                                              "port": report.port}
        record.url = kinds.proxy_prefix(record.id)
        self._transition(db, record, S.running, where)
        SPAWN_SECONDS.labels(record.kind, record.backend).observe((utcnow() - record.created_at).total_seconds())

    def note_progress(self, session_id: str, progress: str) -> None:
        """What the backend says of a live session (queued and why, the node it runs on): an event when it changes."""
        with self._moving, self.db.session() as db:
            record = db.get(SessionRecord, session_id, with_for_update={"of": SessionRecord})
            if record is not None and record.state in LIVE_STATES and record.placement != progress:
                record.placement = progress
                self._event(db, record, progress, kind="backend")

    def exited(self, session_id: str, status: int | None) -> None:
        """End a live session whose program exited: completed for status 0, else failed with the reason in words."""
        self.end(session_id, S.completed if status == 0 else S.failed, reasons.exit_reason(status))

    def fail(self, session_id: str, reason: str) -> None:
        """Mark a live session failed and clean up whatever of it remains."""
        self.end(session_id, S.failed, reason)

    def end(self, session_id: str, final: SessionState, reason: str) -> None:
        """Move a live session to an end state and clean up whatever of it remains; one being stopped is left to
        its stop."""
        with self._moving, self.db.session() as db:
            record = db.get(SessionRecord, session_id, with_for_update={"of": SessionRecord})
            if record is None or record.state not in LIVE_STATES:
                return
            handle = record.handle
            self._transition(db, record, final, reason)
        if handle:
            self.backend.stop(handle)

