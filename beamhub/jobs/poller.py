"""The loop that asks Slurm, every few seconds, what became of the active jobs."""

from __future__ import annotations

import asyncio
import logging

from beamhub.compute.slurm_cli import SlurmError
from beamhub.jobs.service import JobService
from beamhub.leader import JOB_POLLER_LOCK, LeaderLock

log = logging.getLogger(__name__)


async def follow_jobs_forever(jobs: JobService) -> None:
    """Refresh the active jobs' states every job_poll_interval seconds, in one replica of a deployment; Slurm
    being away is logged, not fatal."""
    leader = LeaderLock(jobs.db, JOB_POLLER_LOCK)
    try:
        while True:
            try:
                if jobs.slurm.configured and await asyncio.to_thread(leader.held):
                    await asyncio.to_thread(jobs.refresh)
            except SlurmError as exc:
                log.warning("cannot read job states from Slurm: %s", exc)
            except Exception:
                log.exception("following jobs failed")
            await asyncio.sleep(jobs.settings.job_poll_interval)
    finally:
        leader.release()
