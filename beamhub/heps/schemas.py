"""The HEPS spawner API's payloads, field for field, and their mapping to a SessionSpec."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from beamhub.identity.schemas import USERNAME_PATTERN
from beamhub.sessions.schemas import NAME_PATTERN, SessionSpec, check_ip, check_size

GPU_RESOURCE = "nvidia.com/gpu"
JUPYTER_PROGRAMS = {"jupyterhub-singleuser", "jupyter-lab", "jupyter-labhub", "start-notebook.sh",
                    "start-singleuser.sh"}
LAUNCHERS = {"start.sh"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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

    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    sourceip: str = ""
    description: str = Field("", max_length=1024)
    podname: str = Field("default", pattern=NAME_PATTERN)
    userimage: str = ""
    ncores: float = Field(1, gt=0, le=1024)
    memory: str = "2G"
    sshpubkeys: str = ""
    extra_resource: dict[str, int] = Field(default_factory=dict)
    single_cmd: str = ""
    single_cmd_args: str = ""
    scriptenv: str = ""
    expireruntime: int = Field(86400, gt=0)

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

    @field_validator("scriptenv")
    @classmethod
    def _scriptenv(cls, value: str) -> str:
        parse_scriptenv(value)
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

    username: str
    podname: str = "default"
    expireruntime: int = Field(gt=0)


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

    username: str = Field(pattern=USERNAME_PATTERN)
    uid: int | None = Field(None, ge=1000)
    groups: list[str] = Field(default_factory=list)


class WorkstationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sourceip: str
    beamline: str | None = None
    description: str | None = None

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
