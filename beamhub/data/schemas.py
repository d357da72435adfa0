"""Request and response bodies of /api/v1/proposals: proposals, members, datasets, files, registration."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from beamhub.data.models import MemberRole
from beamhub.identity.fields import MAX_ITEMS, Beamline, Line, NoNul, Username, UtcDatetime

PROPOSAL_PATTERN = r"^[0-9]{4}-[0-9]{5}$"
"""A proposal id: the year and a number, e.g. 2024-00123."""

BEAMLINE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,17}$"
"""A beamline slug; its staff group is named `<slug>-staff`."""

T = TypeVar("T")


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    role: MemberRole = MemberRole.member


class ProposalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=PROPOSAL_PATTERN, description="e.g. 2024-00123")
    title: Line = Field(min_length=1)
    beamline: Beamline = Field(pattern=BEAMLINE_PATTERN, description="e.g. b7")
    beamtime_start: UtcDatetime
    beamtime_end: UtcDatetime
    embargo_until: UtcDatetime | None = Field(None, description="after it the data is readable by every user")
    tier: NoNul | None = Field(None, max_length=32,
                               description="storage tier of new data; the first configured when absent")
    members: list[Member] = Field(default_factory=list, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _beamtime_is_ordered(self) -> ProposalCreate:
        if self.beamtime_end < self.beamtime_start:
            raise ValueError("beamtime_end is before beamtime_start")
        return self


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: MemberRole = MemberRole.member


class MemberOut(BaseModel):
    username: str
    role: MemberRole


class ProposalOut(BaseModel):
    id: str
    title: str
    beamline: str
    tier: str
    path: str = Field(description="the proposal's folder on the data file system, on the tier that holds it now")
    current_path: str = Field(description="a path that leads to the proposal's folder on whichever tier holds it: "
                                          "the one sessions and jobs should use")
    beamtime_start: datetime
    beamtime_end: datetime
    embargo_until: datetime | None
    public: bool = Field(description="the embargo is over: every user may read the data")
    members: list[MemberOut]


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


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass `next` as `after` for the following page (null: none)."""

    items: list[T]
    next: str | None


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: NoNul = Field("", max_length=4096, description="folder or file inside the proposal; empty: all of it")
    tier: NoNul | None = Field(None, max_length=32, description="the tier it is in; the proposal's when absent")


class RegisterOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    files: int = Field(description="regular files found")
    added: int
    updated: int
    unchanged: int
    removed: int = Field(description="catalogue entries whose file is gone")
    skipped: int = Field(description="entries not recorded: names not UTF-8 or paths too long")
    acl_paths: int = Field(description="files and folders whose ACL was set")
    hashed_bytes: int
    refused: list[str] = Field(description="hard-linked files with a name outside the proposal (or not found "
                                           "inside it): their ACL is left alone and they are not catalogued")


class MigrationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: NoNul = Field(max_length=32, description="the tier to move the proposal's data to, e.g. warm")


class MigrationOut(BaseModel):
    """What a migration did; `kept` lists source entries left in place because they differ from their copy."""

    model_config = ConfigDict(from_attributes=True)

    proposal_id: str
    from_tier: str
    to_tier: str
    files_copied: int
    files_skipped: int = Field(description="already on the new tier, verified, from an earlier run")
    bytes_copied: int
    files_verified: int
    files_removed: int
    bytes_removed: int
    switched: bool = Field(description="the catalogue names the new tier")
    kept: list[str]
    seconds: float


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


class PrefetchOut(BaseModel):
    """What a prefetch did: `evicted` names the proposals moved back to make room, least recently used first."""

    model_config = ConfigDict(from_attributes=True)

    proposal_id: str
    tier: str = Field(description="the fast tier, where the data is now")
    from_tier: str
    already_there: bool = Field(description="it was on the fast tier before: nothing was copied")
    files_copied: int
    files_skipped: int = Field(description="already on the fast tier, verified, from an earlier run")
    bytes_copied: int
    files_verified: int
    files_removed: int = Field(description="files removed from the old tier once their copy was in place")
    evicted: list[str]
    kept: list[str] = Field(description="old-tier entries left in place: they differ from their copy")
    seconds: float
