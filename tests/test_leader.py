"""One replica leads the loops that must run once per deployment (reconciler, Slurm poller), and another takes
over when it stops or loses its database connection."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from beamhub.db import Database
from beamhub.leader import JOB_POLLER_LOCK, RECONCILER_LOCK, LeaderLock
from helpers.waiting import wait_for


@pytest.fixture
def replicas(postgres_database_url: str) -> Iterator[tuple[LeaderLock, LeaderLock]]:
    """The leader locks of two replicas sharing one PostgreSQL."""
    databases = [Database(postgres_database_url), Database(postgres_database_url)]
    locks = (LeaderLock(databases[0], RECONCILER_LOCK), LeaderLock(databases[1], RECONCILER_LOCK))
    yield locks
    for lock, db in zip(locks, databases, strict=True):
        lock.release()
        db.dispose()


def test_the_one_server_of_sqlite_leads(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'beamhub.db'}")
    assert LeaderLock(db, RECONCILER_LOCK).held()
    db.dispose()


def test_one_replica_leads_and_another_takes_over_when_it_stops(replicas: tuple[LeaderLock, LeaderLock]) -> None:
    first, second = replicas
    assert first.held()
    assert not second.held()
    assert first.held()  # asked again, it keeps the lead
    first.release()
    assert second.held()
    assert not first.held()


def test_a_leader_that_loses_its_connection_loses_the_lead(replicas: tuple[LeaderLock, LeaderLock]) -> None:
    first, second = replicas
    assert first.held()
    assert first._connection is not None
    backend = first._connection.scalar(text("SELECT pg_backend_pid()"))
    url = second.db.engine.url.render_as_string(hide_password=False).replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    wait_for(second.held, timeout=10)  # the killed connection took its lock along
    assert not first.held()  # and the old leader notices that it lost the lead


def test_one_process_on_sqlite_leads_and_another_takes_over_when_it_ends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'beamhub.db'}"
    child = subprocess.Popen([sys.executable, "-c", LEAD_AND_WAIT, url], stdout=subprocess.PIPE, text=True)
    db = Database(url)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "leading"
        ours = LeaderLock(db, RECONCILER_LOCK)
        assert not ours.held()  # another process of this database leads
        poller = LeaderLock(db, JOB_POLLER_LOCK)
        assert poller.held()  # each loop has its own lead
        poller.release()
        child.kill()
        child.wait()
        assert ours.held()  # its lock went with it
        assert not LeaderLock(db, RECONCILER_LOCK).held()  # and now this process holds it
        ours.release()
        assert LeaderLock(db, RECONCILER_LOCK).held()
    finally:
        child.kill()
        db.dispose()


LEAD_AND_WAIT = """
import sys, time
from beamhub.db import Database
from beamhub.leader import JOB_POLLER_LOCK, RECONCILER_LOCK, LeaderLock
assert LeaderLock(Database(sys.argv[1]), RECONCILER_LOCK).held()
print("leading", flush=True)
time.sleep(600)
"""
