"""Windows identity: SID <-> UID/GID by Samba's idmap_rid rule, both directions through the API, and an
smb.conf section that Debian's testparm accepts."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from beamhub.config import Settings
from beamhub.errors import Invalid
from beamhub.identity.windows.service import id_for_sid, sid_for_gid, sid_for_uid, smb_config

DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
LOW, HIGH = 10_000, 999_999
BEAMHUB = Path(sys.executable).parent / "beamhub"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"windows_domain_sid": DOMAIN_SID, "idmap_range_low": 20000, "idmap_range_high": 39999,
                              "uid_min": 20000, "uid_max": 29999, "gid_min": 30000, "gid_max": 39999}
    return Settings(**{**values, **overrides})


@pytest.mark.parametrize("base_rid", [0, 1000])
def test_every_id_in_the_range_round_trips(base_rid: int) -> None:
    config = settings(idmap_base_rid=base_rid)
    for number in range(config.idmap_range_low, config.idmap_range_high + 1):
        for sid in (sid_for_uid(config, number), sid_for_gid(config, number)):
            assert id_for_sid(config, sid) == number


def test_the_sid_follows_samba_idmap_rid_rule() -> None:
    # idmap_rid: id = RID - base_rid + range low, so RID = id - low + base_rid
    assert sid_for_uid(settings(), 20000) == f"{DOMAIN_SID}-0"
    assert sid_for_uid(settings(), 21234) == f"{DOMAIN_SID}-1234"
    assert sid_for_gid(settings(idmap_base_rid=500), 30000) == f"{DOMAIN_SID}-10500"
    assert id_for_sid(settings(idmap_base_rid=500), f"{DOMAIN_SID}-500") == 20000


@pytest.mark.parametrize("number", [0, 1000, 19999, 40000, 10**9])
def test_an_id_outside_the_range_is_refused(number: int) -> None:
    with pytest.raises(Invalid, match=f"UID {number} is outside the Windows idmap range 20000-39999"):
        sid_for_uid(settings(), number)
    with pytest.raises(Invalid, match=f"GID {number} is outside"):
        sid_for_gid(settings(), number)


@pytest.mark.parametrize("sid, message", [
    ("S-1-5-21-1-2-3-1000", "not in the configured domain"),
    (f"{DOMAIN_SID}-20000", "maps outside the idmap range"),
    (f"{DOMAIN_SID}", "not in the configured domain"),
    ("S-1-5-32-544", "not in the configured domain"),
    ("nonsense", "is not a SID"),
])
def test_a_sid_outside_the_domain_or_range_is_refused(sid: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        id_for_sid(settings(), sid)


def test_a_rid_below_base_rid_is_refused() -> None:
    with pytest.raises(Invalid, match="maps outside"):
        id_for_sid(settings(idmap_base_rid=1000), f"{DOMAIN_SID}-999")


def test_without_a_domain_sid_the_mapping_says_how_to_configure_it() -> None:
    with pytest.raises(Invalid, match="windows_domain_sid"):
        sid_for_uid(Settings(), 20000)


def test_settings_refuse_ranges_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        settings(idmap_default_low=39000, idmap_default_high=45000)
    with pytest.raises(ValueError, match="must lie inside"):
        settings(uid_max=45000)
    with pytest.raises(ValueError, match="windows_domain_sid"):
        settings(windows_domain_sid="S-1-x")


def test_smb_config_has_the_idmap_rid_section() -> None:
    text = smb_config(settings(windows_domain="BEAM", idmap_base_rid=7))
    for line in ("[global]", "workgroup = BEAM", "idmap config * : backend = tdb", "idmap config * : range = 3000-7999",
                 "idmap config BEAM : backend = rid", "idmap config BEAM : range = 20000-39999",
                 "idmap config BEAM : base_rid = 7"):
        assert line in text


def test_testparm_accepts_the_smb_config_output(tmp_path: Path) -> None:
    testparm = shutil.which("testparm")
    if testparm is None:
        pytest.skip("testparm not found: install Debian's samba-common-bin (scripts/install.sh)")
    env = {**os.environ, "BEAMHUB_WINDOWS_DOMAIN_SID": DOMAIN_SID, "BEAMHUB_WINDOWS_DOMAIN": "HEPS",
           "BEAMHUB_IDMAP_RANGE_LOW": "20000", "BEAMHUB_IDMAP_RANGE_HIGH": "39999", "BEAMHUB_IDMAP_BASE_RID": "0"}
    result = subprocess.run([str(BEAMHUB), "identity", "smb-config"], env=env, capture_output=True,
                            text=True, check=True)
    conf = tmp_path / "smb.conf"
    conf.write_text(result.stdout)
    checked = subprocess.run([testparm, "-s", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    dump = checked.stdout.lower()
    for line in ("workgroup = heps", "idmap config heps : backend = rid", "idmap config heps : range = 20000-39999",
                 "idmap config heps : base_rid = 0", "idmap config * : backend = tdb"):
        assert line in dump, checked.stdout
    assert "error" not in checked.stderr.lower(), checked.stderr


# --- through the API ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Any:
    """A server whose idmap range covers its UID range (uid_range_env) and GID range."""
    low = int(uid_range_env["BEAMHUB_UID_MIN"]) + 500  # GIDs apart from other tests' (default 30000-39999)
    gids = {"BEAMHUB_UID_MAX": str(low - 1), "BEAMHUB_GID_MIN": str(low), "BEAMHUB_GID_MAX": str(low + 499)}
    return module_beamhub_factory(env={**uid_range_env, **gids, "BEAMHUB_WINDOWS_DOMAIN_SID": DOMAIN_SID,
                                       "BEAMHUB_IDMAP_RANGE_LOW": str(LOW), "BEAMHUB_IDMAP_RANGE_HIGH": str(HIGH)})


def new_name(prefix: str = "wu") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture
def group(server: Any) -> Any:
    """A beamhub group (and system group), removed at the end."""
    name = new_name("wg")
    response = server.admin.post("/api/v1/groups", json={"name": name})
    assert response.status_code == 201, response.text
    yield response.json()
    subprocess.run(["groupdel", name], capture_output=True)


def rid_sid(number: int) -> str:
    return f"{DOMAIN_SID}-{number - LOW}"


def test_a_user_sees_their_sids_and_an_admin_maps_them_back(server: Any, group: Any,
                                                           system_users: list[str]) -> None:
    username = new_name()
    system_users.append(username)
    _, token = server.create_user(username=username, groups=[group["name"]])
    response = server.client(token).get(f"/api/v1/users/{username}/windows")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_sid"] == rid_sid(body["uid"])
    assert body["group_sid"] == rid_sid(body["gid"])
    assert {"name": group["name"], "gid": group["gid"], "sid": rid_sid(group["gid"])} in body["groups"]

    owner = server.admin.get(f"/api/v1/windows/sid/{body['user_sid']}").json()
    assert owner == {"kind": "user", "id": body["uid"], "name": username}
    owner = server.admin.get(f"/api/v1/windows/sid/{rid_sid(group['gid'])}").json()
    assert owner == {"kind": "group", "id": group["gid"], "name": group["name"]}


def test_the_mapping_round_trips_for_every_user(server: Any, group: Any, system_users: list[str]) -> None:
    for _ in range(3):
        username = new_name()
        system_users.append(username)
        server.create_user(username=username, groups=[group["name"]])
    for user in server.admin.get("/api/v1/users").json():
        sids = server.admin.get(f"/api/v1/users/{user['username']}/windows")
        assert sids.status_code == 200, sids.text
        owner = server.admin.get(f"/api/v1/windows/sid/{sids.json()['user_sid']}").json()
        assert (owner["kind"], owner["id"], owner["name"]) == ("user", user["uid"], user["username"])
        for entry in sids.json()["groups"]:
            owner = server.admin.get(f"/api/v1/windows/sid/{entry['sid']}").json()
            assert (owner["kind"], owner["id"], owner["name"]) == ("group", entry["gid"], entry["name"])


def test_only_oneself_or_an_admin_reads_sids(server: Any, system_users: list[str]) -> None:
    alice, bob = new_name(), new_name()
    system_users.extend([alice, bob])
    _, alice_token = server.create_user(username=alice)
    server.create_user(username=bob)
    assert server.client(alice_token).get(f"/api/v1/users/{bob}/windows").status_code == 403
    assert server.admin.get(f"/api/v1/users/{bob}/windows").status_code == 200
    assert server.client(alice_token).get(f"/api/v1/windows/sid/{DOMAIN_SID}-1").status_code == 403
    assert server.client().get(f"/api/v1/users/{bob}/windows").status_code == 401


def test_a_uid_outside_the_idmap_range_cannot_be_created(server: Any, system_users: list[str]) -> None:
    username = new_name()
    system_users.append(username)
    uid = HIGH + 1 + secrets.randbelow(100_000)
    response = server.admin.post("/api/v1/users", json={"username": username, "uid": uid})
    assert response.status_code == 422, response.text
    assert f"UID {uid} is outside beamhub's UID range" in response.json()["detail"]
    assert server.admin.get(f"/api/v1/users/{username}/windows").status_code == 404


def test_sids_that_map_to_nobody_or_elsewhere_are_refused(server: Any) -> None:
    foreign = server.admin.get("/api/v1/windows/sid/S-1-5-21-1-2-3-500")
    assert foreign.status_code == 422
    assert "not in the configured domain" in foreign.json()["detail"]
    beyond = server.admin.get(f"/api/v1/windows/sid/{DOMAIN_SID}-{HIGH}")
    assert beyond.status_code == 422
    assert "outside the idmap range" in beyond.json()["detail"]
    unused = server.admin.get(f"/api/v1/windows/sid/{DOMAIN_SID}-{5000 - 1}")  # id 14999: below every range
    assert unused.status_code == 404
