"""A process as /proc shows it: alive or not, its IDs, groups, environment and command line."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """Exists and is not a zombie (a killed orphan may stay a zombie where PID 1 does not reap)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def pgrp_and_sid(pid: int) -> tuple[int, int]:
    fields = _stat_fields(pid)
    assert fields is not None, f"no process {pid}"
    return int(fields[2]), int(fields[3])


def processes_in_group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) and fields[0] != "Z" \
                and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def uids_of(pid: int) -> set[int]:
    """Real, effective, saved and filesystem UIDs of a process."""
    return {int(uid) for uid in proc_status(pid)["Uid"].split()}


def proc_environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def runs(pid: int, argv: list[str]) -> bool:
    """Whether PID has exec'd exactly `argv` (for a session: got past the backend's gate)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == [a.encode() for a in argv]
    except FileNotFoundError:
        return False
