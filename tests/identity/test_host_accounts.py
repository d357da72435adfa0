"""An administrator of beamhub is not root of the host: the API refuses host groups (root, sudo, disk), host
accounts (daemon, www-data, nobody), UIDs and GIDs outside beamhub's ranges and users' private groups, each
with a JSON 4xx, and a refused request leaves no account, group or record behind (`getent` agrees)."""

from __future__ import annotations

import grp
import pwd
import secrets
import subprocess
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

HOST_GROUPS = ["sudo", "root", "disk"]
HOST_ACCOUNTS = ["daemon", "www-data", "nobody", "root"]


def new_name(prefix: str = "ha") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def getent(database: str, name: str) -> str:
    """The line `getent DATABASE NAME` prints; '' when there is none."""
    return subprocess.run(["getent", database, name], capture_output=True, text=True).stdout.strip()


def id_groups(username: str) -> set[str]:
    return set(subprocess.run(["id", "-Gn", username], capture_output=True, text=True, check=True).stdout.split())


def assert_refused(response: httpx.Response, status: int, *fragments: str) -> None:
    """A JSON error with this status whose detail names each fragment."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = str(response.json()["detail"])
    for fragment in fragments:
        assert fragment in detail, detail


def require_host(database: str, name: str) -> str:
    """The host's entry for this name; the test is skipped on a host without it."""
    line = getent(database, name)
    if not line:
        pytest.skip(f"this host has no {database} entry {name}")
    return line


@pytest.fixture(scope="module")
def ranges(uid_range_env: dict[str, str]) -> dict[str, int]:
    """UIDs from the bottom half of the module's block, GIDs from the top half, apart from other tests' ids."""
    low = int(uid_range_env["BEAMHUB_UID_MIN"])
    return {"uid_min": low, "uid_max": low + 499, "gid_min": low + 500, "gid_max": low + 999}


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, module_database_url: str, ranges: dict[str, int]) -> Any:
    """One server per database (SQLite, PostgreSQL) with its own UID and GID ranges."""
    env = {f"BEAMHUB_{key.upper()}": str(value) for key, value in ranges.items()}
    return module_beamhub_factory(env={"BEAMHUB_DATABASE_URL": module_database_url, **env})


@pytest.fixture
def user(server: Any, system_users: list[str]) -> str:
    """A user made through the API (its account removed at the end)."""
    username = new_name("hu")
    system_users.append(username)
    server.create_user(username=username)
    return username


def assert_no_trace(server: Any, users: Sequence[str] = (), groups: Sequence[str] = ()) -> None:
    """Neither beamhub nor the host has these users (or their private groups) or these groups."""
    recorded = {group["name"] for group in server.admin.get("/api/v1/groups").json()}
    for name in users:
        assert server.admin.get(f"/api/v1/users/{name}").status_code == 404
        assert getent("passwd", name) == ""
        assert getent("group", name) == ""
    for name in groups:
        assert name not in recorded
        assert getent("group", name) == ""


def assert_creation_still_works(server: Any, system_users: list[str], system_groups: list[str],
                                ranges: dict[str, int]) -> None:
    """A normal user in a new group is still created, with ids from the ranges: no stray entry is in the way."""
    username, group = new_name("ok"), new_name("og")
    system_users.append(username)
    system_groups.append(group)
    assert server.admin.post("/api/v1/groups", json={"name": group}).status_code == 201
    server.create_user(username=username, groups=[group])
    account = pwd.getpwnam(username)
    assert ranges["uid_min"] <= account.pw_uid <= ranges["uid_max"]
    assert ranges["gid_min"] <= grp.getgrnam(group).gr_gid <= ranges["gid_max"]
    assert group in id_groups(username)


# --- host groups ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HOST_GROUPS)
def test_a_host_group_cannot_be_created(server: Any, name: str, system_users: list[str], system_groups: list[str],
                                        ranges: dict[str, int]) -> None:
    before = require_host("group", name)
    assert_refused(server.admin.post("/api/v1/groups", json={"name": name}), 403, name)
    assert name not in {group["name"] for group in server.admin.get("/api/v1/groups").json()}
    assert getent("group", name) == before
    assert_creation_still_works(server, system_users, system_groups, ranges)


@pytest.mark.parametrize("gid", ["in_range", 27, 0, "above_range"])
def test_a_group_with_an_explicit_gid_is_refused(server: Any, gid: Any, ranges: dict[str, int],
                                                 system_groups: list[str]) -> None:
    name = new_name("hg")
    system_groups.append(name)
    number = {"in_range": ranges["gid_min"], "above_range": ranges["gid_max"] + 1}.get(gid, gid)
    assert_refused(server.admin.post("/api/v1/groups", json={"name": name, "gid": number}), 422, "gid")
    assert_no_trace(server, groups=[name])


@pytest.mark.parametrize("host_group", ["disk", "sudo"])
def test_a_new_user_cannot_join_a_host_group(server: Any, host_group: str, system_users: list[str],
                                             system_groups: list[str], ranges: dict[str, int]) -> None:
    before = require_host("group", host_group)
    username, other = new_name(), new_name("hg")
    system_users.append(username)
    system_groups.append(other)
    for path in ("/api/v1/users", "/users/"):
        response = server.admin.post(path, json={"username": username, "groups": [other, host_group]})
        assert_refused(response, 403, host_group, "host group")
    assert_no_trace(server, users=[username], groups=[other])  # the group named before it was not made either
    assert getent("group", host_group) == before
    assert_creation_still_works(server, system_users, system_groups, ranges)


@pytest.mark.parametrize("host_group", ["disk", "sudo"])
def test_membership_routes_cannot_put_a_user_in_a_host_group(server: Any, user: str, host_group: str) -> None:
    before = require_host("group", host_group)
    assert_refused(server.admin.put(f"/api/v1/groups/{host_group}/members/{user}"), 404, host_group)
    assert_refused(server.admin.post("/api/v1/groups", json={"name": host_group}), 403, host_group)
    assert_refused(server.admin.put(f"/api/v1/groups/{host_group}/members/{user}"), 404, host_group)
    assert host_group not in id_groups(user)
    assert getent("group", host_group) == before


# --- host accounts and UIDs ----------------------------------------------------------------------
@pytest.mark.parametrize("name", HOST_ACCOUNTS)
def test_a_user_named_after_a_host_account_is_refused(server: Any, name: str, system_users: list[str],
                                                      system_groups: list[str], ranges: dict[str, int]) -> None:
    account, group = require_host("passwd", name), getent("group", name)
    members = id_groups(name)
    count = server.admin.get("/users/count").json()["count"]
    for path in ("/api/v1/users", "/users/"):
        assert_refused(server.admin.post(path, json={"username": name}), 409, name, "account on this host")
    uid = pwd.getpwnam(name).pw_uid
    if uid >= 1000:
        assert_refused(server.admin.post("/api/v1/users", json={"username": name, "uid": uid}), 409, name)
    assert server.admin.get("/users/count").json()["count"] == count
    assert (getent("passwd", name), getent("group", name), id_groups(name)) == (account, group, members)
    assert_creation_still_works(server, system_users, system_groups, ranges)


@pytest.mark.parametrize("name", ["sudo", "disk"])
def test_a_user_named_after_a_host_group_is_refused(server: Any, name: str, system_users: list[str],
                                                    system_groups: list[str], ranges: dict[str, int]) -> None:
    before = require_host("group", name)
    assert_refused(server.admin.post("/api/v1/users", json={"username": name}), 409, name, "group")
    assert getent("passwd", name) == ""
    assert getent("group", name) == before
    assert_creation_still_works(server, system_users, system_groups, ranges)


@pytest.mark.parametrize("where", ["below", "above", "nobody", "gid_range"])
def test_a_uid_outside_the_range_is_refused(server: Any, where: str, ranges: dict[str, int],
                                            system_users: list[str], system_groups: list[str]) -> None:
    uid = {"below": ranges["uid_min"] - 1, "above": ranges["uid_max"] + 1, "nobody": 65534,
           "gid_range": ranges["gid_min"]}[where]
    username = new_name()
    system_users.append(username)
    for path in ("/api/v1/users", "/users/"):
        response = server.admin.post(path, json={"username": username, "uid": uid})
        assert_refused(response, 422, f"UID {uid}", f"{ranges['uid_min']}-{ranges['uid_max']}")
    assert_no_trace(server, users=[username])
    assert_creation_still_works(server, system_users, system_groups, ranges)


# --- private groups ------------------------------------------------------------------------------
def test_a_users_private_group_takes_no_other_members(server: Any, system_users: list[str],
                                                      system_groups: list[str], ranges: dict[str, int]) -> None:
    alice, bob, carol = new_name("al"), new_name("bo"), new_name("ca")
    system_users.extend([alice, bob, carol])
    server.create_user(username=alice)
    server.create_user(username=bob)
    private = getent("group", alice)
    assert private.endswith(":")  # alice's private group, no members

    assert_refused(server.admin.post("/api/v1/users", json={"username": carol, "groups": [alice]}), 403,
                   alice, "private group")
    assert_no_trace(server, users=[carol])
    assert_refused(server.admin.post("/api/v1/groups", json={"name": alice}), 403, alice, "private group")
    assert_refused(server.admin.put(f"/api/v1/groups/{alice}/members/{bob}"), 404, alice)
    assert alice not in id_groups(bob)
    assert getent("group", alice) == private
    assert alice not in {group["name"] for group in server.admin.get("/api/v1/groups").json()}
    assert_creation_still_works(server, system_users, system_groups, ranges)


def test_a_host_accounts_private_group_cannot_be_named(server: Any, user: str, system_users: list[str]) -> None:
    before = require_host("group", "www-data")
    assert_refused(server.admin.post("/api/v1/groups", json={"name": "www-data"}), 403, "private group")
    username = new_name()
    system_users.append(username)
    response = server.admin.post("/api/v1/users", json={"username": username, "groups": ["www-data"]})
    assert_refused(response, 403, "www-data")
    assert_no_trace(server, users=[username])
    assert getent("group", "www-data") == before
    assert "www-data" not in id_groups(user)
