"""Values beyond the schemas' bounds are refused with 422 and a JSON detail naming the field, before anything is
held: the sessions API, the HEPS spawner API and tokens, on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

SESSION = {"kind": "command", "command": "sleep", "args": ["600"], "ncores": 0.5, "memory": "256Mi"}
POD = {"ncores": 0.5, "memory": "256Mi", "single_cmd": "sleep", "single_cmd_args": "600"}
TEN_YEARS = 10 * 365 * 86400


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[Any]:
    server = module_beamhub_factory(uid_range_env)
    yield server
    active = server.admin.get("/api/v1/sessions", params={"active": True}).json()
    assert active == [], "a refused request holds a session"


@pytest.fixture(scope="module")
def user(server: Any) -> tuple[str, Any]:
    """An ordinary user's name and HTTP client."""
    name, token = server.create_user()
    return name, server.client(token)


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and any(field in map(str, error["loc"]) for error in detail), detail


@pytest.mark.parametrize(("field", "value"), [
    ("ncores", 0.001),
    ("ncores", 0),
    ("ncores", 1025),
    ("memory", "65Ti"),
    ("memory", 1.5e9),
    ("gpus", 65),
    ("runtime", 10**12),
    ("runtime", 0),
    ("env", {"A=B": "1"}),
    ("env", {"1A": "1"}),
    ("env", {"A": "x\u0000y"}),
    ("args", ["a\u0000b"]),
    ("command", "sleep\u0000"),
    ("image", "x" * 256),
    ("env", {f"V{i}": "1" for i in range(257)}),
])
def test_session_bounds(user: tuple[str, Any], field: str, value: object) -> None:
    _, client = user
    assert_refused(client.post("/api/v1/sessions", json={**SESSION, field: value}), field)


def test_session_update_bounds(user: tuple[str, Any]) -> None:
    """A new run time is checked before the session is looked up."""
    _, client = user
    assert_refused(client.patch("/api/v1/sessions/none", json={"runtime": 10**12}), "runtime")
    assert_refused(client.patch("/api/v1/sessions/none", json={"expires_at": "9999-12-31T23:59:59-12:00"}),
                   "expires_at")


def test_bounds_are_valid_input(user: tuple[str, Any]) -> None:
    """The schema takes the bounds themselves; the service refuses what exceeds this site's limits, in words."""
    _, client = user
    response = client.post("/api/v1/sessions", json={**SESSION, "ncores": 0.01, "runtime": TEN_YEARS})
    assert response.status_code == 422, response.text
    assert "exceeds the maximum" in response.json()["detail"]


@pytest.mark.parametrize(("field", "value"), [
    ("ncores", 0.001),
    ("expireruntime", 10**12),
    ("expireruntime", 0),
    ("memory", "65Ti"),
    ("extra_resource", {"nvidia.com/gpu": 10**12}),
    ("scriptenv", "A=B=\u0000"),
    ("scriptenv", "A-B=1"),
    ("single_cmd_args", "a\u0000b"),
    ("single_cmd_args", ";".join(["a"] * 257)),
])
def test_pod_bounds(user: tuple[str, Any], field: str, value: object) -> None:
    name, client = user
    assert_refused(client.post("/userpod/", json={"username": name, **POD, field: value}), field)


def test_pod_update_bounds(user: tuple[str, Any]) -> None:
    name, client = user
    assert_refused(client.patch("/userpod/", json={"username": name, "expireruntime": 10**12}), "expireruntime")


@pytest.mark.parametrize(("field", "value"), [("expires_in", 10**12), ("expires_in", 0), ("name", "a\u0000")])
def test_token_bounds(user: tuple[str, Any], field: str, value: object) -> None:
    name, client = user
    assert_refused(client.post(f"/api/v1/users/{name}/tokens", json={field: value}), field)


def test_user_bounds(server: Any) -> None:
    assert_refused(server.admin.post("/api/v1/users", json={"username": "nobodyhere", "uid": 2**40}), "uid")
    assert_refused(server.admin.post("/api/v1/users", json={"username": "nobodyhere", "display_name": "a\u0000"}),
                   "display_name")
