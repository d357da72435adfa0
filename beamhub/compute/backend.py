"""The Backend protocol: run this command, with these resources, as this user."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

Handle = dict[str, Any]
"""What a backend needs to find a launched session again; plain JSON, survives restarts."""


@dataclass(frozen=True)
class Account:
    """The identity a session runs as."""

    username: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: Path


@dataclass(frozen=True)
class LaunchSpec:
    """One process tree to run: the session agent's command line and its limits.

    `runtime_dir` is the session's private directory (its program's socket lives there): the backend creates it
    on the node, owned by the account with mode 0700, so that only the user and beamhub may enter it, and removes
    it when the session ends."""

    session_id: str
    account: Account
    argv: list[str]
    env: dict[str, str]
    ncores: float
    memory: int
    runtime_dir: Path
    gpu_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PollResult:
    """Whether a launched session still runs; if not, its exit status (when known) and what the backend alone
    knows of why it ended (the kernel's OOM killer, say)."""

    alive: bool
    reason: str | None = None
    status: int | None = None


@dataclass(frozen=True)
class Capacity:
    """What one node can give: cores, memory in bytes and GPU ids."""

    ncores: float
    memory: int
    gpu_ids: tuple[str, ...]


class BackendError(Exception):
    """The backend could not do what was asked; the message says why."""


class Backend(Protocol):
    name: str

    def start(self, spec: LaunchSpec) -> Handle:
        """Launch the command; return once it has been started (not once it answers)."""

    def poll(self, handle: Handle) -> PollResult:
        """Whether the process tree of a handle still runs."""

    def stop(self, handle: Handle) -> None:
        """End the whole process tree and free its resources; idempotent."""

    def list(self) -> list[Handle]:
        """The handles of everything this backend runs now."""

    def capacity(self) -> Capacity:
        """The resources sessions may share on this backend."""
