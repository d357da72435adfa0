"""Batch jobs: submitted to Slurm as their user, followed, cancelled; who may do what is decided here."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from beamhub.broadcast import notify
from beamhub.compute.backend import Account
from beamhub.compute.slurm_cli import Slurm, SlurmError, SlurmJob, Submission
from beamhub.config import Settings
from beamhub.data.access import may_read
from beamhub.data.proposals.service import DataService
from beamhub.data.tiers.prefetch import prefetch_proposal
from beamhub.db import Database, utcnow
from beamhub.errors import N_, Conflict, Forbidden, Invalid, NotFound, NotReady
from beamhub.identity.accounts.models import User
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.audit.service import AuditService
from beamhub.identity.principal import Principal
from beamhub.jobs import broadcast
from beamhub.jobs.models import ACTIVE_JOB_STATES, Job, JobEvent, JobState
from beamhub.jobs.schemas import JobCreate
from beamhub.jobs.states import describe, state_of

log = logging.getLogger(__name__)
OUTPUT_FOLDER = "beamhub-jobs"
"""Where in the user's home Slurm writes a job's output and error files."""


class JobService:
    def __init__(self, db: Database, settings: Settings, identity: IdentityService, data: DataService,
                 audit: AuditService, slurm: Slurm | None = None) -> None:
        self.db = db
        self.settings = settings
        self.identity = identity
        self.data = data
        self.audit = audit
        self.slurm = slurm or Slurm(settings.slurm_conf)

    # --- submitting ------------------------------------------------------------------------
    def submit(self, principal: Principal, body: JobCreate) -> Job:
        """Submit a batch job as its user (sbatch runs under their UID and groups) and record it."""
        self._require_slurm()
        user_id, account = self.identity.target_account(principal, body.user)
        beamline = self._beamline(principal, body.proposal)
        self._check_partition(body.partition)
        if body.stage_in and body.proposal is not None:
            prefetch_proposal(self.data, principal, body.proposal)  # the job starts on data already on the fast tier
        job_id = secrets.token_hex(8)
        folder = account.home / OUTPUT_FOLDER
        submission = Submission(name=body.name, partition=body.partition, ncores=body.ncores, memory=body.memory,
                                nodes=body.nodes, minutes=body.minutes, output=folder / f"{job_id}.out",
                                error=folder / f"{job_id}.err", script=body.script, command=body.command)
        try:
            slurm_id = self.slurm.submit(account, submission)
        except SlurmError as exc:
            self.audit.record_as(principal, "job.submit", account.username, success=False, reason=str(exc))
            raise Invalid("Slurm refused the job: %(reason)s", reason=exc) from exc
        return self._record(principal, user_id, account, body, job_id, slurm_id, submission, beamline)

    def _record(self, principal: Principal, user_id: int, account: Account, body: JobCreate, job_id: str,
                slurm_id: int, submission: Submission, beamline: str | None) -> Job:
        """Store a job sbatch accepted, its first event and the audit entry in one unit of work; the job as stored
        (its user the one target_account checked the principal may act for, so it is the principal's to see)."""
        row = dict(id=job_id, user_id=user_id, slurm_id=slurm_id, name=body.name, partition=body.partition,
                   script=body.script, command=body.command, ncores=body.ncores, memory=body.memory, nodes=body.nodes,
                   minutes=body.minutes, proposal=body.proposal, beamline=beamline, state=JobState.pending,
                   output_path=str(submission.output), error_path=str(submission.error), submitted_at=utcnow())
        message = N_("submitted as Slurm job %(slurm_id)s") % {"slurm_id": slurm_id}
        with self.db.session() as db:
            # Rows written once as they are: plain inserts, without the unit of work's bookkeeping (a third of it).
            db.execute(Job.__table__.insert(), row)
            db.execute(JobEvent.__table__.insert(), {"job_id": job_id, "state": JobState.pending.value,
                                                     "message": message})
            notify(db, broadcast.CHANNEL)
            self.audit.add_as(db, principal, "job.submit", job_id, user=account.username, slurm_id=slurm_id,
                              name=body.name, partition=body.partition, ncores=body.ncores, memory=body.memory,
                              minutes=body.minutes, beamline=beamline)
        job = Job(**row)
        # Its user as the answer names them (id and name; not read again, nor their groups).
        set_committed_value(job, "user", User(id=user_id, username=account.username, uid=account.uid,
                                              gid=account.gid))
        return job

    def _beamline(self, principal: Principal, proposal_id: str | None) -> str | None:
        """The beamline of the proposal a job works for, if the submitter may know that proposal."""
        return None if proposal_id is None else self.data.get(principal, proposal_id).beamline

    def _check_partition(self, partition: str | None) -> None:
        offered = self.settings.slurm_partitions
        if partition is not None and offered and partition not in offered:
            raise Invalid("partition %(partition)r is not offered; offered: %(offered)s",
                          partition=partition, offered=', '.join(offered))

    def _require_slurm(self) -> None:
        if not self.slurm.configured:
            raise NotFound("batch jobs are not set up here: no Slurm configuration at %(conf)s (set slurm_conf)",
                           conf=self.slurm.conf)

    def partitions(self) -> list[str]:
        """The partitions users may choose: configured, else those Slurm has up."""
        self._require_slurm()
        if self.settings.slurm_partitions:
            return list(self.settings.slurm_partitions)
        try:
            return self.slurm.partitions()
        except SlurmError as exc:
            raise NotReady("Slurm does not answer: %(reason)s", reason=exc) from exc

    # --- reading -----------------------------------------------------------------------------
    def get(self, principal: Principal, job_id: str) -> Job:
        """A job the principal may see: their own, their beamlines' (staff), any (admin)."""
        with self.db.session() as db:
            job = db.get(Job, job_id)
        if job is None or not principal.may_manage(job.user_id, job.beamline):
            raise NotFound("no job %(job_id)s", job_id=job_id)
        return job

    def list(self, principal: Principal, username: str | None = None, active_only: bool = False,
             limit: int = 500) -> list[Job]:
        """Jobs newest first: by default your own (and your beamlines' for staff), or all for an admin."""
        query = select(Job).order_by(Job.submitted_at.desc()).limit(limit)
        if username is not None or principal.user_id is not None and not principal.is_admin:
            user_id, _ = self.identity.target_account(principal, username)
            mine = Job.user_id == user_id
            if username is None and principal.is_staff and principal.beamlines:
                mine = mine | Job.beamline.in_(principal.beamlines)
            query = query.where(mine)
        if active_only:
            query = query.where(Job.state.in_(ACTIVE_JOB_STATES))
        with self.db.session() as db:
            return list(db.scalars(query))

    def events(self, principal: Principal, job_id: str, after: int = 0) -> list[JobEvent]:
        self.get(principal, job_id)
        with self.db.session() as db:
            query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after).order_by(JobEvent.id)
            return list(db.scalars(query))

    def output_file(self, principal: Principal, job_id: str, which: str) -> Path:
        """The real path of a job's output or error file, if the kernel would let the principal read it."""
        job = self.get(principal, job_id)
        caller = self.data.caller(principal)
        if caller is None:
            raise Forbidden("a job's files are read as a user: the file's own permissions decide, and this "
                            "credential has no UID")
        path = Path(os.path.realpath(job.output_path if which == "output" else job.error_path))
        if not may_read(path, caller):
            if not os.path.exists(path):
                raise NotFound("job %(job_id)s has no %(which)s file (yet)", job_id=job_id, which=which)
            raise Forbidden("the %(which)s file of job %(job_id)s is not readable by %(username)s",
                            which=which, job_id=job_id, username=principal.username)
        return path

    # --- changing -----------------------------------------------------------------------------
    def cancel(self, principal: Principal, job_id: str) -> Job:
        """Cancel a job of one's own, of one's beamline (staff) or any (admin); an ended job stays as it is."""
        job = self.get(principal, job_id)
        if not job.state.is_active:
            return job
        try:
            self.slurm.cancel(job.slurm_id)
        except SlurmError as exc:
            raise Conflict("Slurm did not cancel job %(slurm_id)s: %(reason)s", slurm_id=job.slurm_id,
                           reason=exc) from exc
        with self.db.session() as db:
            cancelled = N_("cancel requested by %(username)s") % {"username": principal.username}
            self._event(db, job_id, job.state, cancelled)
            self.audit.add_as(db, principal, "job.cancel", job_id, user=job.user.username, slurm_id=job.slurm_id,
                              beamline=job.beamline)
        self.refresh()
        return self.get(principal, job_id)

    def refresh(self) -> int:
        """Bring every active job up to what Slurm says now, in one unit of work; how many changed."""
        listed_at = utcnow()
        # Only jobs recorded before Slurm is asked: sbatch had returned, so Slurm knew each of them.
        recorded = select(Job).where(Job.state.in_(ACTIVE_JOB_STATES), Job.submitted_at < listed_at)
        with self.db.session() as db:
            slurm_ids = sorted(set(db.scalars(recorded.with_only_columns(Job.slurm_id))))
        if not slurm_ids:
            return 0
        seen = self.slurm.jobs(slurm_ids)
        asked = set(slurm_ids)  # a job recorded meanwhile was not asked about: it is not lost, only next time's
        with self.db.session() as db:
            return sum(self._follow(db, job, seen.get(job.slurm_id)) for job in db.scalars(recorded.with_for_update())
                       if job.slurm_id in asked)

    @staticmethod
    def _follow(db: Session, job: Job, seen: SlurmJob | None) -> int:
        """Apply what Slurm said of one job; an event when its state or reason changed."""
        if seen is None:
            state = JobState.lost
            message = N_("Slurm no longer knows job %(job)s; it was %(state)s") % {"job": job.slurm_id,
                                                                                   "state": job.state.value}
        else:
            state = state_of(seen)
            message = describe(job, seen, state)
            job.node = seen.nodes or job.node
            job.started_at = seen.started_at or job.started_at
            job.ended_at = seen.ended_at if not state.is_active else None
            job.exit_code = seen.exit_code
        if state is job.state and message == (job.reason or ""):
            return 0
        job.state, job.reason = state, message
        if not state.is_active and job.ended_at is None:
            job.ended_at = utcnow()
        JobService._event(db, job.id, state, message)
        return 1

    @staticmethod
    def _event(db: Session, job_id: str, state: JobState, message: str) -> None:
        """Record an event; on PostgreSQL, the event streams' broadcaster is woken when it commits."""
        db.add(JobEvent(job_id=job_id, state=state.value, message=message))
        notify(db, broadcast.CHANNEL)
