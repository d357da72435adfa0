"""The local backend: sessions are process trees on this host, run as the user, in cgroups."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from beamhub.compute import cgroups
from beamhub.compute.backend import BackendError, Capacity, Handle, LaunchSpec, PollResult
from beamhub.config import Settings
from beamhub.units import parse_size

log = logging.getLogger(__name__)

# Joins every cgroup given before "--" with the shell's own PID, then becomes the command:
# the session is limited from its first instruction on.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of a PID (clock ticks since boot), None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _node_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise BackendError("cannot read MemTotal from /proc/meminfo")


class LocalBackend:
    """Runs each session's agent as the user's UID/GID/groups, in its own process group."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.handles_dir = settings.state_dir / "local"
        self.handles_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logs_dir = settings.state_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cgroups = cgroups.detect()
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def capacity(self) -> Capacity:
        ncores = self.settings.node_cpus or float(os.cpu_count() or 1)
        memory = parse_size(self.settings.node_memory) if self.settings.node_memory else _node_memory()
        return Capacity(ncores=ncores, memory=memory, gpu_ids=tuple(self.settings.gpus))

    def start(self, spec: LaunchSpec) -> Handle:
        dirs = self.cgroups.create(spec.session_id, spec.ncores, spec.memory) if self.cgroups else []
        account = spec.account
        groups = ",".join(str(g) for g in account.groups)
        argv = [
            "/bin/sh", "-c", _JOIN_CGROUPS, "sh",
            *(str(d / "cgroup.procs") for d in dirs), "--",
            "setpriv", f"--reuid={account.uid}", f"--regid={account.gid}",
            f"--groups={groups}" if groups else "--clear-groups", "--",
            *spec.argv,
        ]
        env = {**spec.env, "HOME": str(account.home), "USER": account.username, "LOGNAME": account.username,
               "CUDA_VISIBLE_DEVICES": ",".join(spec.gpu_ids)}
        cwd = account.home if account.home.is_dir() else Path("/")
        with open(self.logs_dir / f"{spec.session_id}.log", "ab") as log_file:
            try:
                child = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                cgroups.kill_and_remove(dirs)
                raise BackendError(f"cannot start session process: {exc}") from exc
        self._children[child.pid] = child
        handle: Handle = {"session_id": spec.session_id, "pid": child.pid,
                          "start_time": process_start_time(child.pid), "cgroups": [str(d) for d in dirs]}
        (self.handles_dir / f"{spec.session_id}.json").write_text(json.dumps(handle))
        return handle

    def poll(self, handle: Handle) -> PollResult:
        pid = handle["pid"]
        child = self._children.get(pid)
        if child is not None and (status := child.poll()) is not None:
            return PollResult(alive=False, reason=self._exit_reason(handle, status))
        if child is None and process_start_time(pid) != handle["start_time"]:
            return PollResult(alive=False, reason=self._exit_reason(handle, None))
        return PollResult(alive=True)

    def _exit_reason(self, handle: Handle, status: int | None) -> str:
        dirs = [Path(d) for d in handle.get("cgroups", [])]
        if self.cgroups and self.cgroups.oom_kills(dirs):
            return "out of memory: the kernel killed a process over the session's memory limit"
        if status is None:
            return "the session's processes are gone (exit status unknown)"
        if status < 0:
            return f"the session was killed by {signal.Signals(-status).name}"
        if status == 125:
            return "the session could not be placed in its cgroup"
        return f"the session's program exited with status {status}"

    def stop(self, handle: Handle) -> None:
        pid = handle["pid"]
        if self._alive(handle):
            self._signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.settings.stop_grace
            while self._alive(handle) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._signal_group(pid, signal.SIGKILL)
        cgroups.kill_and_remove([Path(d) for d in handle.get("cgroups", [])])
        if (child := self._children.pop(pid, None)) is not None:
            child.wait(timeout=5)
        (self.handles_dir / f"{handle['session_id']}.json").unlink(missing_ok=True)

    def list(self) -> list[Handle]:
        handles = []
        for path in sorted(self.handles_dir.glob("*.json")):
            handle = json.loads(path.read_text())
            if self.poll(handle).alive:
                handles.append(handle)
        return handles

    def _alive(self, handle: Handle) -> bool:
        child = self._children.get(handle["pid"])
        if child is not None:
            return child.poll() is None
        return process_start_time(handle["pid"]) == handle["start_time"]

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
