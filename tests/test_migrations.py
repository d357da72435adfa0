"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import json

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from beamhub.data import models as _data_models  # noqa: F401  (registers the catalogue's tables)
from beamhub.db import MIGRATIONS, Base, Database, migrate
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


def test_beamline_names_already_stored_are_normalized(database_url: str) -> None:
    database = Database(database_url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0005")
            connection.execute(text("INSERT INTO users (username, uid, gid, roles, beamlines, state, created_at, "
                                    "display_name, email) VALUES ('staff', 2000, 2000, '[\"staff\"]', "
                                    "'[\"B7\", \" b7\", \"BL9\"]', 'active', '2024-01-01', '', '')"))
            connection.execute(text("INSERT INTO workstations (ip, beamline, description, updated_at) "
                                    "VALUES ('10.0.0.1', ' B7', '', '2024-01-01')"))
        migrate(database.engine)
        with database.engine.connect() as connection:
            beamlines = connection.execute(text("SELECT beamlines FROM users")).scalar_one()
            workstation = connection.execute(text("SELECT beamline FROM workstations")).scalar_one()
        assert (json.loads(beamlines) if isinstance(beamlines, str) else beamlines) == ["b7", "bl9"]
        assert workstation == "b7"
    finally:
        database.dispose()
