"""The live-frames websocket over https: a login cookie (`__Host-` prefixed there) counts only from beamhub's own
pages, as over http."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

URL = "wss://testserver/api/v1/proposals/2024-00001/stream"


@pytest.fixture
def https_client(tmp_path: Path) -> Iterator[TestClient]:
    from beamhub.app import create_app
    from beamhub.config import Settings

    settings = Settings(state_dir=tmp_path, manage_system_accounts=False, uid_min=150000, uid_max=150010)
    with TestClient(create_app(settings, run_reconciler=False), base_url="https://testserver") as client:
        yield client


def _refusal(client: TestClient, origin: str) -> WebSocketDenialResponse:
    headers = {"origin": origin, "cookie": "__Host-beamhub-session=whatever"}
    with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect(URL, headers=headers):
        pass
    return refused.value


def test_a_secure_login_cookie_from_another_origin_is_refused(https_client: TestClient) -> None:
    refused = _refusal(https_client, "https://x.sessions.testserver")
    assert refused.status_code == 403
    assert "cross-origin" in refused.json()["detail"]


def test_a_secure_login_cookie_from_beamhub_s_own_pages_passes_the_origin_check(https_client: TestClient) -> None:
    refused = _refusal(https_client, "https://testserver")
    assert refused.status_code == 401
