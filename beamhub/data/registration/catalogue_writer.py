"""A registration's writes to the catalogue, made by a thread of its own while the walk goes on.

The database driver works with the GIL released (SQLite's steps and commits, psycopg's round
trips), so records are written while the registration lists, scans and compares the next
directories. Writes keep the order they were given in, each in its own transaction, and at most
QUEUED of them wait: a slow database slows the walk instead of filling memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from beamhub.db import Database

QUEUED = 4
"""Transactions handed over and not yet written, at most."""

Write = Callable[[Session], None]


class CatalogueWriter:
    """Runs writes, in order and each in one transaction, in a thread; the first failure is raised to the caller
    at its next submit or flush, and every write after it is dropped."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._writes: queue.Queue[Write | None] = queue.Queue(maxsize=QUEUED)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="catalogue-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Write) -> None:
        """Queue one transaction (waiting while QUEUED are queued)."""
        self._raise_failure()
        self._writes.put(write)

    def flush(self) -> None:
        """Wait until everything submitted is written."""
        self._writes.join()
        self._raise_failure()

    def close(self) -> None:
        """Write what is queued and end the thread."""
        self._writes.put(None)
        self._thread.join()

    def __enter__(self) -> CatalogueWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while (write := self._writes.get()) is not None:
            try:
                if self._failure is None:
                    with self.database.session() as db:
                        write(db)
            except BaseException as exc:  # handed to the walk, which raises it
                self._failure = exc
            finally:
                self._writes.task_done()
        self._writes.task_done()
