"""Roles and scopes: staff reach the sessions of their beamlines and no other; a token without the sessions scope
reaches none; a token without the keys scope adds no SSH key (directly or through the spawner's sshpubkeys); a
limited token can neither set a password nor issue a wider token; a disabled user reaches nothing and their
sessions end."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers.authz_world import SESSION_BODY, World, detail, public_key, world_of


@pytest.fixture(scope="module")
def world(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[Any]:
    with world_of(module_beamhub_factory, uid_range_env) as built:
        yield built


@pytest.fixture(scope="module")
def beamlines(world: World) -> dict[str, str]:
    """A B7 and a BE workstation: their IPs."""
    ips = {"B7": f"192.0.2.{random.randrange(1, 120)}", "BE": f"192.0.2.{random.randrange(130, 250)}"}
    for beamline, ip in ips.items():
        response = world.server.admin.post("/uniqueipinfo/", json={"sourceip": ip, "beamline": beamline})
        assert response.status_code == 201, response.text
    return ips


def test_staff_manage_the_sessions_of_their_beamline_and_no_other(world: World, beamlines: dict[str, str]) -> None:
    _, token = world.user(roles=["user", "staff"], beamlines=["B7"])
    staff = world.server.client(token)
    b7 = world.session("admin", source_ip=beamlines["B7"])
    be = world.session("admin", source_ip=beamlines["BE"])
    listed = {s["id"] for s in staff.get("/api/v1/sessions").json()}
    assert b7["id"] in listed and be["id"] not in listed
    assert staff.get(f"/api/v1/sessions/{b7['id']}").status_code == 200
    assert staff.patch(f"/api/v1/sessions/{b7['id']}", json={"runtime": 600}).status_code == 200
    for method, path in [("GET", ""), ("PATCH", ""), ("GET", "/events"), ("DELETE", "")]:
        body = {"runtime": 600} if method == "PATCH" else None
        response = staff.request(method, f"/api/v1/sessions/{be['id']}{path}", json=body)
        assert response.status_code == 403, detail(response)
    assert staff.get(f"/s/{be['id']}/").status_code == 403
    assert staff.get(f"/s/{b7['id']}/").status_code == 403  # managing a session is not entering it
    stopped = staff.delete(f"/api/v1/sessions/{b7['id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] in ("stopped", "stopping")
    assert world.server.admin.get(f"/api/v1/sessions/{be['id']}").json()["state"] in ("starting", "running")
    assert world.server.admin.delete(f"/api/v1/sessions/{be['id']}").status_code == 200


def test_staff_of_another_beamline_see_nothing(world: World, beamlines: dict[str, str]) -> None:
    _, token = world.user(roles=["user", "staff"], beamlines=["BE"])
    b7 = world.session("admin", source_ip=beamlines["B7"])
    try:
        staff = world.server.client(token)
        assert staff.get(f"/api/v1/sessions/{b7['id']}").status_code == 403
        assert staff.delete(f"/api/v1/sessions/{b7['id']}").status_code == 403
        assert b7["id"] not in {s["id"] for s in staff.get("/api/v1/sessions").json()}
    finally:
        world.server.admin.delete(f"/api/v1/sessions/{b7['id']}")


def test_a_token_without_the_sessions_scope_reaches_no_session(world: World) -> None:
    response = world.server.admin.post(f"/api/v1/users/{world.alice}/tokens",
                                       json={"name": "reader", "scopes": ["data:read"]})
    assert response.status_code == 201, response.text
    reader = world.server.client(response.json()["token"])
    sid = world.ids["session_id"]
    for method, path, body in [("GET", "/api/v1/sessions", None), ("POST", "/api/v1/sessions", SESSION_BODY),
                               ("GET", f"/api/v1/sessions/{sid}", None),
                               ("PATCH", f"/api/v1/sessions/{sid}", {"runtime": 600}),
                               ("GET", f"/api/v1/sessions/{sid}/events", None),
                               ("DELETE", f"/api/v1/sessions/{sid}", None), ("GET", f"/s/{sid}/", None),
                               ("GET", f"/userpod/{world.alice}", None),
                               ("POST", "/userpod/", {"username": world.alice, "single_cmd": "sleep"})]:
        response = reader.request(method, path, json=body)
        assert response.status_code == 403, detail(response)
    assert world.server.admin.get(f"/api/v1/sessions/{sid}").json()["state"] in ("starting", "running")
    assert reader.get(f"/api/v1/users/{world.alice}").status_code == 200


@pytest.mark.parametrize("scopes", [["data:read"], ["sessions"], ["sessions", "data:read"]])
def test_a_limited_token_cannot_add_ssh_keys_or_set_the_password(world: World, scopes: list[str]) -> None:
    response = world.server.admin.post(f"/api/v1/users/{world.alice}/tokens",
                                       json={"name": "limited", "scopes": scopes})
    limited = world.server.client(response.json()["token"])
    before = world.server.admin.get(f"/api/v1/users/{world.alice}/keys").json()
    key = limited.post(f"/api/v1/users/{world.alice}/keys", json={"public_key": public_key()})
    assert key.status_code == 403, detail(key)
    pod = limited.post("/userpod/", json={"username": world.alice, "single_cmd": "sleep", "sshpubkeys": public_key()})
    assert pod.status_code == 403, detail(pod)
    assert world.server.admin.get(f"/api/v1/users/{world.alice}/keys").json() == before
    listed = limited.get(f"/api/v1/users/{world.alice}/keys")
    assert listed.status_code == (200 if "sessions" in scopes else 403), detail(listed)
    password = limited.put(f"/api/v1/users/{world.alice}/password", json={"password": secrets.token_hex(8)})
    assert password.status_code == 403, detail(password)
    assert "scope" in password.json()["detail"]


def test_a_token_with_the_keys_scope_adds_a_key(world: World) -> None:
    response = world.server.admin.post(f"/api/v1/users/{world.alice}/tokens",
                                       json={"name": "keys", "scopes": ["keys"]})
    added = world.server.client(response.json()["token"]).post(f"/api/v1/users/{world.alice}/keys",
                                                               json={"public_key": public_key()})
    assert added.status_code == 201, detail(added)


def test_a_limited_token_cannot_issue_a_wider_one(world: World) -> None:
    response = world.server.admin.post(f"/api/v1/users/{world.alice}/tokens",
                                       json={"name": "reader", "scopes": ["data:read"]})
    reader = world.server.client(response.json()["token"])
    path = f"/api/v1/users/{world.alice}/tokens"
    assert reader.post(path, json={"name": "all"}).status_code == 403
    assert reader.post(path, json={"name": "s", "scopes": ["sessions"]}).status_code == 403
    narrow = reader.post(path, json={"name": "same", "scopes": ["data:read"]})
    assert narrow.status_code == 201, narrow.text
    assert narrow.json()["scopes"] == ["data:read"]
    assert world.server.client(world.alice_token).post(path, json={"name": "full"}).status_code == 201


def test_a_disabled_user_is_refused_and_their_sessions_end(world: World) -> None:
    username, token = world.user()
    carol = world.server.client(token)
    session = world.session(token)
    response = world.server.admin.patch(f"/api/v1/users/{username}", json={"state": "disabled"})
    assert response.status_code == 200, response.text
    for method, path in [("GET", f"/api/v1/users/{username}"), ("GET", "/api/v1/sessions"),
                         ("GET", f"/api/v1/sessions/{session['id']}"), ("GET", f"/s/{session['id']}/"),
                         ("POST", f"/api/v1/users/{username}/tokens")]:
        response = carol.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 403, detail(response)
    deadline = time.monotonic() + 30
    while (state := world.server.admin.get(f"/api/v1/sessions/{session['id']}").json()["state"]) == "stopping":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state == "stopped"
