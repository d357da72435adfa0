"""Users, their roles and state, groups and API tokens."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Column, Enum, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from beamhub.db import Base, UTCDateTime, utcnow


class Role(str, enum.Enum):
    user = "user"
    staff = "staff"
    admin = "admin"
    service = "service"


class UserState(str, enum.Enum):
    active = "active"
    disabled = "disabled"


group_members = Table(
    "group_members",
    Base.metadata,
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Group(Base):
    """A POSIX group beamhub knows: its members get its GID in every session and access decision."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    gid: Mapped[int] = mapped_column(Integer, unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[User]] = relationship(secondary=group_members, back_populates="group_list",
                                               lazy="selectin", order_by="User.username")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    uid: Mapped[int] = mapped_column(Integer, unique=True)
    gid: Mapped[int] = mapped_column(Integer)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    roles: Mapped[list[str]] = mapped_column(JSON, default=lambda: [Role.user.value])
    beamlines: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[UserState] = mapped_column(Enum(UserState, native_enum=False, length=16),
                                             default=UserState.active)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    group_list: Mapped[list[Group]] = relationship(secondary=group_members, back_populates="members",
                                                   lazy="selectin", order_by=Group.name)
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def groups(self) -> list[str]:
        """Names of the supplementary groups."""
        return [group.name for group in self.group_list]

    @property
    def is_admin(self) -> bool:
        return Role.admin.value in self.roles


class ApiToken(Base):
    """A bearer token with scopes; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="tokens", lazy="joined")
