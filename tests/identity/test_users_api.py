"""Users through the HEPS API (/users/) and the resource API (/api/v1/users), on SQLite and PostgreSQL:
each user is a real system account with a UID from the configured range and a private home."""

from __future__ import annotations

import os
import pwd
import secrets
import stat
import subprocess
from typing import Any

import httpx
import pytest

from helpers.accounts import UserMaker
from helpers.http import assert_error
from helpers.waiting import wait_for


def new_name() -> str:
    return f"bu{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, module_database_url: str, uid_range_env: dict[str, str]) -> Any:
    """One server per database (SQLite, PostgreSQL) that this module's tests share."""
    return module_beamhub_factory(env={"BEAMHUB_DATABASE_URL": module_database_url, **uid_range_env})


@pytest.fixture
def uid_range(uid_range_env: dict[str, str]) -> range:
    return range(int(uid_range_env["BEAMHUB_UID_MIN"]), int(uid_range_env["BEAMHUB_UID_MAX"]) + 1)


def test_admin_creates_a_user_through_the_heps_api(server: Any, system_users: list[str], uid_range: range) -> None:
    username = new_name()
    system_users.append(username)
    response = server.admin.post("/users/", json={"username": username})
    assert response.status_code == 201, response.text
    user = response.json()
    assert user["username"] == username
    assert user["uid"] in uid_range
    assert user["gid"] == user["uid"]
    account = pwd.getpwnam(username)
    assert (account.pw_uid, account.pw_gid) == (user["uid"], user["gid"])


def test_a_new_user_gets_a_private_home_owned_by_its_name(make_user: UserMaker) -> None:
    username, _ = make_user()
    home = pwd.getpwnam(username).pw_dir
    info = os.stat(home)
    assert info.st_uid == pwd.getpwnam(username).pw_uid
    assert stat.S_IMODE(info.st_mode) == 0o700
    listing = subprocess.run(["ls", "-ld", home], capture_output=True, text=True, check=True).stdout.split()
    assert listing[2] == username
    assert listing[3] == username


def test_uids_come_from_the_configured_range_and_differ(make_user: UserMaker, server: Any,
                                                        uid_range: range) -> None:
    uids = [server.admin.get(f"/users/{make_user()[0]}").json()["uid"] for _ in range(3)]
    assert all(uid in uid_range for uid in uids)
    assert len(set(uids)) == 3


def test_an_explicit_uid_is_used(make_user: UserMaker, server: Any, uid_range: range) -> None:
    wanted = uid_range[-1]
    username, _ = make_user(uid=wanted)
    assert pwd.getpwnam(username).pw_uid == wanted
    assert server.admin.get(f"/api/v1/users/{username}").json()["uid"] == wanted


def test_a_duplicate_user_is_a_conflict_on_both_apis(make_user: UserMaker, server: Any) -> None:
    username, _ = make_user()
    assert_error(server.admin.post("/users/", json={"username": username}), 409, username, "already exists")
    assert_error(server.admin.post("/api/v1/users", json={"username": username}), 409, username)


def test_a_taken_uid_is_a_conflict(make_user: UserMaker, server: Any, system_users: list[str]) -> None:
    first, _ = make_user()
    uid = pwd.getpwnam(first).pw_uid
    other = new_name()
    system_users.append(other)
    assert_error(server.admin.post("/api/v1/users", json={"username": other, "uid": uid}), 409)
    assert_error(server.admin.get(f"/users/{other}"), 404, other)


def test_a_name_held_by_a_foreign_system_account_is_a_conflict_and_not_recorded(server: Any) -> None:
    before = server.admin.get("/users/count").json()["count"]
    assert_error(server.admin.post("/users/", json={"username": "daemon"}), 409, "daemon")
    assert server.admin.get("/users/count").json()["count"] == before
    assert pwd.getpwnam("daemon").pw_uid == 1


@pytest.mark.parametrize("username", ["Alice", "1abc", "has space", "a" * 33, "", "x;rm", "../etc"])
def test_an_invalid_username_is_rejected_on_both_apis(server: Any, username: str) -> None:
    assert_error(server.admin.post("/users/", json={"username": username}), 422, "username")
    assert_error(server.admin.post("/api/v1/users", json={"username": username}), 422, "username")


def test_unknown_fields_and_low_uids_are_rejected(server: Any) -> None:
    assert_error(server.admin.post("/users/", json={"username": new_name(), "shell": "/bin/sh"}), 422, "shell")
    assert_error(server.admin.post("/users/", json={"username": new_name(), "uid": 0}), 422, "uid")


def usernames(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [user["username"] for user in response.json()]


def test_users_are_counted_listed_and_paged(make_user: UserMaker, server: Any) -> None:
    before = server.admin.get("/users/count").json()["count"]
    names = sorted(make_user()[0] for _ in range(3))
    assert server.admin.get("/users/count").json() == {"count": before + 3}
    everyone = usernames(server.admin.get("/users/", params={"limit": 1000}))
    assert len(everyone) == before + 3
    assert everyone == sorted(everyone)
    assert set(names) <= set(everyone)
    assert usernames(server.admin.get("/users/", params={"skip": 1, "limit": 2})) == everyone[1:3]
    assert usernames(server.admin.get("/api/v1/users", params={"offset": 2, "limit": 1})) == everyone[2:3]
    assert server.admin.get(f"/users/{names[0]}").json()["username"] == names[0]


def test_bad_paging_parameters_are_rejected(server: Any) -> None:
    assert_error(server.admin.get("/users/", params={"skip": -1}), 422, "skip")
    assert_error(server.admin.get("/users/", params={"limit": 0}), 422, "limit")
    assert_error(server.admin.get("/users/", params={"limit": "many"}), 422, "limit")


def test_an_unknown_user_is_not_found(server: Any) -> None:
    assert_error(server.admin.get("/users/nobodyhere"), 404, "nobodyhere")
    assert_error(server.admin.get("/api/v1/users/nobodyhere"), 404, "nobodyhere")
    assert_error(server.admin.post("/api/v1/users/nobodyhere/tokens", json={}), 404, "nobodyhere")


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/users/"), ("GET", "/users/"), ("GET", "/users/count"), ("GET", "/users/someone"),
    ("POST", "/api/v1/users"), ("GET", "/api/v1/users"), ("GET", "/api/v1/users/someone"),
])
def test_without_credentials_every_users_route_is_401(server: Any, method: str, path: str) -> None:
    body = {"username": new_name()} if method == "POST" else None
    assert_error(server.client().request(method, path, json=body), 401)
    assert_error(server.client("not-a-token").request(method, path, json=body), 401, "unknown or revoked")


def test_an_ordinary_user_is_forbidden_on_admin_routes(make_user: UserMaker, server: Any) -> None:
    _, token = make_user()
    other, _ = make_user()
    user = server.client(token)
    assert_error(user.post("/users/", json={"username": new_name()}), 403, "administrator")
    assert_error(user.post("/api/v1/users", json={"username": new_name()}), 403, "administrator")
    assert_error(user.get("/users/"), 403)
    assert_error(user.get("/users/count"), 403)
    assert_error(user.get("/api/v1/users"), 403)
    assert_error(user.get(f"/users/{other}"), 403)
    assert_error(user.get(f"/api/v1/users/{other}"), 403)
    assert_error(user.post(f"/api/v1/users/{other}/tokens", json={}), 403)


def test_an_ordinary_user_cannot_make_itself_admin(make_user: UserMaker, server: Any) -> None:
    _, token = make_user()
    assert_error(server.client(token).post("/api/v1/users", json={"username": new_name(), "roles": ["admin"]}), 403)


def test_a_user_reads_itself_and_issues_its_own_tokens(make_user: UserMaker, server: Any) -> None:
    username, token = make_user()
    user = server.client(token)
    assert user.get(f"/users/{username}").json()["username"] == username
    me = user.get(f"/api/v1/users/{username}").json()
    assert (me["username"], me["is_admin"]) == (username, False)
    response = user.post(f"/api/v1/users/{username}/tokens", json={"name": "laptop"})
    assert response.status_code == 201, response.text
    assert server.client(response.json()["token"]).get(f"/users/{username}").status_code == 200


def test_an_admin_user_may_use_admin_routes(make_user: UserMaker, server: Any) -> None:
    _, token = make_user(roles=["admin"])
    assert server.client(token).get("/users/count").status_code == 200


def test_an_expired_token_is_401(make_user: UserMaker, server: Any) -> None:
    username, _ = make_user()
    response = server.admin.post(f"/api/v1/users/{username}/tokens", json={"name": "short", "expires_in": 1})
    assert response.status_code == 201, response.text
    assert response.json()["expires_at"] is not None
    short = server.client(response.json()["token"])
    assert short.get(f"/users/{username}").status_code == 200
    # the server runs in its own process, so its clock cannot be moved: poll until the one second is over
    assert_error(wait_for(lambda: (r := short.get(f"/users/{username}")).status_code != 200 and r, 3, "the expiry"),
                 401, "expired")


def test_token_lifetimes_must_be_positive(make_user: UserMaker, server: Any) -> None:
    username, _ = make_user()
    assert_error(server.admin.post(f"/api/v1/users/{username}/tokens", json={"expires_in": 0}), 422, "expires_in")
