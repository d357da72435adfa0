"""Sessions, their events and the beamline workstations that hold them."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from beamhub.db import Base, UTCDateTime, utcnow
from beamhub.identity.accounts.models import User


class SessionState(str, enum.Enum):
    pending = "pending"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    completed = "completed"
    failed = "failed"
    expired = "expired"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATES


ACTIVE_STATES = frozenset({SessionState.pending, SessionState.starting, SessionState.running, SessionState.stopping})


class SessionRecord(Base):
    """One session: what was asked, where it runs and what state it is in."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_active", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(255))
    ncores: Mapped[float] = mapped_column(Float)
    memory: Mapped[int] = mapped_column(BigInteger)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    gpu_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    command: Mapped[str | None] = mapped_column(Text, nullable=True)
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    beamline: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    description: Mapped[str] = mapped_column(Text, default="")

    state: Mapped[SessionState] = mapped_column(Enum(SessionState, native_enum=False, length=16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    url: Mapped[str | None] = mapped_column(String(255), nullable=True)
    token: Mapped[str] = mapped_column(String(64))
    agent_secret: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(32))
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    partition: Mapped[str | None] = mapped_column(String(64), nullable=True)
    nodes: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """Where a session on another host answers (its agent's TLS endpoint); None for one on beamhub's host."""
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tls_cert: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The session's own certificate: the proxy accepts no other from host:port."""
    placement: Mapped[str | None] = mapped_column(Text, nullable=True)
    """What the backend last said of where the session stands ("queued: ...", "running on node2")."""
    proposal: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The proposal whose data the session works on, if its user chose one."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_activity: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    activity: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    user: Mapped[User] = relationship(lazy="joined")


class SessionEvent(Base):
    """A transition or notice in a session's life, streamed to clients."""

    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="transition")
    message: Mapped[str] = mapped_column(Text, default="")

    session: Mapped[SessionRecord] = relationship()


class Workstation(Base):
    """A registered beamline workstation IP: it holds at most one session at a time."""

    __tablename__ = "workstations"

    id: Mapped[int] = mapped_column(primary_key=True)
    ip: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    beamline: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SessionGrant(Base):
    """A browser's way into one session on the session's own origin: first a one-time code the console hands out,
    then the cookie it is exchanged for. Only SHA-256 digests are stored, and a grant stands only while the login
    session or API token that asked for it stands."""

    __tablename__ = "session_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    kind: Mapped[str] = mapped_column(String(8))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    login_session_id: Mapped[int | None] = mapped_column(ForeignKey("login_sessions.id", ondelete="CASCADE"),
                                                         nullable=True, index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=True,
                                                 index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
