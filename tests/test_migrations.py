"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from beamhub.data import models as _data_models  # noqa: F401  (registers the catalogue's tables)
from beamhub.db import Base, Database, migrate
from beamhub.jobs import models as _job_models  # noqa: F401  (registers the jobs' tables)


def test_migrations_match_models_and_are_idempotent(database_url: str) -> None:
    database = Database(database_url)
    try:
        migrate(database.engine)
        migrate(database.engine)
        with database.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(inspect(connection).get_table_names())
        assert diff == []
        assert {"users", "api_tokens", "sessions", "session_events", "workstations", "proposals", "proposal_members",
                "datasets", "data_files", "jobs", "job_events"} <= tables
    finally:
        database.dispose()
