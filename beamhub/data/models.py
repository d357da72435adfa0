"""The data catalogue: proposals, their members, datasets and files."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from beamhub.db import Base, UTCDateTime, utcnow
from beamhub.identity.accounts.models import User

PATH_BYTES = 1024
"""Longest relative path (UTF-8 bytes) the catalogue records: it must fit a PostgreSQL btree entry."""

PathString = String(PATH_BYTES).with_variant(String(PATH_BYTES, collation="C"), "postgresql")
"""Paths compare byte by byte on both databases, so a folder is one index range."""

RowId = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit key; SQLite only auto-increments an INTEGER primary key."""


LISTED = ("parent", "size", "mtime_ns", "sha256", "tier", "registered_at", "id")
"""The columns of a file listing beyond (proposal_id, relpath): PostgreSQL's path index carries them, so a page is
read from the index alone, however the table's rows lie on disk."""


class MemberRole(str, enum.Enum):
    pi = "pi"
    member = "member"


class Proposal(Base):
    """An accepted proposal: its beamtime, embargo and where its data lives."""

    __tablename__ = "proposals"
    __table_args__ = (
        Index("ix_proposals_beamline_id", "beamline", "id"),
        Index("ix_proposals_released_id", "id", sqlite_where=text("embargo_released_at IS NOT NULL"),
              postgresql_where=text("embargo_released_at IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    beamline: Mapped[str] = mapped_column(String(24))
    tier: Mapped[str] = mapped_column(String(32))
    beamtime_start: Mapped[datetime] = mapped_column(UTCDateTime)
    beamtime_end: Mapped[datetime] = mapped_column(UTCDateTime)
    embargo_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    embargo_released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    acl_version: Mapped[int] = mapped_column(Integer, default=1)
    acl_applied_version: Mapped[int] = mapped_column(Integer, default=0)
    """The ACLs on disk match the catalogue when applied == version; a change bumps version first."""
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """When its data was last asked for (a prefetch, a session's start): the fast tier evicts the oldest first."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[ProposalMember]] = relationship(back_populates="proposal", lazy="selectin",
                                                         cascade="all, delete-orphan")


class ProposalMember(Base):
    """A user's membership of a proposal, as PI or member."""

    __tablename__ = "proposal_members"
    __table_args__ = (Index("ix_proposal_members_user_proposal", "user_id", "proposal_id"),)

    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[MemberRole] = mapped_column(Enum(MemberRole, native_enum=False, length=16))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    proposal: Mapped[Proposal] = relationship(back_populates="members")
    user: Mapped[User] = relationship(lazy="joined")


class Dataset(Base):
    """A first-level folder of a proposal, with totals kept by registration."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_proposal_name", "proposal_id", "name", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    file_count: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DataFile(Base):
    """One registered file: where it is, how big, when it changed, its SHA-256."""

    __tablename__ = "data_files"
    __table_args__ = (
        Index("ix_data_files_proposal_relpath", "proposal_id", "relpath", unique=True,
              postgresql_include=LISTED),
        Index("ix_data_files_proposal_parent", "proposal_id", "parent"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    proposal_id: Mapped[str] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"))
    relpath: Mapped[str] = mapped_column(PathString)
    parent: Mapped[str] = mapped_column(PathString)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tier: Mapped[str] = mapped_column(String(32))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
