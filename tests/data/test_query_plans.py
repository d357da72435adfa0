"""No request on the data routes scans the catalogue: with 300,000 file records, every query that the listing
routes run seeks an index (SQLite's own query plan says so), a page is read in path order without a sort, and a
download or zip from a proposal on one tier reads no catalogue at all. PostgreSQL gets the same indexes from the
same migrations."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event

from beamhub.app import create_app
from beamhub.config import Settings
from beamhub.data.browsing.service import SCAN_ROWS
from beamhub.data.models import DataFile
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.db import insert_rows, utcnow
from beamhub.identity.principal import Principal

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ADMIN = Principal(username="admin-test", user_id=None, roles=frozenset({"admin"}))
DATASETS, FILES_PER_DATASET = 50, 2000
CATALOGUE_TABLES = ("data_files", "datasets")


@dataclass
class Catalogue:
    client: TestClient
    proposal_id: str
    statements: list[tuple[str, Any]]
    explain: Any


@pytest.fixture(scope="module")
def catalogue() -> Iterator[Catalogue]:
    """Three proposals of 100,000 records each, alice's routes to the middle one, and its queries as they run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from fastapi.testclient import TestClient
    tmp = Path(tempfile.mkdtemp(prefix="beamhub-plans-"))
    try:
        (tmp / "storage").mkdir(mode=0o755)
        tmp.chmod(0o755)
        settings = Settings(state_dir=tmp / "state", storage_root=tmp / "storage", manage_system_accounts=False,
                            uid_min=151000, uid_max=151100)
        app = create_app(settings, run_reconciler=False)
        services = app.state.services
        token, proposal_id = _populate(services)
        statements: list[tuple[str, Any]] = []
        event.listen(services.db.engine, "before_cursor_execute",
                     lambda _conn, _cursor, statement, parameters, *_: statements.append((statement, parameters)))

        def explain(statement: str, parameters: Any) -> list[str]:
            with services.db.engine.connect() as connection:
                return [row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]

        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
            yield Catalogue(client, proposal_id, statements, explain)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _populate(services: Any) -> tuple[str, str]:
    """Alice's token, and the id of her proposal: the middle one of three, with one real file."""
    services.identity.create_user("qpalice", by=ADMIN)
    token, _ = services.identity.issue_token("qpalice", "plans", by=ADMIN)
    ids = [_proposal(services, members=[{"username": "qpalice"}] if n == 1 else []) for n in range(3)]
    real = services.data.proposal_dir(services.data.get(ADMIN, ids[1])) / "scan020" / "f00010.h5"
    real.parent.mkdir()
    real.write_bytes(b"frame")
    services.registration.register(ADMIN, ids[1])
    _fill(services.db, ids, skip="scan020/f00010.h5")
    return token, ids[1]


def _proposal(services: Any, members: list[dict[str, str]]) -> str:
    now = datetime.now(UTC)
    body = ProposalCreate(id=f"2023-{secrets.randbelow(10**5):05d}", title="Catalogue at scale", beamline="b9",
                          beamtime_start=now - timedelta(days=1), beamtime_end=now, members=members)
    return services.data.create(ADMIN, body).id


def _fill(database: Any, ids: list[str], skip: str) -> None:
    """DATASETS x FILES_PER_DATASET catalogue records for each proposal (records only: no files behind them)."""
    columns = ("proposal_id", "relpath", "parent", "size", "mtime_ns", "sha256", "tier", "registered_at")
    now = utcnow()
    with database.session() as db:
        for proposal_id in ids:
            rows = [(proposal_id, f"scan{d:03d}/f{f:05d}.h5", f"scan{d:03d}", 1, 1, None, "hot", now)
                    for d in range(DATASETS) for f in range(FILES_PER_DATASET)]
            insert_rows(db, DataFile.__table__, columns, [row for row in rows if row[1] != skip])


def catalogue_plans(catalogue: Catalogue, method: str, path: str, **params: Any) -> list[str]:
    """Call a route as alice; the plan lines of its queries that read the catalogue's tables."""
    catalogue.statements.clear()
    response = catalogue.client.request(method, f"/api/v1/proposals/{catalogue.proposal_id}{path}", params=params)
    assert response.status_code == 200, response.text
    plans = [catalogue.explain(statement, parameters) for statement, parameters in catalogue.statements
             if statement.lstrip().upper().startswith("SELECT")
             and any(f"FROM {table}" in statement for table in CATALOGUE_TABLES)]
    return [line for plan in plans for line in plan]


@pytest.mark.parametrize(("method", "path", "params"), [
    ("GET", "/files", {"limit": 1000}),
    ("GET", "/files", {"prefix": "scan020", "after": "scan020/f01000.h5", "limit": 100}),
    ("GET", "/files", {"prefix": "scan049"}),
    ("GET", "/files", {"prefix": "scan020", "after": "/1000/scan020/f00010.h5", "limit": 5}),
    ("GET", "/datasets", {"after": "scan010", "limit": 20}),
])
def test_every_catalogue_query_of_a_listing_seeks_an_index(catalogue: Catalogue, method: str, path: str,
                                                           params: dict[str, Any]) -> None:
    plan = catalogue_plans(catalogue, method, path, **params)
    assert plan, f"{method} {path} read no catalogue table"
    assert not [line for line in plan if line.startswith("SCAN") or "TEMP B-TREE" in line], plan


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/files/scan020/f00010.h5"),
    ("HEAD", "/files/scan020/f00010.h5"),
    ("GET", "/datasets/scan020/zip"),
])
def test_a_download_from_a_proposal_on_one_tier_reads_no_catalogue(catalogue: Catalogue, method: str,
                                                                    path: str) -> None:
    """The file is where the proposal's folder is: the catalogue is asked for a file's tier only when the
    proposal's data lies on two tiers (during a move)."""
    assert catalogue_plans(catalogue, method, path) == []


def test_a_page_holds_what_the_member_may_read_in_path_order(catalogue: Catalogue) -> None:
    page = catalogue.client.get(f"/api/v1/proposals/{catalogue.proposal_id}/files",
                                params={"prefix": "scan020", "after": "scan020/f00009.h5", "limit": 5}).json()
    assert [item["path"] for item in page["items"]] == ["scan020/f00010.h5"]  # the rest has no file to read
    assert page["next"] == "scan020/f00010.h5"  # never a path the member may not read
    hidden = catalogue.client.get(f"/api/v1/proposals/{catalogue.proposal_id}/files",
                                  params={"prefix": "scan020", "after": page["next"], "limit": 5}).json()
    assert hidden == {"items": [], "next": f"/{SCAN_ROWS}/scan020/f00010.h5"}  # a bounded scan, no name it hid
    rest = catalogue.client.get(f"/api/v1/proposals/{catalogue.proposal_id}/files",
                                params={"prefix": "scan020", "after": hidden["next"], "limit": 5}).json()
    assert rest == {"items": [], "next": None}
