"""Session requests and answers of /api/v1/sessions, and the SessionSpec both APIs produce."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from beamhub.units import parse_size

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


@dataclass(frozen=True)
class SessionSpec:
    """What a user asks to run, whichever API it came through; sizes in bytes."""

    kind: str
    name: str | None = None
    image: str | None = None
    ncores: float = 1.0
    memory: int = 2 * 2**30
    gpus: int = 0
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    runtime: int | None = None
    source_ip: str | None = None
    description: str = ""


def check_ip(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc


def check_size(value: str | int) -> int:
    size = parse_size(value)
    if size < 64 * 2**20:
        raise ValueError("memory must be at least 64Mi")
    return size


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, description="whose session (administrators only; default: yourself)")
    name: str | None = Field(None, pattern=NAME_PATTERN, description="unique among your active sessions")
    kind: str = Field("jupyter", description="jupyter | command")
    image: str | None = None
    ncores: float = Field(1.0, gt=0, le=1024)
    memory: int = Field(2 * 2**30, description='bytes, or a size such as "200G" or "4Gi"')
    gpus: int = Field(0, ge=0, le=64)
    command: str | None = Field(None, max_length=4096)
    args: list[str] = Field(default_factory=list, max_length=256)
    env: dict[str, str] = Field(default_factory=dict)
    runtime: int | None = Field(None, gt=0, description="seconds until the session expires")
    source_ip: str | None = None
    description: str = Field("", max_length=1024)

    _memory = field_validator("memory", mode="before")(check_size)
    _ip = field_validator("source_ip")(check_ip)

    def to_spec(self) -> SessionSpec:
        return SessionSpec(**self.model_dump(exclude={"user"}))


class SessionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_at: datetime | None = Field(None, description="new expiry (timezone-aware)")
    runtime: int | None = Field(None, gt=0, description="or: seconds from now")


class SessionOut(BaseModel):
    id: str
    user: str
    name: str
    kind: str
    image: str
    ncores: float
    memory: int
    gpus: int
    gpu_ids: list[str]
    state: str
    reason: str | None
    url: str
    source_ip: str | None
    description: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    expires_at: datetime
    running_seconds: float | None
    last_activity: datetime | None


class EventOut(BaseModel):
    id: int
    session_id: str
    at: datetime
    state: str
    kind: str
    message: str


class AgentReport(BaseModel):
    """What a session's agent tells beamhub."""

    event: Literal["ready", "activity", "exited"]
    port: int | None = None
    status: int | None = None
    cpu_seconds: float | None = None
