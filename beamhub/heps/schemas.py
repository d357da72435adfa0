"""The HEPS spawner API's payloads, field for field, and their mapping to a SessionSpec."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from beamhub.identity.fields import MAX_ID, MAX_ITEMS, MAX_SECONDS, Beamline, Line, Name, NoNul, Username
from beamhub.sessions.schemas import (
    ENV_NAME_PATTERN,
    MAX_CORES,
    MAX_GPUS,
    MIN_CORES,
    NAME_PATTERN,
    SessionSpec,
    check_ip,
    check_size,
)

GPU_RESOURCE = "nvidia.com/gpu"
JUPYTER_PROGRAMS = {"jupyterhub-singleuser", "jupyter-lab", "jupyter-labhub", "start-notebook.sh",
                    "start-singleuser.sh"}
LAUNCHERS = {"start.sh"}
_ENV_NAME = re.compile(ENV_NAME_PATTERN)

GpuCount = Annotated[int, Field(le=MAX_GPUS)]
"""A GPU count; the validator refuses a negative one, in words."""


def split_args(text: str) -> list[str]:
    """The seed's `single_cmd_args`: arguments separated by ';'."""
    return [part.strip() for part in text.split(";") if part.strip()]


def parse_scriptenv(text: str) -> dict[str, str]:
    """`scriptenv` as NAME=VALUE pairs separated by ';' or new lines."""
    env: dict[str, str] = {}
    for item in re.split(r"[;\n]", text):
        if not item.strip():
            continue
        name, sep, value = item.strip().partition("=")
        if not sep or not _ENV_NAME.match(name):
            raise ValueError(f"scriptenv entry {item.strip()!r} is not NAME=VALUE")
        env[name] = value
    return env


class PodRequest(BaseModel):
    """POST /userpod/: the seed's example payload is accepted as written."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    username: Username
    sourceip: str = Field("", max_length=64)
    description: NoNul = Field("", max_length=1024)
    podname: str = Field("default", pattern=NAME_PATTERN)
    userimage: Line = ""
    ncores: float = Field(1, ge=MIN_CORES, le=MAX_CORES)
    memory: str = Field("2G", max_length=32, description='a size such as "200G" or "4Gi", 64Mi to 64Ti')
    sshpubkeys: NoNul = Field("", max_length=65_536)
    extra_resource: dict[Name, GpuCount] = Field(default_factory=dict)
    single_cmd: NoNul = Field("", max_length=4096)
    single_cmd_args: NoNul = Field("", max_length=65_536)
    scriptenv: NoNul = Field("", max_length=65_536)
    expireruntime: int = Field(86400, ge=1, le=MAX_SECONDS)

    _ip = field_validator("sourceip")(check_ip)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        check_size(value)
        return value

    @field_validator("extra_resource")
    @classmethod
    def _resources(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - {GPU_RESOURCE}
        if unknown:
            raise ValueError(f"unsupported extra_resource {sorted(unknown)}; supported: {GPU_RESOURCE}")
        if value.get(GPU_RESOURCE, 0) < 0:
            raise ValueError("a GPU count cannot be negative")
        return value

    @field_validator("single_cmd_args")
    @classmethod
    def _args(cls, value: str) -> str:
        if len(split_args(value)) > MAX_ITEMS:
            raise ValueError(f"at most {MAX_ITEMS} arguments")
        return value

    @field_validator("scriptenv")
    @classmethod
    def _scriptenv(cls, value: str) -> str:
        if len(parse_scriptenv(value)) > MAX_ITEMS:
            raise ValueError(f"at most {MAX_ITEMS} variables")
        return value

    def to_spec(self) -> SessionSpec:
        """Jupyter commands become a jupyter session on beamhub's proxy; anything else runs as given."""
        argv = [self.single_cmd, *split_args(self.single_cmd_args)] if self.single_cmd else []
        if argv and argv[0] in LAUNCHERS:
            argv = argv[1:]
        is_jupyter = not argv or argv[0] in JUPYTER_PROGRAMS or argv[:2] == ["jupyter", "lab"]
        return SessionSpec(
            kind="jupyter" if is_jupyter else "command", name=self.podname, image=self.userimage or None,
            ncores=self.ncores, memory=check_size(self.memory), gpus=self.extra_resource.get(GPU_RESOURCE, 0),
            command=None if is_jupyter else argv[0], args=[] if is_jupyter else argv[1:],
            env=parse_scriptenv(self.scriptenv), runtime=self.expireruntime, source_ip=self.sourceip,
            description=self.description,
        )


class PodUpdate(BaseModel):
    """PATCH /userpod/: a new total run time, counted from the pod's creation."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    podname: str = Field("default", pattern=NAME_PATTERN)
    expireruntime: int = Field(ge=1, le=MAX_SECONDS)


class PodOut(BaseModel):
    username: str
    podname: str
    sessionid: str
    status: str
    reason: str | None
    sourceip: str
    description: str
    userimage: str
    ncores: float
    memory: str
    extra_resource: dict[str, int]
    createtime: datetime
    runningtime: float
    expireruntime: int
    expiretime: datetime
    url: str


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    uid: int | None = Field(None, ge=1000, le=MAX_ID)
    groups: list[Username] = Field(default_factory=list, max_length=MAX_ITEMS)


class WorkstationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sourceip: str = Field(max_length=64)
    beamline: Beamline | None = None
    description: NoNul | None = Field(None, max_length=1024)

    @field_validator("sourceip")
    @classmethod
    def _ip(cls, value: str) -> str:
        ip = check_ip(value)
        if ip is None:
            raise ValueError("sourceip is required")
        return ip


class WorkstationOut(BaseModel):
    sourceip: str
    beamline: str
    description: str
    sessionid: str | None
