"""Which replica runs a loop that must run once per deployment (the reconciler, the Slurm poller).

On SQLite (one host) the process that holds an exclusive flock on a file beside the database leads: the lock lives
as long as the process, so when it ends another worker process takes the lead on its next round. On PostgreSQL
the replica that holds a session advisory lock leads; the lock lives as long as the connection that took it, so a
replica that dies or loses its connection loses the lead, and another takes it on its next round.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from beamhub.db import Database

log = logging.getLogger(__name__)

RECONCILER_LOCK = 0x6265616D  # "beam"
JOB_POLLER_LOCK = 0x6A6F6273  # "jobs"
EMBARGO_LOCK = 0x656D6267  # "embg"
BEAMTIME_LOCK = 0x62746D65  # "btme"


class LeaderLock:
    """Whether this process leads one loop among the replicas sharing a database."""

    def __init__(self, db: Database, key: int) -> None:
        self.db = db
        self.key = key
        self._connection: Connection | None = None
        self._file: int | None = None

    def held(self) -> bool:
        """Asked each round: keeps the lead while its lock stands, else tries to take it."""
        if self.db.engine.dialect.name != "postgresql":
            return self._held_by_file()
        if self._connection is not None and self._still_connected(self._connection):
            return True
        self.release()
        connection = self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}):
            self._connection = connection
            return True
        connection.close()
        return False

    def _held_by_file(self) -> bool:
        """SQLite: an exclusive flock on `<database>.lead-<key>`, kept while this process lives (a database in
        memory has one process)."""
        if self._file is not None:
            return True
        database = self.db.engine.url.database
        if not database or database == ":memory:":
            return True
        fd = os.open(f"{database}.lead-{self.key:08x}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._file = fd
        return True

    def release(self) -> None:
        """Give the lead up: the lock file is closed, and a PostgreSQL connection closed, not returned to the pool,
        so its lock goes with it."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self._connection is not None:
            try:
                self._connection.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            except SQLAlchemyError:
                pass  # a connection that is gone holds no lock
            self._connection.invalidate()
            self._connection = None

    def _still_connected(self, connection: Connection) -> bool:
        try:
            connection.scalar(text("SELECT 1"))
        except SQLAlchemyError:
            log.warning("lost the connection that held leader lock %#x; trying to take the lead again", self.key)
            return False
        return True


async def lead_forever(db: Database, key: int, interval: float, work: Callable[[], object], what: str) -> None:
    """Run `work` in a thread every `interval` seconds in the one replica that leads with `key`; a failure is
    logged and the next round comes."""
    leader = LeaderLock(db, key)
    try:
        while True:
            try:
                if await asyncio.to_thread(leader.held):
                    await asyncio.to_thread(work)
            except Exception:
                log.exception("%s failed", what)
            await asyncio.sleep(interval)
    finally:
        leader.release()
