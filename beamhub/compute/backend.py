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
    """The GPUs the backend placed the session on (`place`); a backend that lets its scheduler pick leaves it empty."""
    gpus: int = 0
    image: str = "default"
    time_limit: int = 86400
    """Seconds until the session expires: a scheduler ends the job then at the latest."""
    nodes: int = 1
    partition: str | None = None
    scheduler_account: str | None = None
    """The scheduler's account to charge; None where the site has none."""


@dataclass(frozen=True)
class Endpoint:
    """Where a session's program answers, as the proxy reaches it: its Unix socket in its private runtime directory
    (this host), or its agent's TLS endpoint on a node, trusted only with the session's own certificate."""

    socket: Path | None = None
    host: str | None = None
    port: int | None = None
    cert: str | None = None
    client: str | None = None
    """The file of the proxy's own key and certificate, which the agent requires of its clients."""


@dataclass(frozen=True)
class PollResult:
    """Whether a launched session still runs; if not, its exit status (when known) and what the backend alone
    knows of why it ended (the kernel's OOM killer, say)."""

    alive: bool
    reason: str | None = None
    status: int | None = None
    progress: str | None = None
    """Where a live session stands on the backend, in words ("queued: ...", "running on node2"); shown as an event
    whenever it changes."""


@dataclass(frozen=True)
class Held:
    """What one active session holds, for a backend that places sessions itself."""

    ncores: float
    memory: int
    gpu_ids: tuple[str, ...] = ()


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
    remote: bool
    """Whether sessions run on other hosts: their agent then answers on a TLS endpoint of its own, whose
    per-session certificate the proxy pins (local sessions answer on their Unix socket)."""

    def place(self, ncores: float, memory: int, gpus: int, held: list[Held]) -> list[str]:
        """The GPU ids for a new session, given what active sessions hold; beamhub.errors.InsufficientResources if there
        is no room now."""

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

    def extend(self, handle: Handle, seconds: int) -> None:
        """The session now ends `seconds` from now: a scheduler's time limit follows (BackendError if refused)."""

    def partitions(self) -> list[str]:
        """The partitions (queues) a session may ask for, the default first; none for a backend without them."""
