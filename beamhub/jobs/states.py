"""Slurm's job states as beamhub's, and what to tell a user about each."""

from __future__ import annotations

from beamhub.compute.slurm_cli import SlurmJob
from beamhub.errors import N_
from beamhub.jobs.models import Job, JobState
from beamhub.units import format_size

S = JobState
FROM_SLURM: dict[str, JobState] = {
    "PENDING": S.pending, "CONFIGURING": S.pending, "REQUEUED": S.pending, "REQUEUE_HOLD": S.pending,
    "REQUEUE_FED": S.pending, "RESV_DEL_HOLD": S.pending,
    "RUNNING": S.running, "RESIZING": S.running, "SIGNALING": S.running, "STAGE_OUT": S.completing,
    "SUSPENDED": S.suspended, "STOPPED": S.suspended,
    "COMPLETING": S.completing, "COMPLETED": S.completed,
    "FAILED": S.failed, "BOOT_FAIL": S.failed, "SPECIAL_EXIT": S.failed,
    "TIMEOUT": S.timeout, "DEADLINE": S.timeout,
    "OUT_OF_MEMORY": S.out_of_memory, "NODE_FAIL": S.node_fail,
    "CANCELLED": S.cancelled, "REVOKED": S.cancelled, "PREEMPTED": S.preempted,
}


def state_of(seen: SlurmJob) -> JobState:
    """beamhub's state for what Slurm says; a state this table lacks counts as failed once Slurm ended it."""
    return FROM_SLURM.get(seen.state.split()[0] if seen.state else "", S.failed)


def describe(job: Job, seen: SlurmJob, state: JobState) -> str:
    """Why a job is in this state, for its events and the console: a marked template (the console translates it)
    and Slurm's reason code in parentheses, which stays as Slurm wrote it."""
    code = f" ({seen.reason})" if seen.reason not in ("None", "") else ""
    if state is S.pending:
        return N_("waiting") + code if code else N_("waiting to be scheduled")
    if state is S.running:
        return N_("running on %(nodes)s") % {"nodes": seen.nodes}
    if state is S.completed:
        return N_("completed (exit code 0)")
    if state is S.failed:
        return N_("failed with exit code %(status)s") % {"status": seen.exit_code} + code
    if state is S.timeout:
        return N_("Slurm ended the job at its time limit of %(minutes)s min") % {"minutes": job.minutes} + code
    if state is S.out_of_memory:
        return N_("Slurm killed the job: it used more than its memory limit of %(memory)s") % {
            "memory": format_size(job.memory)} + code
    if state is S.node_fail:
        return N_("node %(nodes)s failed or was set down") % {"nodes": seen.nodes or job.node} + code
    if state is S.preempted:
        return N_("preempted by another job") + code
    return f"{state.value}{code}"
