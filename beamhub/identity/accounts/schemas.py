"""Request and response bodies of the users, groups and tokens API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from beamhub.identity.accounts.models import Role, UserState
from beamhub.identity.fields import (
    MAX_ID,
    MAX_ITEMS,
    MAX_SECONDS,
    USERNAME_PATTERN,
    Beamline,
    Line,
    Name,
    NoNul,
    Username,
)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="POSIX user name")
    uid: int | None = Field(None, ge=1000, le=MAX_ID, description="taken from the configured range when absent")
    groups: list[Username] = Field(default_factory=list, max_length=MAX_ITEMS, description="supplementary group names")
    roles: list[Role] = Field(default_factory=lambda: [Role.user], max_length=len(Role))
    beamlines: list[Beamline] = Field(default_factory=list, max_length=MAX_ITEMS,
                                  description="beamlines a staff member serves")
    display_name: NoNul = Field("", max_length=128)
    email: Line = ""


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[Role] | None = Field(None, max_length=len(Role))
    beamlines: list[Beamline] | None = Field(None, max_length=MAX_ITEMS)
    state: UserState | None = None
    display_name: NoNul | None = Field(None, max_length=128)
    email: Line | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    uid: int
    gid: int
    groups: list[str]
    roles: list[str]
    beamlines: list[str]
    is_admin: bool
    state: UserState
    display_name: str
    email: str
    created_at: datetime


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Username
    description: NoNul = Field("", max_length=1024)


class GroupOut(BaseModel):
    name: str
    gid: int
    description: str
    members: list[str]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field("api", min_length=1)
    expires_in: int | None = Field(None, ge=1, le=MAX_SECONDS, description="seconds until the token stops working")
    scopes: list[Name] | None = Field(None, max_length=MAX_ITEMS,
                                      description="sessions, data:read, data:ingest, admin "
                                                  "(default: all that the user's roles can use)")


class TokenInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenOut(TokenInfo):
    token: str = Field(description="shown once; only its hash is kept")
