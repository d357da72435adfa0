"""The local backend: sessions are process trees on this host, run as the user, in cgroups."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from beamhub.compute import cgroups
from beamhub.compute.backend import Account, BackendError, Capacity, Handle, Held, LaunchSpec, PollResult
from beamhub.config import Settings
from beamhub.errors import N_, InsufficientResources
from beamhub.units import format_size, parse_size

log = logging.getLogger(__name__)

# The first program of a session: already the user, with an empty environment, it waits until
# beamhub has put it in the session's cgroups and sent the session's environment (one JSON line on
# stdin), then becomes the command. So nothing the user controls (PATH, LD_PRELOAD, ...) ever runs
# as root, and the session is limited from the command's first instruction on.
_GATE = """\
import json, os, sys
line = sys.stdin.buffer.readline()
if not line:
    sys.exit(125)
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
try:
    os.execvpe(sys.argv[1], sys.argv[1:], json.loads(line))
except OSError as exc:
    print(f"cannot run {sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(127)
"""


def process_start_time(pid: int, *, zombies: bool = False) -> int | None:
    """The kernel's start time of a PID (clock ticks since boot); None if it does not exist
    or, unless `zombies`, has exited and waits to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z" and not zombies:
        return None
    return int(fields[19])


def _same_process(handle: Handle) -> bool:
    """Whether the handle's PID is still the process it was started as (not a reused PID)."""
    start_time = handle.get("start_time")
    return start_time is not None and process_start_time(handle["pid"]) == start_time


def _release(pid: int, dirs: list[Path], env: dict[str, str], gate: int) -> None:
    """Put the gate process in its cgroups, then send it the environment that lets it go on.
    The gate is closed in any case: without the environment, the gate exits 125."""
    try:
        for directory in dirs:
            (directory / "cgroup.procs").write_text(str(pid))
        data = json.dumps(env).encode() + b"\n"
        while data:
            data = data[os.write(gate, data) :]
    except BrokenPipeError:
        pass  # the gate is gone already: poll() tells why
    finally:
        os.close(gate)


def make_private_dir(path: Path, account: Account) -> None:
    """The session's runtime directory: its parent traversable but not listable, itself only the user's.
    A directory left by an earlier session of the same id is replaced, never reused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o711)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.chown(path, account.uid, account.gid)


def _node_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise BackendError(N_("cannot read MemTotal from /proc/meminfo"))


class LocalBackend:
    """Runs each session's agent as the user's UID/GID/groups, in its own process group."""

    name = "local"
    remote = False

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

    def place(self, ncores: float, memory: int, gpus: int, held: list[Held]) -> list[str]:
        """GPU ids for a new session if this node has room for it (unless overcommit) beside what is held."""
        capacity = self.capacity()
        if not self.settings.overcommit:
            _check_room("cores", ncores, capacity.ncores, sum(h.ncores for h in held), lambda v: f"{v:g}")
            _check_room("memory", memory, capacity.memory, sum(h.memory for h in held), format_size)
        used = {g for h in held for g in h.gpu_ids}
        free = [g for g in capacity.gpu_ids if g not in used]
        _check_room("GPUs", gpus, len(capacity.gpu_ids), len(capacity.gpu_ids) - len(free), str)
        return free[:gpus]

    def extend(self, handle: Handle, seconds: int) -> None:
        """Nothing to do: beamhub's reconciler ends a local session at its expiry."""

    def partitions(self) -> list[str]:
        return []

    def start(self, spec: LaunchSpec) -> Handle:
        self._reap()
        try:
            make_private_dir(spec.runtime_dir, spec.account)
        except OSError as exc:
            raise BackendError(N_("cannot create the session's runtime directory %(folder)s: %(reason)s")
                               % {"folder": spec.runtime_dir, "reason": exc}) from exc
        try:
            return self._start_in_cgroups(spec)
        except BackendError:
            shutil.rmtree(spec.runtime_dir, ignore_errors=True)
            raise

    def _reap(self) -> None:
        """Collect the exit of this process's children that ended (zombies until then): with several worker
        processes the leader polls sessions another started, by their PID. A child whose session was stopped by
        any process (its handle removed) is forgotten; the others keep their exit status for poll."""
        recorded = set()
        for path in self.handles_dir.glob("*.json"):
            try:
                recorded.add(json.loads(path.read_text())["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                return  # a handle being written or removed by another process: forget nothing this time
        for pid, child in list(self._children.items()):
            if child.poll() is not None and pid not in recorded:
                del self._children[pid]

    def _limited_groups(self, spec: LaunchSpec) -> list[Path]:
        """The session's cgroups with its limits; what a refused limit left behind is removed at once."""
        if self.cgroups is None:
            return []
        try:
            return self.cgroups.create(spec.session_id, spec.ncores, spec.memory)
        except OSError as exc:
            cgroups.kill_and_remove(self.cgroups.paths(spec.session_id))
            raise BackendError(N_("the kernel refused the session's limits (%(cores)s cores, %(memory)s bytes): "
                                  "%(reason)s") % {"cores": f"{spec.ncores:g}", "memory": spec.memory,
                                                   "reason": exc.strerror or exc}) from exc

    def _start_in_cgroups(self, spec: LaunchSpec) -> Handle:
        dirs = self._limited_groups(spec)
        account = spec.account
        env = {**spec.env, "HOME": str(account.home), "USER": account.username, "LOGNAME": account.username,
               "CUDA_VISIBLE_DEVICES": ",".join(spec.gpu_ids)}
        cwd = account.home if account.home.is_dir() else Path("/")
        # The gate runs on the agent's interpreter: one the session's user can already run.
        argv = [str(self.settings.agent_python), "-I", "-c", _GATE, *spec.argv]
        gate_read, gate_write = os.pipe()
        try:
            with open(self.logs_dir / f"{spec.session_id}.log", "ab") as log_file:
                child = subprocess.Popen(argv, env={}, cwd=cwd, stdin=gate_read, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True, user=account.uid,
                                         group=account.gid, extra_groups=list(account.groups))
        except (OSError, ValueError) as exc:
            os.close(gate_write)
            cgroups.kill_and_remove(dirs)
            raise BackendError(N_("cannot start session process: %(reason)s") % {"reason": exc}) from exc
        finally:
            os.close(gate_read)
        try:
            _release(child.pid, dirs, env, gate_write)
        except OSError as exc:
            child.wait()
            cgroups.kill_and_remove(dirs)
            raise BackendError(N_("cannot place the session in its cgroups: %(reason)s") % {"reason": exc}) from exc
        self._children[child.pid] = child
        # Read even if it already exited (a zombie until reaped): a handle needs its start time.
        start_time = process_start_time(child.pid, zombies=True)
        handle: Handle = {"session_id": spec.session_id, "pid": child.pid, "start_time": start_time,
                          "cgroups": [str(d) for d in dirs], "runtime_dir": str(spec.runtime_dir)}
        (self.handles_dir / f"{spec.session_id}.json").write_text(json.dumps(handle))
        return handle

    def poll(self, handle: Handle) -> PollResult:
        pid = handle["pid"]
        child = self._children.get(pid)
        if child is not None and (status := child.poll()) is not None:
            return PollResult(alive=False, reason=self._oom_reason(handle), status=status)
        if child is None and not _same_process(handle):
            return PollResult(alive=False, reason=self._oom_reason(handle))
        return PollResult(alive=True)

    def _oom_reason(self, handle: Handle) -> str | None:
        """Why the session ended, if the kernel killed a process of it for memory."""
        dirs = [Path(d) for d in handle.get("cgroups", [])]
        if self.cgroups and self.cgroups.oom_kills(dirs):
            return N_("out of memory: the kernel killed a process over the session's memory limit")
        return None

    def stop(self, handle: Handle) -> None:
        pid = handle["pid"]
        if self._alive(handle):
            self._signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.settings.stop_grace
            while self._alive(handle) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._signal_group(pid, signal.SIGKILL)
        cgroups.kill_and_remove([Path(d) for d in handle.get("cgroups", [])])
        if handle.get("runtime_dir"):
            shutil.rmtree(handle["runtime_dir"], ignore_errors=True)
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
        return _same_process(handle)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass


_NO_ROOM = {
    "cores": (N_("%(wanted)s cores requested, but this node has no cores"),
              N_("%(wanted)s cores requested, but this node has only %(total)s in all"),
              N_("%(wanted)s cores requested, but only %(free)s are free on this node now")),
    "memory": (N_("%(wanted)s memory requested, but this node has no memory"),
               N_("%(wanted)s memory requested, but this node has only %(total)s in all"),
               N_("%(wanted)s memory requested, but only %(free)s are free on this node now")),
    "GPUs": (N_("%(wanted)s GPUs requested, but this node has no GPUs"),
             N_("%(wanted)s GPUs requested, but this node has only %(total)s in all"),
             N_("%(wanted)s GPUs requested, but only %(free)s are free on this node now")),
}
"""The refusals of a request over the node, per resource: it has none, too little in all, too little free now."""


def _check_room(what: str, wanted: float, total: float, used: float, show: Callable[[float], str]) -> None:
    none, too_little, too_few_free = _NO_ROOM[what]
    if wanted > total and not total:
        raise InsufficientResources(none, wanted=show(wanted))
    if wanted > total:
        raise InsufficientResources(too_little, wanted=show(wanted), total=show(total))
    if wanted > total - used:
        raise InsufficientResources(too_few_free, wanted=show(wanted), free=show(max(total - used, 0)))
