"""The job events' broadcaster: each new event of any job, read once per process for every open stream."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from beamhub.broadcast import Broadcaster
from beamhub.jobs.models import JobEvent

CHANNEL = "job_events"


class JobEventBroadcaster(Broadcaster[JobEvent]):
    """Hands every new job event to each open stream; a stream keeps those of its job."""

    channel = CHANNEL

    def _read_after(self, db: Session, cursor: int) -> list[JobEvent]:
        return list(db.scalars(select(JobEvent).where(JobEvent.id > cursor).order_by(JobEvent.id)))

    def _id_of(self, item: JobEvent) -> int:
        return item.id

    def _latest(self, db: Session) -> int:
        return db.scalar(select(func.max(JobEvent.id))) or 0
