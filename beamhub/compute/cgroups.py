"""Resource limits for a session's process tree: cgroup v2 where usable, v1 otherwise."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "beamhub"
CPU_PERIOD_US = 100_000


class Cgroups(Protocol):
    version: str

    def create(self, name: str, ncores: float, memory: int) -> list[Path]:
        """Make the session's groups with its limits; return their directories."""

    def paths(self, name: str) -> list[Path]:
        """The directories of a session's groups, whether they exist or not."""

    def oom_kills(self, dirs: list[Path]) -> int:
        """How many processes the kernel killed in these groups for memory."""


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def pids_in(dirs: list[Path]) -> set[int]:
    """Every process in the groups."""
    pids: set[int] = set()
    for directory in dirs:
        try:
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        except OSError:  # removed meanwhile (ENOENT, or ENODEV while being removed)
            continue
    return pids


def kill_and_remove(dirs: list[Path], timeout: float = 5.0) -> None:
    """SIGKILL everything left in the groups, then remove them."""
    deadline = time.monotonic() + timeout
    while (pids := pids_in(dirs)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for directory in dirs:
        for _ in range(50):
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
        else:
            log.warning("cgroup %s could not be removed", directory)


class CgroupV2:
    """The unified hierarchy with the cpu and memory controllers delegated to our parent."""

    version = "v2"

    def __init__(self, root: Path) -> None:
        self.parent = root / PARENT
        self.parent.mkdir(exist_ok=True)
        _write(root / "cgroup.subtree_control", "+cpu +memory")
        _write(self.parent / "cgroup.subtree_control", "+cpu +memory")

    def paths(self, name: str) -> list[Path]:
        return [self.parent / name]

    def create(self, name: str, ncores: float, memory: int) -> list[Path]:
        group = self.parent / name
        group.mkdir(exist_ok=True)
        _write(group / "memory.max", str(memory))
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")
        _write(group / "cpu.max", f"{int(ncores * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        return [group]

    def oom_kills(self, dirs: list[Path]) -> int:
        return sum(_event_count(d / "memory.events", "oom_kill") for d in dirs)


class CgroupV1:
    """Separate memory and cpu hierarchies."""

    version = "v1"

    def __init__(self, root: Path) -> None:
        self.memory = root / "memory" / PARENT
        self.cpu = root / "cpu" / PARENT
        self.memory.mkdir(exist_ok=True)
        self.cpu.mkdir(exist_ok=True)

    def paths(self, name: str) -> list[Path]:
        return [self.memory / name, self.cpu / name]

    def create(self, name: str, ncores: float, memory: int) -> list[Path]:
        mem, cpu = self.paths(name)
        mem.mkdir(exist_ok=True)
        cpu.mkdir(exist_ok=True)
        _write(mem / "memory.limit_in_bytes", str(memory))
        if (mem / "memory.memsw.limit_in_bytes").exists():
            _write(mem / "memory.memsw.limit_in_bytes", str(memory))
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(int(ncores * CPU_PERIOD_US)))
        return [mem, cpu]

    def oom_kills(self, dirs: list[Path]) -> int:
        return sum(_event_count(d / "memory.oom_control", "oom_kill") for d in dirs if d.parent == self.memory)


def _event_count(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except FileNotFoundError:
        pass
    return 0


def _v2_root(root: Path) -> Path | None:
    for candidate in (root, root / "unified"):
        controllers = candidate / "cgroup.controllers"
        if controllers.exists() and {"cpu", "memory"} <= set(controllers.read_text().split()):
            return candidate
    return None


def detect(root: Path = CGROUP_ROOT) -> Cgroups | None:
    """The cgroup flavour this host offers for limits, or None with a warning."""
    try:
        if (v2 := _v2_root(root)) is not None:
            return CgroupV2(v2)
        if (root / "memory" / "memory.limit_in_bytes").exists() and (root / "cpu" / "cpu.cfs_quota_us").exists():
            return CgroupV1(root)
    except OSError as exc:
        log.warning("cgroups present but not writable (%s): sessions run WITHOUT cpu/memory limits", exc)
        return None
    log.warning("no usable cgroup v2 or v1 cpu+memory controllers: sessions run WITHOUT cpu/memory limits")
    return None
