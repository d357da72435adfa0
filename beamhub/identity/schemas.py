"""Request and response bodies of the users API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

USERNAME_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="POSIX user name")
    uid: int | None = Field(None, ge=1000, description="taken from the configured range when absent")
    groups: list[str] = Field(default_factory=list, description="supplementary group names")
    is_admin: bool = False


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    uid: int
    gid: int
    groups: list[str]
    is_admin: bool
    created_at: datetime


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("api", min_length=1, max_length=64)
    expires_in: int | None = Field(None, gt=0, description="seconds until the token stops working")


class TokenOut(BaseModel):
    name: str
    token: str = Field(description="shown once; only its hash is kept")
    expires_at: datetime | None
