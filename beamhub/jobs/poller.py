"""The loop that asks Slurm, every few seconds, what became of the active jobs."""

from __future__ import annotations

import logging

from beamhub.compute.slurm_cli import SlurmError
from beamhub.jobs.service import JobService
from beamhub.leader import JOB_POLLER_LOCK, lead_forever

log = logging.getLogger(__name__)


async def follow_jobs_forever(jobs: JobService) -> None:
    """Refresh the active jobs' states every job_poll_interval seconds, in one replica of a deployment."""

    def refresh() -> None:
        """One round; Slurm being away is logged, not fatal."""
        if not jobs.slurm.configured:
            return
        try:
            jobs.refresh()
        except SlurmError as exc:
            log.warning("cannot read job states from Slurm: %s", exc)

    await lead_forever(jobs.db, JOB_POLLER_LOCK, jobs.settings.job_poll_interval, refresh, "following jobs")
