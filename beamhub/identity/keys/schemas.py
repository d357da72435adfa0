"""Request and response bodies of the SSH keys API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from beamhub.identity.fields import NoNul


class SshKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: NoNul = Field(min_length=1, max_length=16_384,
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
