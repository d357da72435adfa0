"""What the local backend's tests share: starting a session as a test user, and reading its processes in /proc."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from beamhub.compute.backend import Account, Handle, LaunchSpec
from beamhub.compute.local import LocalBackend, process_start_time

PYTHON = "/usr/bin/python3"  # Debian's: usable by other UIDs (see MACHINE-NOTES)
MiB = 1 << 20


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def proc_environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def pgrp_and_sid(pid: int) -> tuple[int, int]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[2]), int(fields[3])


def is_running(pid: int) -> bool:
    """Exists and is not a zombie (a killed orphan may stay a zombie where PID 1 does not reap)."""
    return process_start_time(pid) is not None


def runs(pid: int, argv: list[str]) -> bool:
    """Whether PID has exec'd the session's program (past the backend's gate)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == [a.encode() for a in argv]
    except FileNotFoundError:
        return False


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


def wait_dead(backend: LocalBackend, handle: Handle, timeout: float = 10.0) -> str:
    wait_for(lambda: not backend.poll(handle).alive, timeout, "the session to end")
    reason = backend.poll(handle).reason
    assert reason is not None
    return reason
