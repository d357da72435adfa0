"""The local backend starts sessions as the user, with exactly their groups, environment and limits, in real
cgroups; nothing the user controls runs as root or outside the limits (needs root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from beamhub.compute import cgroups
from beamhub.compute.backend import Account, Handle
from beamhub.compute.local import LocalBackend
from helpers.local_backend import PYTHON, MiB, launch, new_spec, wait_dead
from helpers.processes import pgrp_and_sid, proc_environ, proc_status, runs
from helpers.waiting import wait_for


# --- identity -----------------------------------------------------------------------------
def test_runs_as_users_uid_gid_and_exactly_the_given_groups(backend: LocalBackend, account: Account) -> None:
    argv = ["sleep", "300"]
    handle = launch(backend, account, argv)
    pid = handle["pid"]
    wait_for(lambda: runs(pid, argv), what="sleep to start")

    status = proc_status(pid)
    assert status["Uid"].split() == [str(account.uid)] * 4
    assert status["Gid"].split() == [str(account.gid)] * 4
    assert sorted(int(g) for g in status["Groups"].split()) == sorted(account.groups)
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
    ended = wait_dead(backend, handle, timeout=20)
    assert "memory" in (ended.reason or ""), ended


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
    spec = new_spec(backend, account, ["sleep", "300"], {"PATH": f"{bin_dir}:/usr/bin:/bin"})
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
    spec = new_spec(backend, account, ["sleep", "300"],
                    {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library), "PRELOAD_LOG": str(record)})
    handle = backend.start(spec)
    written = lambda: record.exists() and record.read_text().endswith("\n")  # noqa: E731
    wait_for(lambda: runs(handle["pid"], ["sleep", "300"]) and written(), what="sleep to start")

    lines = record.read_text().splitlines()
    assert lines, "the program itself must see the user's LD_PRELOAD"
    for line in lines:
        uid, _, membership = line.partition(" ")
        assert uid == str(account.uid), f"user code ran as uid {uid}: {line}"
        assert f"/{cgroups.PARENT}/{spec.session_id}" in membership, f"user code ran outside the limits: {line}"
