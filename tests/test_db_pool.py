"""Under a burst of parallel requests the database's connections are reused, not opened and closed each time."""

from __future__ import annotations

import threading

from sqlalchemy import event, text

from beamhub.db import Database


def test_twenty_parallel_units_of_work_reuse_their_connections(database_url: str) -> None:
    database = Database(database_url)
    opened: list[object] = []
    event.listen(database.engine, "connect", lambda connection, record: opened.append(connection))
    start = threading.Barrier(20, timeout=30)

    def unit_of_work() -> None:
        start.wait()
        with database.session() as db:
            db.execute(text("SELECT 1"))
            start.wait()  # all twenty hold a connection at once

    def burst() -> None:
        threads = [threading.Thread(target=unit_of_work) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    try:
        burst()
        first = len(opened)
        burst()
        assert first == 20
        assert len(opened) == first  # the second burst opened none
    finally:
        database.dispose()
