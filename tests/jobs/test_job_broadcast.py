"""Job event streams share one reader per process, as session streams do: every stream gets each new job event, and
the database is asked as often with twenty open streams as with none."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from beamhub.broadcast import notify
from beamhub.db import Database, migrate, utcnow
from beamhub.identity.accounts.models import User
from beamhub.jobs.broadcast import CHANNEL, JobEventBroadcaster
from beamhub.jobs.models import Job, JobEvent, JobState
from helpers.sql import statements_reading


@pytest.fixture
def database(database_url: str) -> Database:
    db = Database(database_url)
    migrate(db.engine)
    with db.session() as session:
        session.add(User(id=1, username="alice", uid=190001, gid=190001))
        session.add(Job(id="j1", user_id=1, slurm_id=7, name="fit", ncores=1, memory=1 << 30, minutes=5,
                        state=JobState.running, output_path="/o", error_path="/e", submitted_at=utcnow()))
    yield db
    db.dispose()


def write_event(db: Database, message: str) -> None:
    with db.session() as session:
        session.add(JobEvent(job_id="j1", state="completed", message=message))
        notify(session, CHANNEL)


def test_every_job_stream_gets_each_event_from_one_reader(database: Database) -> None:
    broadcaster = JobEventBroadcaster(database)
    reads = statements_reading(database, "job_events")

    async def run() -> tuple[list[JobEvent], int, float]:
        task = asyncio.create_task(broadcaster.run_forever())
        await asyncio.sleep(0.3)
        with contextlib.ExitStack() as stack:
            queues = [stack.enter_context(broadcaster.subscribe()) for _ in range(20)]
            before = len(reads)
            await asyncio.sleep(1.0)
            idle_reads = len(reads) - before
            started = time.monotonic()
            await asyncio.to_thread(write_event, database, "completed (exit code 0)")
            received = [await asyncio.wait_for(queue.get(), timeout=5) for queue in queues]
            latency = time.monotonic() - started
        task.cancel()
        return received, idle_reads, latency

    received, idle_reads, latency = asyncio.run(run())
    assert [(e.job_id, e.state, e.message) for e in received] == [("j1", "completed", "completed (exit code 0)")] * 20
    assert idle_reads <= 6  # one reader's polls (SQLite) or none (PostgreSQL), not one per open stream
    assert latency < 2
