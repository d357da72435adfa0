"""Identity sources. `db`: `beamhub identity sync` repairs system accounts and groups broken behind beamhub's
back until `getent passwd/group` and `id USER` agree with the database. `nss`: existing accounts are taken
as they are, nothing is created."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BEAMHUB = Path(sys.executable).parent / "beamhub"


def new_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def identity_sync(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """`beamhub identity sync` on the server's state (its BEAMHUB_* environment)."""
    env = {**server.env, "COLUMNS": "200"}
    return subprocess.run([str(BEAMHUB), "identity", "sync", *args], env=env, capture_output=True, text=True)


# --- db source ---------------------------------------------------------------------------------
@pytest.fixture
def server(beamhub_factory: Any, uid_range_env: dict[str, str]) -> Any:
    """A server of its own per test, so that its database holds only the accounts this test made."""
    return beamhub_factory(env={**uid_range_env, **gid_range(uid_range_env)})


def gid_range(uid_range_env: dict[str, str]) -> dict[str, str]:
    """GIDs from the top half of the test's UID block: a GID freed by groupdel is not taken by other tests."""
    low = int(uid_range_env["BEAMHUB_UID_MIN"]) + 500
    return {"BEAMHUB_UID_MAX": str(low - 1), "BEAMHUB_GID_MIN": str(low),
            "BEAMHUB_GID_MAX": uid_range_env["BEAMHUB_UID_MAX"]}


@pytest.fixture
def team(server: Any, system_users: list[str], system_groups: list[str]) -> dict[str, Any]:
    """Two beamhub groups and two users, each in both groups, made through the API."""
    groups = [new_name("sg") for _ in range(2)]
    users = [new_name("su") for _ in range(2)]
    system_groups.extend(groups)
    system_users.extend(users)
    for name in groups:
        assert server.admin.post("/api/v1/groups", json={"name": name}).status_code == 201
    for name in users:
        server.create_user(username=name, groups=groups)
    return {"groups": groups, "users": users}


def assert_system_matches_database(server: Any) -> None:
    """getent passwd/group give every beamhub user and group exactly as the database has them."""
    users = server.admin.get("/api/v1/users").json()
    names = {u["username"] for u in users}
    for user in users:
        fields = run("getent", "passwd", user["username"]).strip().split(":")
        assert (int(fields[2]), int(fields[3])) == (user["uid"], user["gid"]), fields
        assert Path(fields[5]).is_dir()
    for group in server.admin.get("/api/v1/groups").json():
        fields = run("getent", "group", group["name"]).strip().split(":")
        assert int(fields[2]) == group["gid"], fields
        members = {m for m in fields[3].split(",") if m} & names
        assert members == set(group["members"]), (fields, group)


def id_groups(username: str) -> set[str]:
    return set(run("id", "-Gn", username).split())


def test_sync_with_nothing_broken_reports_no_drift(server: Any, team: dict[str, Any]) -> None:
    result = identity_sync(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no drift" in result.stdout
    assert_system_matches_database(server)


def test_sync_restores_a_membership_removed_with_gpasswd(server: Any, team: dict[str, Any]) -> None:
    user, group = team["users"][0], team["groups"][0]
    run("gpasswd", "-d", user, group)
    assert group not in id_groups(user)

    report = identity_sync(server, "--dry-run")
    assert report.returncode == 0, report.stdout + report.stderr
    assert f"{group}:{user}" in report.stdout and "would repair" in report.stdout
    assert group not in id_groups(user)  # a dry run changes nothing

    result = identity_sync(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repaired" in result.stdout
    assert group in id_groups(user)
    assert_system_matches_database(server)
    assert "no drift" in identity_sync(server).stdout  # idempotent


def test_sync_removes_a_membership_added_behind_beamhubs_back(server: Any, team: dict[str, Any],
                                                              system_groups: list[str]) -> None:
    user = team["users"][0]
    other = new_name("sg")
    system_groups.append(other)
    assert server.admin.post("/api/v1/groups", json={"name": other}).status_code == 201
    run("gpasswd", "-a", user, other)
    assert other in id_groups(user)
    result = identity_sync(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert other not in id_groups(user)
    assert_system_matches_database(server)


def test_sync_recreates_a_deleted_group_with_its_gid_and_members(server: Any, team: dict[str, Any]) -> None:
    group = team["groups"][1]
    gid = grp.getgrnam(group).gr_gid
    run("groupdel", group)
    assert all(group not in id_groups(user) for user in team["users"])

    result = identity_sync(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert grp.getgrnam(group).gr_gid == gid
    assert all(group in id_groups(user) for user in team["users"])
    assert_system_matches_database(server)


def test_sync_recreates_a_deleted_account(server: Any, team: dict[str, Any]) -> None:
    user = team["users"][1]
    before = pwd.getpwnam(user)
    run("userdel", user)
    subprocess.run(["groupdel", user], capture_output=True)  # userdel may have left the private group

    result = identity_sync(server)
    assert result.returncode == 0, result.stdout + result.stderr
    after = pwd.getpwnam(user)
    assert (after.pw_uid, after.pw_gid, after.pw_dir) == (before.pw_uid, before.pw_gid, before.pw_dir)
    assert set(team["groups"]) <= id_groups(user)
    assert_system_matches_database(server)


def test_a_group_change_through_the_api_shows_in_id(server: Any, team: dict[str, Any]) -> None:
    user, group = team["users"][0], team["groups"][0]
    assert server.admin.delete(f"/api/v1/groups/{group}/members/{user}").status_code == 200
    assert group not in id_groups(user)
    assert server.admin.put(f"/api/v1/groups/{group}/members/{user}").status_code == 200
    assert group in id_groups(user)
    assert "no drift" in identity_sync(server).stdout


def free_uid(start: int) -> int:
    """The first UID from start that no account on this machine has."""
    candidate = start
    while True:
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            return candidate
        candidate += 1


def test_a_uid_mismatch_is_reported_as_unrepairable(server: Any, team: dict[str, Any]) -> None:
    user = team["users"][0]
    uid = pwd.getpwnam(user).pw_uid
    other = free_uid(uid + 500_000)
    run("usermod", "-u", str(other), user)
    try:
        result = identity_sync(server)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "unrepairable" in result.stdout
        assert f"UID {other}" in result.stdout
        assert pwd.getpwnam(user).pw_uid == other  # sync does not decide which UID is right
    finally:
        run("usermod", "-u", str(uid), user)
    assert identity_sync(server).returncode == 0


def test_sync_refuses_the_nss_source(server: Any) -> None:
    result = subprocess.run([str(BEAMHUB), "identity", "sync"], capture_output=True, text=True,
                            env={**server.env, "BEAMHUB_IDENTITY_SOURCE": "nss"})
    assert result.returncode == 1
    assert "read-only" in result.stderr


# --- nss source --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nss_server(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Any:
    """An nss server whose UID range holds the accounts nss_account makes."""
    return module_beamhub_factory(env={"BEAMHUB_IDENTITY_SOURCE": "nss", **uid_range_env})


@pytest.fixture
def nss_account(uid_range_env: dict[str, str], system_users: list[str],
                system_groups: list[str]) -> dict[str, Any]:
    """An existing system account (as LDAP/SSSD would give it) in an existing group, without a home."""
    name, group = new_name("nu"), new_name("ng")
    system_users.append(name)
    system_groups.append(group)
    uid = int(uid_range_env["BEAMHUB_UID_MIN"]) + 400 + secrets.randbelow(100)
    run("groupadd", group)
    run("useradd", "-u", str(uid), "-U", "-M", "-d", f"/nonexistent/{name}", "-G", group, name)
    return {"name": name, "uid": uid, "gid": pwd.getpwnam(name).pw_gid, "group": group}


def test_nss_takes_an_existing_accounts_uid_gid_and_groups(nss_server: Any, nss_account: dict[str, Any]) -> None:
    before = run("getent", "passwd", nss_account["name"])
    response = nss_server.admin.post("/api/v1/users", json={"username": nss_account["name"]})
    assert response.status_code == 201, response.text
    user = response.json()
    assert (user["uid"], user["gid"]) == (nss_account["uid"], nss_account["gid"])
    assert user["groups"] == [nss_account["group"]]
    assert run("getent", "passwd", nss_account["name"]) == before  # read-only: nothing changed
    assert not Path(f"/home/{nss_account['name']}").exists()


def test_nss_refuses_a_name_that_does_not_exist(nss_server: Any) -> None:
    name = new_name("nx")
    response = nss_server.admin.post("/api/v1/users", json={"username": name})
    assert response.status_code == 422, response.text
    assert f"no account {name} exists" in response.json()["detail"]
    with pytest.raises(KeyError):
        pwd.getpwnam(name)  # never created


@pytest.mark.parametrize("name", ["root", "daemon", "nobody"])
def test_nss_refuses_a_host_account_outside_the_uid_range(nss_server: Any, name: str) -> None:
    before = run("getent", "passwd", name)
    count = nss_server.admin.get("/users/count").json()["count"]
    response = nss_server.admin.post("/api/v1/users", json={"username": name})
    assert response.status_code == 403, response.text
    assert f"{name} has UID {pwd.getpwnam(name).pw_uid} on this host, outside beamhub's UID range" in \
        response.json()["detail"]
    assert nss_server.admin.get("/users/count").json()["count"] == count
    assert run("getent", "passwd", name) == before


def test_nss_refuses_a_uid_or_group_that_disagrees(nss_server: Any, nss_account: dict[str, Any]) -> None:
    name = nss_account["name"]
    response = nss_server.admin.post("/api/v1/users", json={"username": name, "uid": nss_account["uid"] + 1})
    assert response.status_code == 422
    assert f"has UID {nss_account['uid']} there" in response.json()["detail"]
    response = nss_server.admin.post("/api/v1/users", json={"username": name, "groups": ["nosuchgroupx"]})
    assert response.status_code == 422
    assert "group membership comes from NSS" in response.json()["detail"]


def test_nss_group_membership_is_read_only(nss_server: Any, nss_account: dict[str, Any]) -> None:
    response = nss_server.admin.put(f"/api/v1/groups/{nss_account['group']}/members/{nss_account['name']}")
    assert response.status_code == 422, response.text
    assert "change them there" in response.json()["detail"]
    response = nss_server.admin.delete(f"/api/v1/groups/{nss_account['group']}/members/{nss_account['name']}")
    assert response.status_code == 422, response.text
    assert nss_account["name"] in grp.getgrnam(nss_account["group"]).gr_mem


def test_nss_sessions_get_the_groups_nss_has_now(tmp_path: Path, nss_account: dict[str, Any],
                                                 system_groups: list[str], uid_range_env: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates system users")
    from beamhub.config import Settings
    from beamhub.identity.principal import SYSTEM
    from beamhub.services import build_services

    services = build_services(Settings(state_dir=tmp_path / "state", identity_source="nss",
                                       uid_min=int(uid_range_env["BEAMHUB_UID_MIN"]),
                                       uid_max=int(uid_range_env["BEAMHUB_UID_MAX"])))
    try:
        user = services.identity.create_user(nss_account["name"], by=SYSTEM)
        later = new_name("ng")
        system_groups.append(later)
        run("groupadd", later)
        run("gpasswd", "-a", nss_account["name"], later)
        account = services.identity.account(user)
        assert (account.uid, account.gid) == (nss_account["uid"], nss_account["gid"])
        assert grp.getgrnam(later).gr_gid in account.groups
        assert grp.getgrnam(nss_account["group"]).gr_gid in account.groups
    finally:
        services.db.dispose()
