"""Request and response bodies of /api/v1/proposals: proposals and their members; a page of results."""

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


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass `next` as `after` for the following page (null: none)."""

    items: list[T]
    next: str | None
