"""Request and response bodies of the DAQ's registration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from beamhub.identity.fields import NoNul


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
