"""The local backend with real processes under real UIDs, in real cgroups (needs root)."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beamhub.compute import cgroups
from beamhub.compute.backend import Account, BackendError, Handle, LaunchSpec
from beamhub.compute.local import LocalBackend, process_start_time
from beamhub.config import Settings

PYTHON = "/usr/bin/python3"  # Debian's: usable by other UIDs (see MACHINE-NOTES)
EXTRA_GROUPS = (31001, 31002)
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


@pytest.fixture
def account(require_root: None) -> Iterator[Account]:
    """A throwaway system user with its own group and home."""
    name = f"lb{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name],
                   check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        yield Account(username=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=EXTRA_GROUPS,
                      home=Path(entry.pw_dir))
    finally:
        done = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
        assert done.returncode == 0, f"userdel {name}: {done.stderr}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state", stop_grace=2.0)


@pytest.fixture
def backend(settings: Settings, account: Account) -> Iterator[LocalBackend]:
    """A LocalBackend; whatever a test leaves (dead or alive) is stopped before its user is deleted."""
    instance = LocalBackend(settings)
    yield instance
    for path in instance.handles_dir.glob("*.json"):
        instance.stop(json.loads(path.read_text()))


@pytest.fixture
def with_cgroups(backend: LocalBackend) -> cgroups.Cgroups:
    if backend.cgroups is None:
        pytest.skip("no usable cgroup v1 or v2 cpu+memory controllers on this host")
    return backend.cgroups


def launch(backend: LocalBackend, account: Account, argv: list[str], *, memory: int = 256 * MiB,
           ncores: float = 1.0, gpu_ids: list[str] | None = None) -> Handle:
    spec = LaunchSpec(session_id=f"t{secrets.token_hex(6)}", account=account, argv=argv,
                      env={"PATH": "/usr/bin:/bin", "BEAMHUB_TEST": "1"}, ncores=ncores, memory=memory,
                      gpu_ids=gpu_ids or [])
    return backend.start(spec)


def wait_dead(backend: LocalBackend, handle: Handle, timeout: float = 10.0) -> str:
    wait_for(lambda: not backend.poll(handle).alive, timeout, "the session to end")
    reason = backend.poll(handle).reason
    assert reason is not None
    return reason


# --- identity -----------------------------------------------------------------------------
def test_runs_as_users_uid_gid_and_exactly_the_given_groups(backend: LocalBackend, account: Account) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv)
    pid = handle["pid"]
    wait_for(lambda: runs(pid, argv), what="sleep to start")

    status = proc_status(pid)
    assert status["Uid"].split() == [str(account.uid)] * 4
    assert status["Gid"].split() == [str(account.gid)] * 4
    assert sorted(int(g) for g in status["Groups"].split()) == sorted(EXTRA_GROUPS)
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000"


def test_home_user_and_environment_are_set(backend: LocalBackend, account: Account) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv)
    wait_for(lambda: runs(handle["pid"], argv), what="sleep to start")

    env = proc_environ(handle["pid"])
    assert env["HOME"] == str(account.home)
    assert env["USER"] == env["LOGNAME"] == account.username
    assert env["BEAMHUB_TEST"] == "1"
    assert os.readlink(f"/proc/{handle['pid']}/cwd") == str(account.home)


def test_runs_in_its_own_process_group_and_session(backend: LocalBackend, account: Account) -> None:
    handle = launch(backend, account, ["sleep", "300"])
    pid = handle["pid"]
    assert pgrp_and_sid(pid) == (pid, pid)
    assert pgrp_and_sid(pid) != pgrp_and_sid(os.getpid())


def test_no_supplementary_groups_when_none_given(backend: LocalBackend, account: Account) -> None:
    argv = ["sleep", "300"]
    bare = Account(account.username, account.uid, account.gid, (), account.home)
    handle = launch(backend, bare, argv)
    wait_for(lambda: runs(handle["pid"], argv), what="sleep to start")
    assert proc_status(handle["pid"])["Groups"] == ""


@pytest.mark.parametrize("gpu_ids, expected", [(["0", "2"], "0,2"), ([], "")])
def test_cuda_visible_devices_is_exactly_the_given_gpus(backend: LocalBackend, account: Account,
                                                        gpu_ids: list[str], expected: str) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv, gpu_ids=gpu_ids)
    wait_for(lambda: runs(handle["pid"], argv), what="sleep to start")
    assert proc_environ(handle["pid"])["CUDA_VISIBLE_DEVICES"] == expected


# --- limits -------------------------------------------------------------------------------
def test_process_is_placed_in_the_sessions_cgroups(backend: LocalBackend, account: Account,
                                                   with_cgroups: cgroups.Cgroups) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv)
    wait_for(lambda: runs(handle["pid"], argv), what="sleep to start")
    dirs = [Path(d) for d in handle["cgroups"]]
    assert dirs and all(d.name == handle["session_id"] for d in dirs)
    assert handle["pid"] in cgroups.pids_in(dirs)


def test_memory_limit_kills_an_allocation_over_it(backend: LocalBackend, account: Account,
                                                  with_cgroups: cgroups.Cgroups) -> None:
    hog = "import time; data = b'x' * (300 << 20); time.sleep(60)"
    handle = launch(backend, account, [PYTHON, "-c", hog], memory=100 * MiB)
    reason = wait_dead(backend, handle, timeout=20)
    assert "memory" in reason, reason


def test_memory_limit_is_written(backend: LocalBackend, account: Account,
                                 with_cgroups: cgroups.Cgroups) -> None:
    handle = launch(backend, account, ["sleep", "300"], memory=100 * MiB)
    values = limit_files(handle, "memory.limit_in_bytes", "memory.max")
    assert values == [str(100 * MiB)]


def test_cpu_quota_reflects_ncores(backend: LocalBackend, account: Account,
                                   with_cgroups: cgroups.Cgroups) -> None:
    handle = launch(backend, account, ["sleep", "300"], ncores=1.5)
    if with_cgroups.version == "v2":
        assert limit_files(handle, "cpu.max") == ["150000 100000"]
    else:
        assert limit_files(handle, "cpu.cfs_quota_us") == ["150000"]
        assert limit_files(handle, "cpu.cfs_period_us") == ["100000"]


def limit_files(handle: Handle, *names: str) -> list[str]:
    """The contents of each of these files found in the session's cgroup directories."""
    return [(Path(d) / n).read_text().strip() for d in handle["cgroups"] for n in names if (Path(d) / n).exists()]


# --- exit reasons -------------------------------------------------------------------------
def test_exit_status_is_the_reason(backend: LocalBackend, account: Account) -> None:
    handle = launch(backend, account, ["/bin/sh", "-c", "exit 3"])
    assert "status 3" in wait_dead(backend, handle)


def test_killing_signal_is_the_reason(backend: LocalBackend, account: Account) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv)
    wait_for(lambda: runs(handle["pid"], argv), what="sleep to start")
    os.kill(handle["pid"], 15)
    assert "SIGTERM" in wait_dead(backend, handle)


def test_missing_program_is_the_reason(backend: LocalBackend, account: Account) -> None:
    handle = launch(backend, account, ["no-such-program-here"])
    assert "status 127" in wait_dead(backend, handle)
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

    assert not [pid for pid in tree if is_running(pid)]
    assert not [d for d in dirs if d.exists()]
    assert not backend.poll(handle).alive
    assert backend.list() == []


def test_stop_is_idempotent(backend: LocalBackend, account: Account) -> None:
    handle = launch(backend, account, ["sleep", "300"])
    backend.stop(handle)
    backend.stop(handle)
    assert not backend.poll(handle).alive
    assert not is_running(handle["pid"])


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
    assert not backend.poll(handle).alive
    assert "gone" in (backend.poll(handle).reason or "")


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
    assert not is_running(running["pid"])
    assert not [d for d in running["cgroups"] if Path(d).exists()]
    backend.stop(running)  # the first instance reaps its child; stop stays idempotent
    assert restarted.list() == []


def test_capacity_uses_configured_node_size(tmp_path: Path, require_root: None) -> None:
    settings = Settings(state_dir=tmp_path / "state", node_cpus=3.5, node_memory="2Gi", gpus=["0", "1"])
    capacity = LocalBackend(settings).capacity()
    assert capacity.ncores == 3.5
    assert capacity.memory == 2 * 2**30
    assert capacity.gpu_ids == ("0", "1")


# --- the user's environment never runs as root or outside the limits ---------------------
PRELOAD_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void record(void) {
    const char *path = getenv("PRELOAD_LOG");
    char cgroups[4096] = "";
    FILE *self = fopen("/proc/self/cgroup", "r");
    if (self) { size_t n = fread(cgroups, 1, sizeof cgroups - 1, self); cgroups[n] = 0; fclose(self); }
    for (char *c = cgroups; *c; c++) if (*c == '\n') *c = ' ';
    FILE *out = path ? fopen(path, "a") : NULL;
    if (out) { fprintf(out, "%d %s\n", (int)geteuid(), cgroups); fclose(out); }
}
"""


def owned_by(account: Account, path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    os.chown(path.parent, account.uid, account.gid)
    os.chown(path, account.uid, account.gid)
    return path


def test_users_path_cannot_replace_what_runs_as_root(backend: LocalBackend, account: Account) -> None:
    bin_dir, record = account.home / "bin", account.home / "ran.log"
    for name in ("setpriv", "sleep", "sh", "env"):
        script = f'#!/bin/sh\necho "$(id -u) {name}" >> {record}\nexec /usr/bin/{name} "$@"\n'
        owned_by(account, bin_dir / name, script)
    spec = LaunchSpec(session_id=f"t{secrets.token_hex(6)}", account=account, argv=["sleep", "300"],
                      env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, ncores=1, memory=256 * MiB)
    handle = backend.start(spec)
    wait_for(lambda: runs(handle["pid"], ["/usr/bin/sleep", "300"]), what="the user's sleep to start")

    assert record.read_text().splitlines() == [f"{account.uid} sleep"]  # the user's PATH, as the user only


def test_users_ld_preload_runs_only_as_the_user_inside_the_limits(backend: LocalBackend, account: Account,
                                                                  with_cgroups: cgroups.Cgroups) -> None:
    if not Path("/usr/bin/gcc").exists():
        pytest.skip("gcc is needed to build an LD_PRELOAD library")
    source = owned_by(account, account.home / "preload.c", PRELOAD_SOURCE, 0o644)
    library, record = account.home / "preload.so", account.home / "preload.log"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    os.chmod(library, 0o755)
    spec = LaunchSpec(session_id=f"t{secrets.token_hex(6)}", account=account, argv=["sleep", "300"],
                      env={"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library), "PRELOAD_LOG": str(record)},
                      ncores=1, memory=256 * MiB)
    handle = backend.start(spec)
    written = lambda: record.exists() and record.read_text().endswith("\n")  # noqa: E731
    wait_for(lambda: runs(handle["pid"], ["sleep", "300"]) and written(), what="sleep to start")

    lines = record.read_text().splitlines()
    assert lines, "the program itself must see the user's LD_PRELOAD"
    for line in lines:
        uid, _, membership = line.partition(" ")
        assert uid == str(account.uid), f"user code ran as uid {uid}: {line}"
        assert f"/{cgroups.PARENT}/{spec.session_id}" in membership, f"user code ran outside the limits: {line}"
