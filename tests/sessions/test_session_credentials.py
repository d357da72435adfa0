"""What runs in a session acts as its user through the API with a token of its own (BEAMHUB_URL, BEAMHUB_TOKEN): it
may read data and nothing more, and it stops working once the session ends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from helpers.waiting import wait_for


@pytest.fixture(scope="module")
def hub(make_module_hub: Any) -> Any:
    return make_module_hub()


def test_a_session_gets_a_token_of_its_user_that_reads_data_only_and_ends_with_it(hub: Any,
                                                                                   hub_sessions: Any) -> None:
    name, own_token = hub.create_user()
    session = hub_sessions.running(own_token, kind="command", command="sleep", args=["600"], memory="64Mi",
                                   ncores=0.1)
    env = hub_sessions.program_env(session["id"])
    assert env["BEAMHUB_URL"] == hub.url
    token = env["BEAMHUB_TOKEN"]
    with hub.client(token) as client:
        assert client.get("/api/v1/me").json()["username"] == name
        assert client.get("/api/v1/proposals").status_code == 200
        assert client.get("/api/v1/sessions").status_code == 403  # the token may read data, nothing else
        assert client.post(f"/api/v1/users/{name}/tokens", json={"name": "wider"}).status_code == 403
    with hub.client(own_token) as client:
        tokens = client.get(f"/api/v1/users/{name}/tokens").json()
    listed = [t for t in tokens if t["name"] == f"session {session['id']}"]
    assert [t["scopes"] for t in listed] == [["data:read"]]  # the user sees it among their tokens
    hub_sessions.stop(session["id"])

    def refused() -> bool:
        return httpx.get(f"{hub.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    wait_for(refused, timeout=5, what="the session's token to be refused once it ended")
