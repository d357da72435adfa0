"""One reader of new session events per process: every open event stream is handed what concerns it, instead of
each stream asking the database several times a second.

On PostgreSQL the reader wakes on `NOTIFY session_events` (sent in the transaction that writes an event) and
polls slowly only as a safety net; on SQLite it polls, once for the whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from sqlalchemy import select

from beamhub.db import Database
from beamhub.identity.principal import Principal
from beamhub.sessions.models import SessionEvent, SessionRecord, SessionState

log = logging.getLogger(__name__)

CHANNEL = "session_events"
POLL_SECONDS = 0.25
"""How often the process looks for new events when nothing wakes it (SQLite)."""
NOTIFIED_POLL_SECONDS = 5.0
"""The safety-net poll where PostgreSQL notifies."""
ENDED = frozenset({SessionState.stopped.value, SessionState.failed.value, SessionState.expired.value})


@dataclass(frozen=True)
class Published:
    """A new event with what decides who may see it: the owner of its session and the session's beamline."""

    event: SessionEvent
    user_id: int
    beamline: str | None

    def visible_to(self, principal: Principal) -> bool:
        return principal.may_manage(self.user_id, self.beamline)

    @property
    def ends_session(self) -> bool:
        return self.event.kind == "transition" and self.event.state in ENDED


class EventBroadcaster:
    """Reads each new event once and hands it to every subscriber's queue."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queues: set[asyncio.Queue[Published]] = set()
        self._cursor = 0

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Published]]:
        """A queue of every event published from now on, while the block runs."""
        queue: asyncio.Queue[Published] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    def _new_events(self) -> list[Published]:
        query = (select(SessionEvent, SessionRecord.user_id, SessionRecord.beamline)
                 .join(SessionRecord, SessionRecord.id == SessionEvent.session_id)
                 .where(SessionEvent.id > self._cursor).order_by(SessionEvent.id))
        with self.db.session() as db:
            rows = [Published(event, user_id, beamline) for event, user_id, beamline in db.execute(query)]
        if rows:
            self._cursor = rows[-1].event.id
        return rows

    def _latest(self) -> int:
        with self.db.session() as db:
            return db.scalar(select(SessionEvent.id).order_by(SessionEvent.id.desc()).limit(1)) or 0

    async def run_forever(self) -> None:
        """Publish new events as they are written, until cancelled."""
        self._cursor = await asyncio.to_thread(self._latest)
        async for _ in self._wakeups():
            try:
                published = await asyncio.to_thread(self._new_events)
            except Exception:  # a failed read is retried at the next wake-up
                log.exception("reading new session events failed")
                continue
            for item in published:
                for queue in list(self._queues):
                    queue.put_nowait(item)

    async def _wakeups(self) -> AsyncIterator[None]:
        """Moments to look for new events: a PostgreSQL notification (or a slow poll), else a short poll."""
        if self.db.engine.dialect.name != "postgresql":
            while True:
                yield
                await asyncio.sleep(POLL_SECONDS)
        async for _ in self._notifications():
            yield

    async def _notifications(self) -> AsyncIterator[None]:
        import psycopg

        url = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    yield
                    while True:
                        with contextlib.suppress(TimeoutError):
                            async for _ in connection.notifies(timeout=NOTIFIED_POLL_SECONDS, stop_after=1):
                                pass
                        yield
            except psycopg.OperationalError as exc:
                log.warning("listening for session events failed (%s); trying again", exc)
                yield
                await asyncio.sleep(NOTIFIED_POLL_SECONDS)
