"""The audit log's events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from beamhub.db import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """Who did what, when, from where; never a secret."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_at", "actor", "at"),
        Index("ix_audit_events_address_at", "address", "at"),
        Index("ix_audit_events_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    address: Mapped[str] = mapped_column(String(64), default="")
    success: Mapped[bool] = mapped_column(default=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
