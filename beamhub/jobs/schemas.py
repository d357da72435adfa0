"""Requests and answers of /api/v1/jobs."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from beamhub.data.proposals.schemas import PROPOSAL_PATTERN
from beamhub.identity.fields import USERNAME_PATTERN, NoNul
from beamhub.sessions.schemas import MAX_MEMORY, MIN_MEMORY, check_size

JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
PARTITION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
MAX_SCRIPT = 1024 * 1024
"""A batch script of at most 1 MiB (Slurm's own limit is 4 MiB)."""
MAX_COMMAND = 64 * 1024
MAX_MINUTES = 365 * 24 * 60
MAX_NODES = 64


class JobCreate(BaseModel):
    """A batch job: a script or a command, with its resources."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    user: str | None = Field(None, pattern=USERNAME_PATTERN,
                             description="whose job (administrators only; default: yourself)")
    name: str = Field("job", pattern=JOB_NAME_PATTERN)
    partition: str | None = Field(None, pattern=PARTITION_PATTERN, description="default: the cluster's default")
    script: NoNul | None = Field(None, max_length=MAX_SCRIPT, description="a batch script, starting with #!")
    command: NoNul | None = Field(None, max_length=MAX_COMMAND, description="or: one shell command line")
    ncores: int = Field(1, ge=1, le=1024, description="CPUs per task")
    memory: int = Field(2**30, ge=MIN_MEMORY, le=MAX_MEMORY, description='bytes, or a size such as "4G" or "512Mi"')
    nodes: int = Field(1, ge=1, le=MAX_NODES)
    minutes: int = Field(60, ge=1, le=MAX_MINUTES, description="time limit; Slurm ends the job after it")
    proposal: str | None = Field(None, pattern=PROPOSAL_PATTERN,
                                 description="the proposal the job works for: its beamline's staff may manage it")
    stage_in: bool = Field(False, description="copy the proposal's data to the fast tier first (a prefetch): the job "
                                              "is submitted once its data is there, and the request waits for it")

    _memory = field_validator("memory", mode="before")(check_size)

    @model_validator(mode="after")
    def _script_or_command(self) -> JobCreate:
        if (self.script is None) == (self.command is None):
            raise ValueError("give either script or command")
        if self.script is not None and not self.script.startswith("#!"):
            raise ValueError("a batch script starts with #! (e.g. #!/bin/bash)")
        if self.stage_in and self.proposal is None:
            raise ValueError("stage_in needs the job's proposal")
        return self


class JobOut(BaseModel):
    id: str
    slurm_id: int
    user: str
    name: str
    partition: str | None
    ncores: int
    memory: int
    nodes: int
    minutes: int
    proposal: str | None
    beamline: str | None
    state: str
    reason: str | None
    node: str | None
    exit_code: int | None
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    elapsed_seconds: float | None
    output_path: str
    error_path: str
    output_url: str
    error_url: str


class JobEventOut(BaseModel):
    id: int
    job_id: str
    at: datetime
    state: str
    message: str
