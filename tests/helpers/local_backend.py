"""What the local backend's tests share: starting a session as a test user and waiting for it to end."""

from __future__ import annotations

import secrets

from beamhub.compute.backend import Account, Handle, LaunchSpec, PollResult
from beamhub.compute.local import LocalBackend
from helpers.waiting import wait_for

PYTHON = "/usr/bin/python3"  # Debian's: usable by other UIDs (see MACHINE-NOTES)
MiB = 1 << 20


def new_spec(backend: LocalBackend, account: Account, argv: list[str], env: dict[str, str], *,
             memory: int = 256 * MiB, ncores: float = 1.0, gpu_ids: list[str] | None = None) -> LaunchSpec:
    """A session's launch: a fresh id, its runtime directory under the backend's runtime_dir."""
    session_id = f"t{secrets.token_hex(6)}"
    return LaunchSpec(session_id=session_id, account=account, argv=argv, env=env, ncores=ncores, memory=memory,
                      gpu_ids=gpu_ids or [], runtime_dir=backend.settings.runtime_dir / session_id)


def launch(backend: LocalBackend, account: Account, argv: list[str], *, memory: int = 256 * MiB,
           ncores: float = 1.0, gpu_ids: list[str] | None = None) -> Handle:
    env = {"PATH": "/usr/bin:/bin", "BEAMHUB_TEST": "1"}
    return backend.start(new_spec(backend, account, argv, env, memory=memory, ncores=ncores, gpu_ids=gpu_ids))


def wait_dead(backend: LocalBackend, handle: Handle, timeout: float = 10.0) -> PollResult:
    """How the session ended, once it has: its exit status and what the backend alone knows of why."""
    wait_for(lambda: not backend.poll(handle).alive, timeout, "the session to end", interval=0.02)
    return backend.poll(handle)
