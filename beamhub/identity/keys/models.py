"""Users' SSH public keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from beamhub.db import Base, UTCDateTime, utcnow


class SshKey(Base):
    """A user's SSH public key, validated, with its SHA256 fingerprint."""

    __tablename__ = "ssh_keys"
    __table_args__ = (Index("ix_ssh_keys_user_fingerprint", "user_id", "fingerprint", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    algorithm: Mapped[str] = mapped_column(String(64))
    bits: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
