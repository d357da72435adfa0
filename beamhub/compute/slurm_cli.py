"""Slurm through its own command line: sbatch as the user; squeue, scontrol and scancel as beamhub (Slurm's
administrator). Shared by batch jobs (beamhub.jobs) and sessions on Slurm (beamhub.compute.slurm).

There is no slurmdbd here, so Slurm remembers a finished job only for MinJobAge seconds: what it last said of a
job is kept in beamhub's database, and squeue is asked only about the jobs beamhub still counts as active, in its
plain `--Format` (its JSON of 22.05 ignores filters and lists every job remembered: megabytes a poll).
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from beamhub.compute.backend import Account, Capacity

SUBMIT_TIMEOUT = 60.0
IDS_PER_QUERY = 1000
"""The most job ids squeue is asked about by name (its argument stays short)."""
UMASK = "0077"
"""The umask sbatch hands to the job (SLURM_UMASK): output and error files are the user's alone unless they widen
them."""


class SlurmError(Exception):
    """A Slurm command failed; the message is what it said."""


@dataclass(frozen=True)
class Submission:
    """One batch job as sbatch gets it; memory in bytes, the time limit in minutes."""

    name: str
    partition: str | None
    ncores: int
    memory: int
    nodes: int
    minutes: int
    output: Path
    error: Path
    script: str | None = None
    command: str | None = None
    gres: str | None = None
    account: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Environment the job gets besides Slurm's (sbatch passes its own on)."""


@dataclass(frozen=True)
class SlurmJob:
    """What squeue says of one job now."""

    slurm_id: int
    state: str
    reason: str
    nodes: str
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    """The batch script's exit status, or minus the signal that ended it."""
    name: str = ""
    time_limit: int | None = None
    """Minutes."""


DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


class Slurm:
    """The Slurm commands of one cluster, with its SLURM_CONF."""

    def __init__(self, conf: Path | None) -> None:
        self.conf = conf or DEFAULT_CONF
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        if conf is not None:
            self.env["SLURM_CONF"] = str(conf)

    @property
    def configured(self) -> bool:
        """Whether this host has a Slurm configuration to submit with (else batch jobs are not set up here)."""
        return self.conf.is_file()

    def submit(self, account: Account, job: Submission) -> int:
        """Submit as the account (its UID, GID and groups, from its home): the job's id."""
        argv = ["sbatch", "--parsable", f"--job-name={job.name}", f"--cpus-per-task={job.ncores}",
                f"--mem={math.ceil(job.memory / 2**20)}M", f"--nodes={job.nodes}", f"--time={job.minutes}",
                f"--output={job.output}", f"--error={job.error}", f"--chdir={account.home}"]
        argv += [f"--{option}={value}" for option, value in
                 (("partition", job.partition), ("gres", job.gres), ("account", job.account)) if value]
        if job.command is not None:
            argv.append(f"--wrap={job.command}")
        if not job.output.parent.is_dir():
            # The user's shell makes the output folder (0700), so beamhub never writes into a home.
            argv = ["/bin/sh", "-c", 'umask 077 && mkdir -p -- "$0" && exec "$@"', str(job.output.parent), *argv]
        env = {**job.env, **self.env, "HOME": str(account.home), "USER": account.username,
               "LOGNAME": account.username, "SLURM_UMASK": UMASK}
        try:
            done = subprocess.run([*as_user(account), *argv], **_stdin(job.script), capture_output=True, text=True,
                                  env=env, cwd="/", timeout=SUBMIT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"sbatch could not run: {exc}") from exc
        if done.returncode != 0:
            raise SlurmError(_said(done.stderr) or f"sbatch failed with status {done.returncode}")
        return int(done.stdout.strip().split(";")[0])

    def jobs(self, slurm_ids: list[int]) -> dict[int, SlurmJob]:
        """What Slurm says now of these jobs, by id; those it no longer remembers are absent. (Beyond
        IDS_PER_QUERY ids, every job Slurm remembers is listed once instead.)"""
        named = [f"--jobs={','.join(map(str, slurm_ids))}"] if len(slurm_ids) <= IDS_PER_QUERY else []
        try:
            found = self._listed(["--states=all", *named])
        except SlurmError as exc:
            if "Invalid job id" in str(exc):  # what squeue says when the one job asked about is forgotten
                return {}
            raise
        wanted = set(slurm_ids)
        return {job.slurm_id: job for job in found if job.slurm_id in wanted}

    def job(self, slurm_id: int) -> SlurmJob | None:
        """What Slurm says of one job now; None once it no longer remembers it."""
        return self.jobs([slurm_id]).get(slurm_id)

    def active_jobs(self) -> list[SlurmJob]:
        """Every job not yet ended (pending, running, suspended, completing)."""
        return self._listed([])

    def _listed(self, filters: list[str]) -> list[SlurmJob]:
        return listed_jobs(self._run(["squeue", "--all", "--noheader", f"--Format={FIELDS}", *filters]))

    def set_time_limit(self, slurm_id: int, minutes: int) -> None:
        """Move a job's time limit (as Slurm's administrator: a user may only lower it)."""
        self._run(["scontrol", "update", f"JobId={slurm_id}", f"TimeLimit={minutes}"])

    def cancel(self, slurm_id: int) -> None:
        """Cancel a job (beamhub has decided who may): as Slurm's administrator."""
        self._run(["scancel", str(slurm_id)])

    def partitions(self, up_only: bool = True) -> list[str]:
        """The partitions that are up (or all of them), the default first."""
        out = self._run(["sinfo", "--noheader", "--format=%P %a"])
        names = [line.split()[0] for line in out.splitlines() if line.split()[1:] == ["up"] or not up_only]
        return sorted({n.rstrip("*") for n in names}, key=lambda n: (f"{n}*" not in names, n))

    def capacity(self) -> Capacity:
        """The cores and memory of every node sinfo lists (each node once, whatever its partitions)."""
        out = self._run(["sinfo", "--noheader", "--Node", "--format=%N %c %m"])
        nodes = {line.split()[0]: line.split()[1:] for line in out.splitlines() if len(line.split()) == 3}
        return Capacity(ncores=float(sum(int(cpus) for cpus, _ in nodes.values())),
                        memory=sum(int(mb.rstrip("+")) for _, mb in nodes.values()) * 2**20, gpu_ids=())

    def _run(self, argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env={**self.env, **QUERY_ENV},
                                  timeout=SUBMIT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{argv[0]} could not run: {exc}") from exc
        if done.returncode != 0:
            raise SlurmError(_said(done.stderr) or f"{argv[0]} failed with status {done.returncode}")
        return done.stdout


def as_user(account: Account) -> list[str]:
    """The command prefix that runs what follows as the account. An exec of setpriv rather than subprocess's user=
    and group=, which make Python fork the whole server instead of vfork: a submission costs a few ms less."""
    groups = f"--groups={','.join(map(str, account.groups))}" if account.groups else "--clear-groups"
    return ["setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", groups, "--"]


def _stdin(script: str | None) -> dict[str, Any]:
    """sbatch's standard input: the script, or nothing at all for a --wrap job (no pipe to feed)."""
    return {"input": script} if script is not None else {"stdin": subprocess.DEVNULL}


def _said(stderr: str) -> str:
    """Slurm's message without its `sbatch: error:` prefixes."""
    lines = [line.split("error:", 1)[-1].strip() for line in stderr.splitlines() if line.strip()]
    return "; ".join(lines)[:1000]


FIELDS = "Name:|,JobID:|,State:|,Reason:|,NodeList:|,TimeLimit:|,exit_code:|,StartTime:|,EndTime:|,"
"""squeue's fields for a job, each followed by `|`. The name, which its user may set to anything (a `|`, a newline),
comes first: whatever it holds, a line that is not exactly these fields is dropped, and the part of a name after a
newline can only make a line of its own job (the fields that follow it are that job's), never of another."""
SEPARATORS = FIELDS.count("|")
QUERY_ENV = {"SLURM_TIME_FORMAT": "%s"}
"""squeue writes times as epoch seconds: no time zone to guess."""
ENDED_NOT = ("PENDING", "RUNNING", "CONFIGURING", "SUSPENDED")


def listed_jobs(out: str) -> list[SlurmJob]:
    """The jobs of squeue --Format=FIELDS output: lines of exactly its fields with a plain job id (array and
    heterogeneous jobs, `123_4` and `123+0`, are none of beamhub's)."""
    lines = [line.split("|") for line in out.splitlines() if line.count("|") == SEPARATORS]
    return [_listed_job(fields) for fields in lines if fields[1].isdigit()]


def _listed_job(fields: list[str]) -> SlurmJob:
    """A SlurmJob from one line of squeue --Format=FIELDS (exit_code is the wait status, as Slurm keeps it)."""
    name, job_id, state, reason, nodes, limit, code, start, end = fields[:SEPARATORS]
    ended = state not in ENDED_NOT
    return SlurmJob(slurm_id=int(job_id), state=state, reason=reason or "None", nodes=nodes,
                    started_at=_time(start) if state != "PENDING" else None, ended_at=_time(end) if ended else None,
                    exit_code=_exit_code(int(code)) if ended and code.isdigit() else None,
                    name=name, time_limit=_limit_minutes(limit))


def _limit_minutes(text: str) -> int | None:
    """Minutes of a time limit as squeue shows it ([days-][hours:]minutes:seconds); None for UNLIMITED."""
    days, _, clock = text.strip().rpartition("-")
    parts = [int(p) for p in clock.split(":") if p.isdigit()]
    if not parts:
        return None
    hours, minutes, seconds = ([0, 0, 0] + parts)[-3:]
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def _exit_code(status: int) -> int:
    """A wait status as the shell shows it: the exit status, or minus the signal."""
    return -(status & 0x7F) if status & 0x7F else (status >> 8) & 0xFF


def _time(epoch: str) -> datetime | None:
    """A time squeue wrote as epoch seconds; None for N/A, Unknown or 0."""
    return datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() and int(epoch) > 0 else None

