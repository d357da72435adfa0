"""Watching what a test's code asks the database."""

from __future__ import annotations

from sqlalchemy import event

from beamhub.db import Database


def statements_reading(db: Database, table: str) -> list[str]:
    """The statements that read `table`, appended as they run from now on."""
    seen: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def note(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if f"FROM {table}" in statement:
            seen.append(statement)

    return seen
