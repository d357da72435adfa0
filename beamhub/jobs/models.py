"""Batch jobs and their events: what was asked, and the last Slurm said of it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from beamhub.db import Base, UTCDateTime, utcnow
from beamhub.identity.accounts.models import User


class JobState(str, enum.Enum):
    """Slurm's job states, lower case; `lost` when Slurm forgot a job before beamhub saw it end."""

    pending = "pending"
    running = "running"
    suspended = "suspended"
    completing = "completing"
    completed = "completed"
    failed = "failed"
    timeout = "timeout"
    out_of_memory = "out_of_memory"
    node_fail = "node_fail"
    cancelled = "cancelled"
    preempted = "preempted"
    lost = "lost"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_JOB_STATES


ACTIVE_JOB_STATES = frozenset({JobState.pending, JobState.running, JobState.suspended, JobState.completing})


class Job(Base):
    """One batch job of one user."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    slurm_id: Mapped[int] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(64))
    partition: Mapped[str | None] = mapped_column(String(64), nullable=True)
    script: Mapped[str | None] = mapped_column(Text, nullable=True)
    command: Mapped[str | None] = mapped_column(Text, nullable=True)
    ncores: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(BigInteger)
    nodes: Mapped[int] = mapped_column(Integer, default=1)
    minutes: Mapped[int] = mapped_column(Integer)
    proposal: Mapped[str | None] = mapped_column(String(64), nullable=True)
    beamline: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    state: Mapped[JobState] = mapped_column(Enum(JobState, native_enum=False, length=16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_path: Mapped[str] = mapped_column(Text)
    error_path: Mapped[str] = mapped_column(Text)

    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class JobEvent(Base):
    """A change of a job's state or reason, streamed to clients."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
