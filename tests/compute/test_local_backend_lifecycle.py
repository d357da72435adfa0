"""The local backend's sessions end: their exit reasons, stop (the whole tree, idempotent, cgroups freed),
reused PIDs and stale handles, a restarted backend that re-adopts its sessions, the node's capacity (needs root)."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from beamhub.compute import cgroups
from beamhub.compute.backend import Account, BackendError, PollResult
from beamhub.compute.local import LocalBackend, process_start_time
from beamhub.config import Settings
from helpers.local_backend import launch, new_spec, wait_dead
from helpers.processes import pgrp_and_sid, pid_alive, runs
from helpers.waiting import wait_for


# --- exit reasons -------------------------------------------------------------------------
def test_the_exit_status_is_reported(backend: LocalBackend, account: Account) -> None:
    handle = launch(backend, account, ["/bin/sh", "-c", "exit 3"])
    assert wait_dead(backend, handle) == PollResult(alive=False, status=3)


def test_the_killing_signal_is_reported(backend: LocalBackend, account: Account) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv)
    wait_for(lambda: runs(handle["pid"], argv), what="sleep to start")
    os.kill(handle["pid"], 15)
    assert wait_dead(backend, handle).status == -15


def test_a_missing_program_is_status_127_with_why_in_the_log(backend: LocalBackend, account: Account) -> None:
    handle = launch(backend, account, ["no-such-program-here"])
    assert wait_dead(backend, handle).status == 127
    log = (backend.logs_dir / f"{handle['session_id']}.log").read_text()
    assert "cannot run no-such-program-here" in log


class UnplaceableCgroups:
    """Cgroups whose directories vanish before the process can join them."""

    version = "fake"

    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, name: str, ncores: float, memory: int) -> list[Path]:
        return [self.root / name]

    def oom_kills(self, dirs: list[Path]) -> int:
        return 0


def test_a_session_that_cannot_join_its_cgroups_does_not_start(backend: LocalBackend, account: Account,
                                                               tmp_path: Path) -> None:
    backend.cgroups = UnplaceableCgroups(tmp_path / "nowhere")
    marker = account.home / "ran"
    with pytest.raises(BackendError, match="cgroups"):
        launch(backend, account, ["touch", str(marker)])
    assert not marker.exists()
    assert list(backend.handles_dir.glob("*.json")) == []


def test_limits_the_kernel_refuses_fail_the_start_and_leave_nothing(backend: LocalBackend, account: Account,
                                                                    with_cgroups: cgroups.Cgroups) -> None:
    """A CPU quota under the kernel's 1 ms minimum: refused at once, with no cgroup or runtime directory left."""
    spec = new_spec(backend, account, ["sleep", "300"], {"PATH": "/usr/bin:/bin"}, ncores=0.001)
    with pytest.raises(BackendError, match="refused the session's limits"):
        backend.start(spec)
    assert not any(path.exists() for path in with_cgroups.paths(spec.session_id))
    assert not spec.runtime_dir.exists()
    assert list(backend.handles_dir.glob("*.json")) == []


def test_the_runtime_directory_is_the_users_alone_and_goes_with_the_session(backend: LocalBackend,
                                                                          account: Account) -> None:
    handle = launch(backend, account, ["sleep", "300"])
    runtime = Path(handle["runtime_dir"])
    assert (runtime.stat().st_uid, runtime.stat().st_mode & 0o777) == (account.uid, 0o700)
    assert runtime.parent.stat().st_mode & 0o777 == 0o711  # traversable, not listable
    backend.stop(handle)
    assert not runtime.exists()


# --- stop ---------------------------------------------------------------------------------
def test_stop_kills_the_whole_tree_and_removes_the_cgroups(backend: LocalBackend, account: Account,
                                                           with_cgroups: cgroups.Cgroups) -> None:
    handle = launch(backend, account, ["/bin/sh", "-c", "setsid sleep 300 & exec sleep 301"])
    dirs = [Path(d) for d in handle["cgroups"]]
    escaped = lambda: [p for p in cgroups.pids_in(dirs) if pgrp_and_sid(p)[1] != handle["pid"]]  # noqa: E731
    wait_for(escaped, what="a grandchild in its own session")
    tree = cgroups.pids_in(dirs)
    assert len(tree) == 2

    backend.stop(handle)

    assert not [pid for pid in tree if pid_alive(pid)]
    assert not [d for d in dirs if d.exists()]
    assert not backend.poll(handle).alive
    assert backend.list() == []


def test_stop_is_idempotent(backend: LocalBackend, account: Account) -> None:
    handle = launch(backend, account, ["sleep", "300"])
    backend.stop(handle)
    backend.stop(handle)
    assert not backend.poll(handle).alive
    assert not pid_alive(handle["pid"])


def test_stop_of_a_session_that_ended_by_itself_frees_its_cgroups(backend: LocalBackend, account: Account,
                                                                  with_cgroups: cgroups.Cgroups) -> None:
    handle = launch(backend, account, ["/bin/sh", "-c", "exit 0"])
    wait_dead(backend, handle)
    backend.stop(handle)
    assert not [d for d in handle["cgroups"] if Path(d).exists()]


# --- restarts and stale handles -----------------------------------------------------------
def test_reused_pid_is_reported_dead(backend: LocalBackend, account: Account, settings: Settings) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv)
    wait_for(lambda: runs(handle["pid"], argv), what="sleep to start")
    other = LocalBackend(settings)  # as after a restart: the process is not its child
    stale = {**handle, "start_time": handle["start_time"] + 1}

    assert other.poll(handle).alive
    assert not other.poll(stale).alive


def test_stop_of_a_stale_handle_leaves_the_process_that_reused_the_pid(backend: LocalBackend,
                                                                       settings: Settings) -> None:
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        start_time = process_start_time(bystander.pid)
        assert start_time is not None
        stale = {"session_id": f"t{secrets.token_hex(6)}", "pid": bystander.pid, "start_time": start_time - 1,
                 "cgroups": []}
        assert not backend.poll(stale).alive
        backend.stop(stale)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_handle_without_start_time_is_dead_once_its_pid_is_gone(backend: LocalBackend) -> None:
    """A program that exits at once may leave no start time behind; its handle must not live forever."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    handle = {"session_id": f"t{secrets.token_hex(6)}", "pid": gone.pid, "start_time": None, "cgroups": []}
    assert backend.poll(handle) == PollResult(alive=False)  # ended, exit status unknown


def test_new_instance_readopts_running_sessions(backend: LocalBackend, account: Account,
                                                settings: Settings) -> None:
    running = launch(backend, account, ["sleep", "300"])
    ended = launch(backend, account, ["/bin/sh", "-c", "exit 0"])
    wait_dead(backend, ended)

    restarted = LocalBackend(settings)
    assert restarted.list() == [running]
    assert restarted.poll(running).alive

    restarted.stop(running)
    assert not restarted.poll(running).alive
    assert not pid_alive(running["pid"])
    assert not [d for d in running["cgroups"] if Path(d).exists()]
    backend.stop(running)  # the first instance reaps its child; stop stays idempotent
    assert restarted.list() == []


def test_capacity_uses_configured_node_size(tmp_path: Path, require_root: None) -> None:
    settings = Settings(state_dir=tmp_path / "state", node_cpus=3.5, node_memory="2Gi", gpus=["0", "1"])
    capacity = LocalBackend(settings).capacity()
    assert capacity.ncores == 3.5
    assert capacity.memory == 2 * 2**30
    assert capacity.gpu_ids == ("0", "1")
