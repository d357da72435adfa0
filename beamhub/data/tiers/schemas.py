"""Request and response bodies of moving a proposal's data between tiers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from beamhub.identity.fields import NoNul


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
