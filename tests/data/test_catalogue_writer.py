"""The registration's catalogue writer: writes in order, each its own transaction, and failures reach the walk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from beamhub.data.registration.catalogue_writer import CatalogueWriter, Write
from beamhub.db import Database


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'writer.db'}")
    with database.session() as db:
        db.execute(text("CREATE TABLE written (n INTEGER NOT NULL)"))
    yield database
    database.dispose()


def insert(n: int) -> Write:
    def write(db: Session) -> None:
        db.execute(text("INSERT INTO written (n) VALUES (:n)"), {"n": n})
    return write


def written(database: Database) -> list[int]:
    with database.session() as db:
        return list(db.scalars(text("SELECT n FROM written ORDER BY rowid")))


def test_writes_are_made_in_the_order_given(database: Database) -> None:
    with CatalogueWriter(database) as writer:
        for n in range(50):
            writer.submit(insert(n))
        writer.flush()
        assert written(database) == list(range(50))


def test_a_failed_write_is_rolled_back_raised_to_the_walk_and_ends_the_writing(database: Database) -> None:
    def half_then_fail(db: Session) -> None:
        insert(2)(db)
        raise RuntimeError("disk full")

    with CatalogueWriter(database) as writer:
        writer.submit(insert(1))
        writer.submit(half_then_fail)
        with pytest.raises(RuntimeError, match="disk full"):
            writer.flush()
        with pytest.raises(RuntimeError, match="disk full"):
            writer.submit(insert(3))
    assert written(database) == [1]


def test_what_is_queued_is_written_when_the_writer_closes(database: Database) -> None:
    with CatalogueWriter(database) as writer:
        for n in range(3):
            writer.submit(insert(n))
    assert written(database) == [0, 1, 2]
