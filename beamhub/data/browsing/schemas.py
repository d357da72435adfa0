"""Response bodies of a proposal's datasets, files and readers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    file_count: int
    total_bytes: int
    updated_at: datetime


class FileOut(BaseModel):
    path: str
    size: int
    mtime: datetime
    sha256: str | None = Field(description="absent while the file changed during its registration")
    tier: str


class ReaderOut(BaseModel):
    """A user who can read a path: the ACL entry that grants it, and the ways in (web, jupyter, smb)."""

    model_config = ConfigDict(from_attributes=True)

    username: str
    uid: int
    via: str
    paths: list[str]


class AclGroupOut(BaseModel):
    """A group the path's ACL names, and whether being in it lets one read the path."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    gid: int
    reads: bool


class ReadersOut(BaseModel):
    path: str
    users: list[ReaderOut]
    groups: list[AclGroupOut]
