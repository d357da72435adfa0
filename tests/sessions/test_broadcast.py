"""One reader of session events per process, on SQLite and PostgreSQL: every stream gets each new event, and the
database is asked as often with twenty open streams as with none."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import pytest

from beamhub.broadcast import notify
from beamhub.db import Database, migrate, utcnow
from beamhub.identity.accounts.models import User
from beamhub.identity.principal import Principal
from beamhub.sessions.broadcast import CHANNEL, EventBroadcaster, Published
from beamhub.sessions.models import SessionEvent, SessionRecord, SessionState
from helpers.sql import statements_reading


@pytest.fixture
def database(database_url: str) -> Database:
    db = Database(database_url)
    migrate(db.engine)
    with db.session() as session:
        session.add(User(id=1, username="alice", uid=190001, gid=190001))
        now = utcnow()
        session.add(SessionRecord(id="s1", user_id=1, name="lab", kind="jupyter", image="default", ncores=1,
                                  memory=1 << 30, state=SessionState.running, token="t", agent_secret="a",
                                  backend="local", created_at=now, expires_at=now + timedelta(hours=1),
                                  beamline="b7"))
    yield db
    db.dispose()


def write_event(db: Database, message: str) -> None:
    with db.session() as session:
        session.add(SessionEvent(session_id="s1", state="running", kind="notice", message=message))
        notify(session, CHANNEL)


def test_every_stream_gets_each_event_and_the_database_is_read_once_for_all(database: Database) -> None:
    broadcaster = EventBroadcaster(database)
    reads = statements_reading(database, "session_events")

    async def run() -> tuple[list[list[Published]], int, float]:
        task = asyncio.create_task(broadcaster.run_forever())
        await asyncio.sleep(0.3)
        received: list[list[Published]] = [[] for _ in range(20)]
        with contextlib.ExitStack() as stack:
            queues = [stack.enter_context(broadcaster.subscribe()) for _ in range(20)]
            before = len(reads)
            await asyncio.sleep(1.0)
            idle_reads = len(reads) - before
            started = time.monotonic()
            await asyncio.to_thread(write_event, database, "hello")
            for queue, got in zip(queues, received, strict=True):
                got.append(await asyncio.wait_for(queue.get(), timeout=5))
            latency = time.monotonic() - started
        task.cancel()
        return received, idle_reads, latency

    received, idle_reads, latency = asyncio.run(run())
    assert all(len(got) == 1 and got[0].event.message == "hello" for got in received)
    assert idle_reads <= 6  # one reader's polls (SQLite) or none (PostgreSQL), not one per open stream
    assert latency < 2
    item = received[0][0]
    assert item.visible_to(Principal("alice", 1))
    assert item.visible_to(Principal("staff", 2, roles=frozenset({"staff"}), beamlines=frozenset({"b7"})))
    assert not item.visible_to(Principal("bob", 3))
