"""Request and response bodies of the users, groups and tokens API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from beamhub.identity.models import Role, UserState

USERNAME_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="POSIX user name")
    uid: int | None = Field(None, ge=1000, description="taken from the configured range when absent")
    groups: list[str] = Field(default_factory=list, description="supplementary group names")
    roles: list[Role] = Field(default_factory=lambda: [Role.user])
    beamlines: list[str] = Field(default_factory=list, description="beamlines a staff member serves")
    display_name: str = Field("", max_length=128)
    email: str = Field("", max_length=255)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[Role] | None = None
    beamlines: list[str] | None = None
    state: UserState | None = None
    display_name: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=255)


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

    name: str = Field(pattern=USERNAME_PATTERN)
    description: str = Field("", max_length=1024)


class GroupOut(BaseModel):
    name: str
    gid: int
    description: str
    members: list[str]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("api", min_length=1, max_length=64)
    expires_in: int | None = Field(None, gt=0, description="seconds until the token stops working")
    scopes: list[str] | None = Field(None, description="sessions, data:read, data:ingest, admin (default: all that the user's roles can use)")


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


class SshKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: str = Field(min_length=1, max_length=16_384,
                            description="one line of a .pub file: 'ssh-ed25519 AAAA... comment'")


class SshKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    algorithm: str
    bits: int
    fingerprint: str = Field(description="SHA256, as ssh-keygen -lf prints it")
    comment: str
    created_at: datetime
    public_key: str


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    address: str
    success: bool
    detail: dict[str, Any]
