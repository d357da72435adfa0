"""Session requests and answers of /api/v1/sessions, and the SessionSpec both APIs produce."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from beamhub.data.proposals.schemas import PROPOSAL_PATTERN
from beamhub.identity.fields import MAX_ITEMS, MAX_SECONDS, USERNAME_PATTERN, Line, NoNul, UtcDatetime, no_nul
from beamhub.units import parse_size

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MIN_CORES = 0.01
"""The smallest CPU share: cgroup v1's CFS quota is at least 1 ms in its 100 ms period."""
MAX_CORES = 1024
MIN_MEMORY = 64 * 2**20
MAX_MEMORY = 2**46
"""64 TiB: more than any node has, and far from a 64-bit database column's end."""
MAX_GPUS = 64
MAX_NODES = 64
PARTITION_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

EnvName = Annotated[str, Field(max_length=255, pattern=ENV_NAME_PATTERN)]
Arg = Annotated[str, Field(max_length=4096), AfterValidator(no_nul)]
EnvValue = Annotated[str, Field(max_length=32_768), AfterValidator(no_nul)]


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
    partition: str | None = None
    nodes: int = 1
    proposal: str | None = None


def check_ip(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc


def check_size(value: object) -> int:
    """A memory size in bytes, between 64Mi and 64Ti."""
    if not isinstance(value, str | int):
        raise ValueError(f"{value!r} is not a size (examples: 200G, 512Mi, 1073741824)")
    size = parse_size(value)
    if size < MIN_MEMORY:
        raise ValueError("memory must be at least 64Mi")
    if size > MAX_MEMORY:
        raise ValueError("memory must be at most 64Ti")
    return size


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user: str | None = Field(None, pattern=USERNAME_PATTERN,
                             description="whose session (administrators only; default: yourself)")
    name: str | None = Field(None, pattern=NAME_PATTERN, description="unique among your active sessions")
    kind: NoNul = Field("jupyter", max_length=32, description="jupyter | command")
    image: Line | None = None
    ncores: float = Field(1.0, ge=MIN_CORES, le=MAX_CORES)
    memory: int = Field(2 * 2**30, ge=MIN_MEMORY, le=MAX_MEMORY, description='bytes, or a size such as "200G" or "4Gi"')
    gpus: int = Field(0, ge=0, le=MAX_GPUS)
    command: NoNul | None = Field(None, max_length=4096)
    args: list[Arg] = Field(default_factory=list, max_length=MAX_ITEMS)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=MAX_ITEMS)
    runtime: int | None = Field(None, ge=1, le=MAX_SECONDS, description="seconds until the session expires")
    source_ip: str | None = Field(None, max_length=64)
    description: NoNul = Field("", max_length=1024)
    partition: str | None = Field(None, pattern=PARTITION_PATTERN,
                                  description="the scheduler's partition (queue); default: the site's")
    nodes: int = Field(1, ge=1, le=MAX_NODES, description="nodes the session spans (a scheduler's backend)")
    proposal: str | None = Field(None, pattern=PROPOSAL_PATTERN,
                                 description="the proposal whose data the session works on: its data is copied to "
                                             "the fast tier ahead of use, and $BEAMHUB_PROPOSAL names it")

    _memory = field_validator("memory", mode="before")(check_size)
    _ip = field_validator("source_ip")(check_ip)

    def to_spec(self) -> SessionSpec:
        return SessionSpec(**self.model_dump(exclude={"user"}))


class SessionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_at: UtcDatetime | None = Field(None, description="new expiry (timezone-aware)")
    runtime: int | None = Field(None, ge=1, le=MAX_SECONDS, description="or: seconds from now")


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
    partition: str | None
    nodes: int
    proposal: str | None
    host: str | None = Field(description="the node a session on another host answers on")
    placement: str | None = Field(description="what the backend last said of it (queued and why, its node)")
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

    model_config = ConfigDict(allow_inf_nan=False)

    event: Literal["ready", "activity", "exited"]
    host: str | None = Field(None, max_length=255, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int | None = Field(None, ge=1, le=65535)
    status: int | None = Field(None, ge=-255, le=255)
    cpu_seconds: float | None = Field(None, ge=0)


class InsideOut(BaseModel):
    """What the banner inside a session's pages needs: when it ends, when to warn, and the way back."""

    id: str
    state: str
    expires_at: datetime
    now: datetime
    warnings: list[int] = Field(description="lead times before expiry, in seconds, at which its user is warned")
    console_url: str = Field(description="the session's page in the console")
