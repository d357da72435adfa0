"""One reader of an event table per process: every open event stream is handed the new events, instead of each
stream asking the database several times a second.

On PostgreSQL the reader wakes on `NOTIFY <channel>` (sent by `notify` in the transaction that writes an event)
and polls slowly only as a safety net; on SQLite it polls, once for the whole process. Sessions and batch jobs
each subclass `Broadcaster` with how their events are read.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import ClassVar, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

from beamhub.db import Database

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How often the process looks for new events when nothing wakes it (SQLite)."""
NOTIFIED_POLL_SECONDS = 5.0
"""The safety-net poll where PostgreSQL notifies."""

T = TypeVar("T")


def notify(db: Session, channel: str) -> None:
    """Wake the channel's readers when this transaction commits (PostgreSQL; SQLite readers poll)."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text(f"NOTIFY {channel}"))


async def followed(queue: asyncio.Queue[T], stands: Callable[[], Awaitable[bool]],
                   recheck: float) -> AsyncIterator[T]:
    """What is published to the queue, while `stands()` (asked at least every `recheck` seconds) is true."""
    while await stands():
        try:
            yield await asyncio.wait_for(queue.get(), timeout=recheck)
        except TimeoutError:
            continue


class Broadcaster(abc.ABC, Generic[T]):
    """Reads each new event of one table once and hands it to every subscriber's queue."""

    channel: ClassVar[str]
    """The PostgreSQL notification channel that the table's writers `notify`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queues: set[asyncio.Queue[T]] = set()
        self._cursor = 0

    @abc.abstractmethod
    def _read_after(self, db: Session, cursor: int) -> list[T]:
        """The events with an id above `cursor`, in id order."""

    @abc.abstractmethod
    def _id_of(self, item: T) -> int:
        """The id of the event an item carries."""

    @abc.abstractmethod
    def _latest(self, db: Session) -> int:
        """The id of the newest event (0 if none)."""

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[T]]:
        """A queue of every event published from now on, while the block runs."""
        queue: asyncio.Queue[T] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    def _new_events(self) -> list[T]:
        with self.db.session() as db:
            items = self._read_after(db, self._cursor)
        if items:
            self._cursor = self._id_of(items[-1])
        return items

    def _start(self) -> int:
        with self.db.session() as db:
            return self._latest(db)

    async def run_forever(self) -> None:
        """Publish new events as they are written, until cancelled."""
        self._cursor = await asyncio.to_thread(self._start)
        async for _ in self._wakeups():
            try:
                published = await asyncio.to_thread(self._new_events)
            except Exception:  # a failed read is retried at the next wake-up
                log.exception("reading new events of %s failed", self.channel)
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
                    await connection.execute(f"LISTEN {self.channel}")
                    yield
                    while True:
                        with contextlib.suppress(TimeoutError):
                            async for _ in connection.notifies(timeout=NOTIFIED_POLL_SECONDS, stop_after=1):
                                pass
                        yield
            except psycopg.OperationalError as exc:
                log.warning("listening for %s failed (%s); trying again", self.channel, exc)
                yield
                await asyncio.sleep(NOTIFIED_POLL_SECONDS)
