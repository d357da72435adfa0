"""Cheap authentication: a token, once accepted, is taken for a few seconds without a database round trip; a
revocation, a disabled user or the token's own expiry still end it at once in the process that sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from beamhub.app import create_app
from beamhub.cache import SharedEpoch, TtlCache
from beamhub.config import Settings
from beamhub.identity.accounts.models import UserState
from beamhub.identity.principal import SYSTEM


@pytest.fixture
def app_and_token(tmp_path: Path) -> Iterator[tuple[TestClient, str, list[str]]]:
    """An in-process app, carol's token, and the statements that read api_tokens as they run."""
    app = create_app(Settings(state_dir=tmp_path, manage_system_accounts=False, uid_min=151000, uid_max=151010),
                     run_reconciler=False)
    services = app.state.services
    services.identity.create_user("carol", by=SYSTEM)
    token, _ = services.identity.issue_token("carol", "cached", by=SYSTEM)
    reads: list[str] = []
    event.listen(services.db.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: reads.append(statement) if "FROM api_tokens" in statement
                 else None)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client, token, reads


def test_a_token_is_looked_up_once_for_a_burst_of_requests(app_and_token: tuple[TestClient, str, list[str]]) -> None:
    client, _, reads = app_and_token
    for _ in range(20):
        assert client.get("/api/v1/me").json()["username"] == "carol"
    assert len(reads) == 1


def test_revoking_or_disabling_ends_the_cached_credential_at_once(
        app_and_token: tuple[TestClient, str, list[str]]) -> None:
    client, _, _ = app_and_token
    services = client.app.state.services
    assert client.get("/api/v1/me").status_code == 200
    services.identity.update_user("carol", state=UserState.disabled, by=SYSTEM)
    assert client.get("/api/v1/me").status_code == 403
    services.identity.update_user("carol", state=UserState.active, by=SYSTEM)
    assert client.get("/api/v1/me").status_code == 200
    token_id = services.identity.list_tokens("carol", by=SYSTEM)[0].id
    services.identity.revoke_token("carol", token_id, by=SYSTEM)
    assert client.get("/api/v1/me").status_code == 401


def test_a_token_is_never_kept_past_its_expiry(tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path, manage_system_accounts=False, uid_min=151100, uid_max=151110),
                     run_reconciler=False)
    services = app.state.services
    services.identity.create_user("dave", by=SYSTEM)
    token, _ = services.identity.issue_token("dave", "brief", expires_in=1, by=SYSTEM)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.get("/api/v1/me").status_code == 200
        time.sleep(1.1)  # past the token's second, inside the cache's two: the expiry wins
        assert client.get("/api/v1/me").status_code == 401


def test_a_group_change_makes_the_next_request_read_its_credential_anew(
        app_and_token: tuple[TestClient, str, list[str]]) -> None:
    """A kept credential carries its user's groups (a job submitted for oneself runs with them): joining or
    leaving a group ends what this process kept."""
    client, _, reads = app_and_token
    services = client.app.state.services
    services.groups.create("optics", by=SYSTEM)
    for member in (True, False):
        assert client.get("/api/v1/me").status_code == 200
        before = len(reads)
        services.groups.set_member("optics", "carol", member, by=SYSTEM)
        assert client.get("/api/v1/me").status_code == 200
        assert len(reads) == before + 1


def test_a_credential_read_before_a_revocation_elsewhere_is_not_kept(tmp_path: Path) -> None:
    """Another worker process revokes while this one reads: what this one read is not kept, nor kept answers."""
    here, elsewhere = SharedEpoch(tmp_path / "revocations"), SharedEpoch(tmp_path / "revocations")
    credentials: TtlCache[str, str] = TtlCache(60, epoch=here)
    credentials.put("kept", "before")
    before = credentials.version()
    elsewhere.move()
    credentials.put("read meanwhile", "stale", read_at=before)
    assert credentials.get("read meanwhile") is None
    assert credentials.get("kept") is None
    credentials.put("read after", "fresh", read_at=credentials.version())
    assert credentials.get("read after") == "fresh"
