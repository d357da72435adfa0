"""Groups are first-class and reach the system and the next session; tokens are scoped,
listed without their secret, and revocable."""

from __future__ import annotations

import grp
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from beamhub.identity.accounts.schemas import UserOut
from helpers.accounts import UserMaker


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, module_database_url: str, uid_range_env: dict[str, str]) -> Any:
    return module_beamhub_factory(env={"BEAMHUB_DATABASE_URL": module_database_url, **uid_range_env})


@pytest.fixture
def user(make_user: UserMaker) -> tuple[str, str]:
    return make_user()


def new_group(server: Any, system_groups: list[str]) -> dict:
    name = f"bg{secrets.token_hex(3)}"
    system_groups.append(name)
    response = server.admin.post("/api/v1/groups", json={"name": name, "description": "beamline B7 staff"})
    assert response.status_code == 201, response.text
    return response.json()


def id_groups(username: str) -> set[str]:
    return set(subprocess.run(["id", "-Gn", username], capture_output=True, text=True, check=True).stdout.split())


def proc_groups(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return {int(g) for g in line.split()[1:]}
    return set()


def session_pids(server: Any, session_id: str) -> list[int]:
    record = server.wait_for_state(session_id, {"running"})
    out = subprocess.run(["pgrep", "-u", record["user"], "-x", "sleep"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_new_group_is_a_system_group_with_its_gid(server: Any, system_groups: list[str]) -> None:
    group = new_group(server, system_groups)
    assert grp.getgrnam(group["name"]).gr_gid == group["gid"]
    assert group["members"] == []


def test_membership_changes_show_in_id_and_in_the_listing(server: Any, user: tuple[str, str],
                                                          system_groups: list[str]) -> None:
    username, _ = user
    group = new_group(server, system_groups)
    added = server.admin.put(f"/api/v1/groups/{group['name']}/members/{username}")
    assert added.status_code == 200 and added.json()["members"] == [username]
    assert group["name"] in id_groups(username)
    assert server.admin.get(f"/api/v1/users/{username}").json()["groups"] == sorted([group["name"], "beamhub-users"])
    removed = server.admin.delete(f"/api/v1/groups/{group['name']}/members/{username}")
    assert removed.json()["members"] == []
    assert group["name"] not in id_groups(username)


def test_the_api_shows_a_user_as_the_heps_api_does_alone_and_in_a_page(server: Any, user: tuple[str, str],
                                                                        system_groups: list[str]) -> None:
    """/api/v1/users reads columns and serializes a view; /users/ (HEPS) reads ORM users through UserOut."""
    username, token = user
    names = [new_group(server, system_groups)["name"] for _ in range(2)]
    for name in reversed(names):
        assert server.admin.put(f"/api/v1/groups/{name}/members/{username}").status_code == 200
    mine = server.client(token).get(f"/api/v1/users/{username}").json()
    assert set(mine) == set(UserOut.model_fields)
    assert mine == server.admin.get(f"/users/{username}").json()
    assert mine["groups"] == sorted([*names, "beamhub-users"])
    page = server.admin.get("/api/v1/users", params={"limit": 1000}).json()
    assert page == server.admin.get("/users/", params={"limit": 1000}).json()
    assert [entry for entry in page if entry["username"] == username] == [mine]


def test_a_group_change_reaches_the_users_next_session(server: Any, user: tuple[str, str],
                                                       system_groups: list[str]) -> None:
    username, token = user
    group = new_group(server, system_groups)
    body = {"kind": "command", "command": "sleep", "args": ["300"], "memory": "128Mi", "ncores": 0.2}
    client = server.client(token)
    first = client.post("/api/v1/sessions", json={**body, "name": "before"}).json()
    before = session_pids(server, first["id"])
    server.admin.put(f"/api/v1/groups/{group['name']}/members/{username}")
    second = client.post("/api/v1/sessions", json={**body, "name": "after"}).json()
    after = [pid for pid in session_pids(server, second["id"]) if pid not in before]
    assert all(group["gid"] not in proc_groups(pid) for pid in before)
    assert after and all(group["gid"] in proc_groups(pid) for pid in after)
    for session in (first, second):
        client.delete(f"/api/v1/sessions/{session['id']}")


def test_group_routes_are_for_administrators(server: Any, user: tuple[str, str], system_groups: list[str]) -> None:
    _, token = user
    client = server.client(token)
    assert client.get("/api/v1/groups").status_code == 403
    assert client.post("/api/v1/groups", json={"name": "nope"}).status_code == 403


def test_unknown_group_or_user_is_404_and_duplicate_group_409(server: Any, user: tuple[str, str],
                                                             system_groups: list[str]) -> None:
    username, _ = user
    group = new_group(server, system_groups)
    assert server.admin.put(f"/api/v1/groups/nosuchgroup/members/{username}").status_code == 404
    assert server.admin.put(f"/api/v1/groups/{group['name']}/members/nosuchuser").status_code == 404
    duplicate = server.admin.post("/api/v1/groups", json={"name": group["name"]})
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["detail"]


def test_a_token_without_a_scope_list_gets_what_the_users_roles_can_use(server: Any, user: tuple[str, str]) -> None:
    username, token = user
    ordinary = server.client(token).post(f"/api/v1/users/{username}/tokens", json={"name": "all"})
    assert ordinary.status_code == 201 and ordinary.json()["scopes"] == ["data:read", "keys", "sessions"]
    admin = server.admin.post("/api/v1/users", json={"username": f"{username}a", "roles": ["admin"]}).json()
    response = server.admin.post(f"/api/v1/users/{admin['username']}/tokens", json={"name": "all"})
    assert response.json()["scopes"] == ["admin", "data:ingest", "data:read", "keys", "sessions"]
    subprocess.run(["userdel", "-r", admin["username"]], capture_output=True)
    subprocess.run(["groupdel", admin["username"]], capture_output=True)


def test_tokens_are_listed_without_their_secret_and_revocation_is_immediate(server: Any,
                                                                            user: tuple[str, str]) -> None:
    username, token = user
    client = server.client(token)
    second = client.post(f"/api/v1/users/{username}/tokens", json={"name": "laptop", "scopes": ["sessions"]})
    assert second.status_code == 201 and second.json()["scopes"] == ["sessions"]
    listed = client.get(f"/api/v1/users/{username}/tokens").json()
    assert {t["name"] for t in listed} >= {"test", "laptop"}
    assert all("token" not in t for t in listed) and token not in str(listed)
    revoked = client.delete(f"/api/v1/users/{username}/tokens/{second.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = server.client(second.json()["token"]).get("/api/v1/sessions")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_token_scopes_limit_what_a_token_may_do(server: Any, user: tuple[str, str]) -> None:
    username, token = user
    client = server.client(token)
    unknown = client.post(f"/api/v1/users/{username}/tokens", json={"scopes": ["everything"]})
    assert unknown.status_code == 422 and "unknown scopes" in unknown.json()["detail"]
    assert client.post(f"/api/v1/users/{username}/tokens", json={"scopes": ["admin"]}).status_code == 403
    reader = client.post(f"/api/v1/users/{username}/tokens", json={"scopes": ["data:read"]}).json()["token"]
    refused = server.client(reader).get("/api/v1/sessions")
    assert refused.status_code == 403 and "sessions" in refused.json()["detail"]


def test_a_role_change_applies_to_the_next_request(server: Any, user: tuple[str, str]) -> None:
    """A promotion reaches tokens issued after it (older ones keep their scopes); a demotion reaches every token."""
    username, token = user
    client = server.client(token)
    assert client.get("/api/v1/users").status_code == 403
    promoted = server.admin.patch(f"/api/v1/users/{username}", json={"roles": ["admin"]})
    assert promoted.status_code == 200 and promoted.json()["roles"] == ["admin", "user"]
    assert client.get("/api/v1/users").status_code == 403
    admin_token = server.admin.post(f"/api/v1/users/{username}/tokens", json={"name": "admin"}).json()["token"]
    assert server.client(admin_token).get("/api/v1/users").status_code == 200
    assert server.admin.patch(f"/api/v1/users/{username}", json={"roles": ["user"]}).status_code == 200
    assert server.client(admin_token).get("/api/v1/users").status_code == 403
