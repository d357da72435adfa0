"""The Slurm backend: a session is a batch job, submitted as its user, whose script runs the session's agent.

The agent serves the program over TLS on a port its node's kernel chooses and reports where (see
beamhub.compute.relay); its private runtime directory is made by the job on the node (mktemp, 0700, the user's).
Slurm decides where the job runs and which GPUs it gets; its time limit follows the session's expiry (one minute
later, so that beamhub's expiry ends it first, and Slurm's limit only if beamhub is away).
"""

from __future__ import annotations

import logging
import math
import shlex
from pathlib import Path

from beamhub.compute.backend import BackendError, Capacity, Handle, Held, LaunchSpec, PollResult
from beamhub.compute.slurm_cli import Slurm, SlurmError, SlurmJob, Submission
from beamhub.config import Settings
from beamhub.errors import N_
from beamhub.units import format_size

log = logging.getLogger(__name__)

RUNTIME_VAR = "BEAMHUB_RUNTIME_DIR"
LIMIT_MARGIN = 1
"""Minutes Slurm's time limit lies past the session's expiry."""

QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
RUNNING = {"RUNNING", "RESIZING", "SIGNALING", "STAGE_OUT"}
ENDING = {"COMPLETING"}
"""Slurm is ending the job: its final state (and why) comes next."""

WAITING = {
    "Resources": N_("waiting for cores, memory or GPUs to become free"),
    "Priority": N_("waiting behind jobs of higher priority"),
    "PartitionDown": N_("its partition is down"),
    "PartitionInactive": N_("its partition is inactive"),
    "PartitionNodeLimit": N_("it asks for more nodes than its partition allows"),
    "PartitionTimeLimit": N_("it asks for more time than its partition allows"),
    "ReqNodeNotAvail": N_("the nodes it needs are not available (down, drained or reserved)"),
    "NodeDown": N_("a node it needs is down"),
    "BeginTime": N_("its start time has not come yet"),
    "Dependency": N_("waiting for another job to finish"),
    "JobHeldAdmin": N_("held by an administrator"),
    "JobHeldUser": N_("held by its user"),
    "Reservation": N_("waiting for its reservation"),
    "QOSMaxJobsPerUserLimit": N_("the user already runs as many jobs as allowed"),
    "AssocGrpCpuLimit": N_("the account's core limit is reached"),
    "AssocGrpMemLimit": N_("the account's memory limit is reached"),
    "InvalidAccount": N_("its account is not valid"),
    "InvalidQOS": N_("its quality of service is not valid"),
    "None": N_("waiting to be scheduled"),
}


def waiting_reason(code: str) -> str:
    """Slurm's pending reason in words, its own code after it."""
    words = WAITING.get(code, N_("waiting"))
    return words if code in ("None", "") else f"{words} ({code})"


def ended_reason(seen: SlurmJob, memory: int) -> str | None:
    """Why Slurm ended a job, in words; None where the job's own exit status says it (COMPLETED, FAILED)."""
    state = seen.state.split()[0] if seen.state else ""
    code = f" ({seen.reason})" if seen.reason not in ("None", "") else ""
    reasons = {  # marked templates, translated where the console shows them; Slurm's reason code stays as it is
        "TIMEOUT": N_("Slurm ended the job at its time limit of %(minutes)s min") % {"minutes": seen.time_limit} + code,
        "DEADLINE": N_("Slurm ended the job at its deadline") + code,
        "NODE_FAIL": N_("node %(nodes)s failed or was set down") % {"nodes": seen.nodes} + code,
        "BOOT_FAIL": N_("node %(nodes)s failed to boot") % {"nodes": seen.nodes} + code,
        "PREEMPTED": N_("preempted by another job") + code,
        "OUT_OF_MEMORY": N_("Slurm killed the job: it used more than its memory limit of %(memory)s") % {
            "memory": format_size(memory)},
        "CANCELLED": N_("the Slurm job was cancelled outside beamhub") + code,
        "REVOKED": N_("the Slurm job was revoked") + code,
    }
    return reasons.get(state)


def shell_word(value: str, runtime_dir: str) -> str:
    """A shell word for `value`, where the launch's placeholder runtime directory becomes the job's own."""
    parts = value.split(runtime_dir)
    return f'"${RUNTIME_VAR}"'.join(shlex.quote(part) if part else "" for part in parts) or "''"


def job_script(spec: LaunchSpec, moved_env: dict[str, str]) -> str:
    """The batch script: a private runtime directory on the node, the environment that names it, the agent."""
    placeholder = str(spec.runtime_dir)
    exports = "".join(f"export {name}={shell_word(value, placeholder)}\n" for name, value in moved_env.items())
    agent = " ".join(shell_word(arg, placeholder) for arg in spec.argv)
    return (f"#!/bin/sh\n# beamhub session {spec.session_id}: its agent runs the program and serves it over TLS\n"
            "umask 077\n"
            f'{RUNTIME_VAR}=$(mktemp -d "${{TMPDIR:-/tmp}}/beamhub-session.XXXXXXXX") || exit 1\n'
            f"export {RUNTIME_VAR}\n"
            f'trap \'rm -rf "${RUNTIME_VAR}"\' EXIT\n'
            "trap 'exit 143' TERM INT\n"
            f"{exports}{agent}\n")


class SlurmBackend:
    """Sessions as Slurm jobs of their users; the handle is the job id, so a restarted beamhub finds them again."""

    name = "slurm"
    remote = True

    def __init__(self, settings: Settings, slurm: Slurm | None = None) -> None:
        self.settings = settings
        self.slurm = slurm or Slurm(settings.slurm_conf)
        self.prefix = settings.slurm_job_prefix

    # --- placing and starting ------------------------------------------------------------
    def place(self, ncores: float, memory: int, gpus: int, held: list[Held]) -> list[str]:
        """Slurm queues what does not fit now and picks the GPUs: nothing to decide here."""
        return []

    def partitions(self) -> list[str]:
        """Every partition Slurm has, up or not (a session may wait in one that is down; it says so)."""
        try:
            return self.slurm.partitions(up_only=False)
        except SlurmError as exc:
            log.warning("cannot list Slurm's partitions: %s", exc)
            return []

    def start(self, spec: LaunchSpec) -> Handle:
        placeholder = str(spec.runtime_dir)
        moved = {k: v for k, v in spec.env.items() if placeholder in v}
        env = {k: v for k, v in spec.env.items() if k not in moved}
        output = job_log(spec.account.home, spec.session_id)
        submission = Submission(
            name=f"{self.prefix}{spec.session_id}", partition=spec.partition, ncores=max(math.ceil(spec.ncores), 1),
            memory=spec.memory, nodes=spec.nodes, minutes=math.ceil(spec.time_limit / 60) + LIMIT_MARGIN,
            output=output, error=output,
            script=job_script(spec, moved), gres=f"gpu:{spec.gpus}" if spec.gpus else None,
            account=spec.scheduler_account, env=env)
        try:
            job_id = self.slurm.submit(spec.account, submission)
        except SlurmError as exc:
            raise BackendError(N_("Slurm refused the session's job: %(reason)s") % {"reason": exc}) from exc
        return {"session_id": spec.session_id, "job_id": job_id, "memory": spec.memory}

    # --- following ---------------------------------------------------------------------
    def poll(self, handle: Handle) -> PollResult:
        try:
            seen = self.slurm.job(handle["job_id"])
        except SlurmError as exc:
            log.warning("cannot ask Slurm about job %s: %s", handle["job_id"], exc)
            return PollResult(alive=True)
        if seen is None:
            return PollResult(alive=False, reason=N_("Slurm no longer knows job %(job)s") % {"job": handle["job_id"]})
        state = seen.state.split()[0] if seen.state else ""
        if state in QUEUED:
            progress = N_("queued as Slurm job %(job)s: %(reason)s") % {"job": seen.slurm_id,
                                                                       "reason": waiting_reason(seen.reason)}
            return PollResult(alive=True, progress=progress)
        if state in RUNNING:
            progress = N_("running on %(nodes)s as Slurm job %(job)s") % {"nodes": seen.nodes, "job": seen.slurm_id}
            return PollResult(alive=True, progress=progress)
        if state in ENDING:
            return PollResult(alive=True)
        return PollResult(alive=False, reason=ended_reason(seen, handle.get("memory", 0)), status=seen.exit_code)

    def list(self) -> list[Handle]:
        """This beamhub's session jobs that Slurm has not ended."""
        try:
            jobs = self.slurm.active_jobs()
        except SlurmError as exc:
            log.warning("cannot list Slurm's jobs: %s", exc)
            return []
        return [{"session_id": job.name[len(self.prefix):], "job_id": job.slurm_id} for job in jobs
                if job.name.startswith(self.prefix) and (job.state.split() or [""])[0] in QUEUED | RUNNING]

    # --- changing ------------------------------------------------------------------------
    def stop(self, handle: Handle) -> None:
        """scancel (Slurm signals every process of the job, then kills what is left after KillWait)."""
        try:
            self.slurm.cancel(handle["job_id"])
        except SlurmError as exc:
            if "already completing or completed" not in str(exc) and "Invalid job id" not in str(exc):
                raise BackendError(N_("Slurm did not cancel job %(job)s: %(reason)s")
                                   % {"job": handle["job_id"], "reason": exc}) from exc

    def extend(self, handle: Handle, seconds: int) -> None:
        """The job's time limit follows the session's new expiry."""
        try:
            self.slurm.set_time_limit(handle["job_id"], math.ceil(seconds / 60) + LIMIT_MARGIN)
        except SlurmError as exc:
            raise BackendError(str(exc)) from exc

    def capacity(self) -> Capacity:
        """The cores and memory of the nodes Slurm lists (GPUs are Slurm's to count)."""
        try:
            return self.slurm.capacity()
        except SlurmError as exc:
            log.warning("cannot read the cluster's size from Slurm: %s", exc)
            return Capacity(ncores=0.0, memory=0, gpu_ids=())


def job_log(home: Path, session_id: str) -> Path:
    """Where Slurm writes what the job's script and agent print (the program's output has its own log)."""
    return home / ".beamhub" / "sessions" / f"{session_id}.slurm.log"
