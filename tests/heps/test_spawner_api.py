"""The HEPS spawner API of the seed, field for field: /userpod/, /refreshuserspod/, /uniqueipinfo/,
on a real server running real JupyterLab processes under the users' UIDs."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.accounts import UserMaker
from helpers.http import assert_error
from helpers.processes import cmdline, processes_in_group, uids_of
from helpers.waiting import wait_for

IMAGE = Path("/opt/beamhub/images/default")
SEED_IMAGE = "dockerhub.ihep.ac.cn/opendata/cumopy:db61750"
SEED_SSH_KEY = ("ssh-rsa "
                "AAAAB3NzaC1yc2EAAAADAQABAAABAQDmSmZzyoHCKl2obX+bcSZ84uc7XD55RgbT+68GvoHMrWG8BFgWNn+bsL1d0PjaxTJt"
                "7tUc05P+Erly0NiIh8VctoZvSfucnxQkNO+dO3u2v9yqUZC8geNif0CRmA+biVf8eiIMmpQLk5EIfNaJgrMFoG+4VV+/PATi"
                "EaQd7SsfywpvTTHw881E3ZAXzzMGkUQ9rh+jY9PeeFDPgCgwPc18YWvc4RaZm6FWJY21dwTKQn9XmClsWFtLQ6jWopECHHEI"
                "pjykWkda8bnLwWgxrcri7Tn1jAS/WD0506mspb3YYSprO9T9ejK5veHOONMFiFfq7zjfuyIa28Y44YNDTFl5"
                " seed@heps")
"""A whole RSA key in the seed's place: its example key is cut short, and a bad sshpubkeys is refused (422)."""
SMALL = {"ncores": 0.5, "memory": "1G", "extra_resource": {}}
SLEEPER = {"single_cmd": "sleep", "single_cmd_args": "600"}
"""A command pod: running at once, for tests where JupyterLab itself is not the point."""



def seed_payload(username: str, **changes: object) -> dict[str, object]:
    """The seed's example request, as written, for a real user and a documentation IP."""
    payload: dict[str, object] = {
        "username": username,
        "sourceip": "192.0.2.10",
        "description": "HEPSCT_jupyter_B7",
        "podname": "default",
        "userimage": SEED_IMAGE,
        "ncores": 48,
        "memory": "200G",
        "sshpubkeys": SEED_SSH_KEY,
        "extra_resource": {"nvidia.com/gpu": 1},
        "single_cmd": "start.sh",
        "single_cmd_args": "jupyterhub-singleuser; --ip=0.0.0.0; --port=8888",
        "scriptenv": "",
        "expireruntime": 86400,
    }
    return {**payload, **changes}


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


# --- processes ---------------------------------------------------------------------------------


def group_of(server: Any, session_id: str) -> int:
    """The process group the local backend started the session in."""
    handle = json.loads((server.state_dir / "local" / f"{session_id}.json").read_text())
    return int(handle["pid"])


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, module_database_url: str, uid_range_env: dict[str, str]) -> Any:
    """One server per database for the module, with the seed's image name configured."""
    if not (IMAGE / "bin" / "jupyter-lab").exists():
        pytest.skip(f"no JupyterLab image at {IMAGE}: run scripts/install.sh")
    images = {"default": str(IMAGE), SEED_IMAGE: str(IMAGE)}
    return module_beamhub_factory(env={"BEAMHUB_IMAGES": json.dumps(images),
                                       "BEAMHUB_DATABASE_URL": module_database_url, **uid_range_env})


@pytest.fixture(autouse=True)
def no_sessions_left(server: Any, system_users: list[str]) -> Iterator[None]:
    """Each test starts on an idle node and leaves it idle (the node has few cores), before its
    system users are removed (userdel refuses a user who still runs processes)."""
    server.stop_all_sessions()
    yield
    server.stop_all_sessions()


@pytest.fixture
def user(make_user: UserMaker) -> str:
    return make_user()[0]


def start_pod(server: Any, username: str, **changes: object) -> dict[str, Any]:
    """Create a pod with the admin token and wait until it runs."""
    pod = created(server.admin.post("/userpod/", json=seed_payload(username, **{**SMALL, **changes})))
    server.wait_for_state(pod["sessionid"], {"running"})
    return pod


def session(server: Any, session_id: str) -> dict[str, Any]:
    return server.admin.get(f"/api/v1/sessions/{session_id}").json()


# --- creating pods -----------------------------------------------------------------------------


def test_the_seed_payload_is_refused_for_more_cores_than_the_node_has_and_keeps_no_key(server: Any, user: str) -> None:
    detail = assert_error(server.admin.post("/userpod/", json=seed_payload(user)), 409, "48 cores")
    assert f"only {os.cpu_count()}" in detail
    assert server.admin.get(f"/api/v1/users/{user}/keys").json() == []  # its sshpubkeys came to nothing


def test_a_gpu_request_is_refused_on_a_node_without_gpus(server: Any, user: str) -> None:
    response = server.admin.post("/userpod/", json=seed_payload(user, ncores=1, memory="1G"))
    assert_error(response, 409, "GPU", "this node has no GPUs")


def test_the_seed_payload_within_the_node_runs_jupyterlab_as_the_user(server: Any, user: str) -> None:
    pod = created(server.admin.post("/userpod/", json=seed_payload(user, ncores=1, memory="1G", extra_resource={})))
    assert (pod["username"], pod["podname"], pod["userimage"]) == (user, "default", SEED_IMAGE)
    assert (pod["ncores"], pod["memory"], pod["extra_resource"]) == (1, "1G", {})
    assert (pod["sourceip"], pod["description"], pod["expireruntime"]) == ("192.0.2.10", "HEPSCT_jupyter_B7", 86400)
    running = server.wait_for_state(pod["sessionid"], {"running"})
    assert running["kind"] == "jupyter"
    pids = processes_in_group(group_of(server, pod["sessionid"]))
    assert any("jupyter-lab" in cmdline(pid) for pid in pids)
    assert all(uids_of(pid) == {pwd.getpwnam(user).pw_uid} for pid in pids)


def test_a_running_pod_is_listed_for_its_user(server: Any, make_user: UserMaker) -> None:
    username, token = make_user()
    pod = start_pod(server, username, **SLEEPER)
    listed = server.admin.get(f"/userpod/{username}").json()
    assert [(p["sessionid"], p["status"]) for p in listed] == [(pod["sessionid"], "running")]
    assert listed[0]["runningtime"] >= 0
    assert [p["sessionid"] for p in server.client(token).get(f"/userpod/{username}").json()] == [pod["sessionid"]]


def test_patch_moves_the_expiry_counted_from_creation(server: Any, user: str) -> None:
    pod = start_pod(server, user, **SLEEPER)
    response = server.admin.patch("/userpod/", json={"username": user, "podname": "default",
                                                     "expireruntime": 2 * 86400})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["expireruntime"] == 2 * 86400
    created_at = datetime.fromisoformat(changed["createtime"])
    assert datetime.fromisoformat(changed["expiretime"]) == created_at + timedelta(days=2)
    assert datetime.fromisoformat(session(server, pod["sessionid"])["expires_at"]) == created_at + timedelta(days=2)


def test_patch_refuses_an_expiry_already_past_and_unknown_pods(server: Any, user: str) -> None:
    pod = start_pod(server, user, **SLEEPER)
    # the server's clock, not ours: wait (in real time) only until one second after creation has passed
    time.sleep(max(0.0, (datetime.fromisoformat(pod["createtime"]) + timedelta(seconds=1.05)
                         - datetime.now(UTC)).total_seconds()))
    assert_error(server.admin.patch("/userpod/", json={"username": user, "expireruntime": 1}), 422, "past")
    assert_error(server.admin.patch("/userpod/", json={"username": user, "podname": "other",
                                                       "expireruntime": 100}), 404, "other")


def test_delete_stops_the_pod_and_its_processes(server: Any, user: str) -> None:
    pod = start_pod(server, user)
    pgid = group_of(server, pod["sessionid"])
    assert processes_in_group(pgid)
    response = server.admin.delete("/userpod/", params={"username": user, "podname": "default"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stopped"
    assert processes_in_group(pgid) == []
    assert server.admin.get(f"/userpod/{user}").json() == []
    assert_error(server.admin.delete("/userpod/", params={"username": user, "podname": "default"}), 404)


def test_a_user_starts_and_stops_its_own_pod_but_not_anothers(server: Any, make_user: UserMaker) -> None:
    username, token = make_user()
    other, _ = make_user()
    client = server.client(token)
    pod = created(client.post("/userpod/", json=seed_payload(username, **SMALL)))
    assert_error(client.post("/userpod/", json=seed_payload(other, **SMALL)), 403)
    assert_error(client.get(f"/userpod/{other}"), 403)
    assert client.delete("/userpod/", params={"username": username}).json()["status"] == "stopped"
    assert session(server, pod["sessionid"])["state"] == "stopped"


def test_a_non_jupyter_single_cmd_runs_as_a_command_session(server: Any, user: str) -> None:
    pod = start_pod(server, user, podname="sleeper", **SLEEPER)
    assert session(server, pod["sessionid"])["kind"] == "command"
    pids = processes_in_group(group_of(server, pod["sessionid"]))
    sleepers = [pid for pid in pids if cmdline(pid).startswith("sleep 600")]
    assert len(sleepers) == 1
    assert uids_of(sleepers[0]) == {pwd.getpwnam(user).pw_uid}


def test_scriptenv_reaches_the_command(server: Any, user: str) -> None:
    pod = start_pod(server, user, scriptenv="BEAM=B7; EXPERIMENT=ct 1", **SLEEPER)
    sleeper = next(pid for pid in processes_in_group(group_of(server, pod["sessionid"]))
                   if cmdline(pid).startswith("sleep"))
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{sleeper}/environ").read_text().split("\0") if item)
    assert (environ["BEAM"], environ["EXPERIMENT"]) == ("B7", "ct 1")


@pytest.mark.parametrize(("changes", "fragments"), [
    ({"userimage": "dockerhub.ihep.ac.cn/opendata/unknown:1"}, ("unknown image",)),
    ({"extra_resource": {"amd.com/gpu": 1}}, ("extra_resource", "amd.com/gpu")),
    ({"extra_resource": {"nvidia.com/gpu": -1}}, ("negative",)),
    ({"memory": "lots"}, ("memory", "not a size")),
    ({"memory": "1Mi"}, ("at least 64Mi",)),
    ({"scriptenv": "not an assignment"}, ("scriptenv", "NAME=VALUE")),
    ({"scriptenv": "1BAD=x"}, ("scriptenv",)),
    ({"ncores": 0}, ("ncores",)),
    ({"expireruntime": 0}, ("expireruntime",)),
    ({"expireruntime": 365 * 86400}, ("exceeds the maximum",)),
    ({"sourceip": "beamline-7"}, ("sourceip", "not an IP")),
    ({"podname": "Not_A_Name"}, ("podname",)),
    ({"unknown_field": 1}, ("unknown_field",)),
])
def test_invalid_pod_requests_are_422_with_a_detail(server: Any, user: str, changes: dict[str, object],
                                                    fragments: tuple[str, ...]) -> None:
    assert_error(server.admin.post("/userpod/", json=seed_payload(user, **{**SMALL, **changes})), 422, *fragments)


def test_a_pod_for_an_unknown_user_is_404(server: Any) -> None:
    assert_error(server.admin.post("/userpod/", json=seed_payload("nosuchuser", **SMALL)), 404, "nosuchuser")


def test_pod_routes_need_credentials(server: Any, user: str) -> None:
    anonymous = server.client()
    assert_error(anonymous.post("/userpod/", json=seed_payload(user, **SMALL)), 401)
    assert_error(anonymous.get(f"/userpod/{user}"), 401)
    assert_error(anonymous.delete("/userpod/", params={"username": user}), 401)
    assert_error(anonymous.patch("/userpod/", json={"username": user, "expireruntime": 10}), 401)
    assert_error(anonymous.get("/refreshuserspod/"), 401)


def test_malformed_requests_are_422_json_not_500(server: Any, user: str) -> None:
    broken = server.admin.post("/userpod/", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(broken, 422)
    assert_error(server.admin.delete("/userpod/"), 422, "username")
    assert_error(server.admin.patch("/userpod/", json={"username": user, "expireruntime": "soon"}), 422,
                 "expireruntime")
    assert_error(server.admin.post("/userpod/", json=seed_payload(user, ncores="many")), 422, "ncores")
    assert_error(server.admin.post("/userpod/", json=[]), 422)


# --- beamline workstations ----------------------------------------------------------------------


def workstation_ip() -> str:
    return f"198.51.100.{secrets.randbelow(250) + 1}"


def test_admin_registers_lists_and_updates_a_workstation(server: Any, make_user: UserMaker) -> None:
    ip = workstation_ip()
    registered = created(server.admin.post("/uniqueipinfo/", json={"sourceip": ip, "beamline": "B7",
                                                                    "description": "B7 operation room"}))
    assert registered == {"sourceip": ip, "beamline": "b7", "description": "B7 operation room", "sessionid": None}
    _, token = make_user()
    assert ip in [w["sourceip"] for w in server.client(token).get("/uniqueipinfo/").json()]
    response = server.admin.put("/uniqueipinfo/", json={"sourceip": ip, "description": "moved"})
    assert response.status_code == 200, response.text
    assert (response.json()["beamline"], response.json()["description"]) == ("b7", "moved")
    assert_error(server.admin.post("/uniqueipinfo/", json={"sourceip": ip}), 409, ip)


def test_workstation_changes_need_an_admin_and_a_valid_ip(server: Any, make_user: UserMaker) -> None:
    _, token = make_user()
    user = server.client(token)
    assert_error(user.post("/uniqueipinfo/", json={"sourceip": workstation_ip()}), 403)
    assert_error(user.put("/uniqueipinfo/", json={"sourceip": workstation_ip()}), 403)
    assert_error(server.client().get("/uniqueipinfo/"), 401)
    assert_error(server.admin.post("/uniqueipinfo/", json={"sourceip": "b7-pc"}), 422, "not an IP")
    assert_error(server.admin.post("/uniqueipinfo/", json={"sourceip": ""}), 422, "sourceip")
    assert_error(server.admin.put("/uniqueipinfo/", json={"sourceip": "203.0.113.250"}), 404, "203.0.113.250")


def test_a_new_session_from_a_workstation_releases_its_previous_one(server: Any, make_user: UserMaker) -> None:
    ip = workstation_ip()
    created(server.admin.post("/uniqueipinfo/", json={"sourceip": ip, "beamline": "B7"}))
    first = start_pod(server, make_user()[0], sourceip=ip, **SLEEPER)
    second = start_pod(server, make_user()[0], sourceip=ip)
    released = session(server, first["sessionid"])
    assert released["state"] == "stopped"
    assert f"workstation {ip}" in (released["reason"] or ""), released
    assert session(server, second["sessionid"])["state"] == "running"
    held = {w["sourceip"]: w["sessionid"] for w in server.admin.get("/uniqueipinfo/").json()}
    assert held[ip] == second["sessionid"]
    _, token = make_user()
    seen_by_user = {w["sourceip"]: w["sessionid"] for w in server.client(token).get("/uniqueipinfo/").json()}
    assert seen_by_user[ip] is None


def test_sessions_from_an_unregistered_ip_are_independent(server: Any, user: str) -> None:
    ip = "203.0.113.7"
    first = start_pod(server, user, sourceip=ip, podname="one", **SLEEPER)
    second = start_pod(server, user, sourceip=ip, podname="two", **SLEEPER)
    assert {session(server, p["sessionid"])["state"] for p in (first, second)} == {"running"}


# --- refresh -----------------------------------------------------------------------------------


def test_refresh_lists_running_pods_and_fails_one_whose_processes_died(server: Any, user: str) -> None:
    pod = start_pod(server, user)
    listed = server.admin.get("/refreshuserspod/").json()
    assert [(p["sessionid"], p["status"]) for p in listed] == [(pod["sessionid"], "running")]
    pgid = group_of(server, pod["sessionid"])
    os.killpg(pgid, signal.SIGKILL)
    wait_for(lambda: not processes_in_group(pgid), 20, "the pod's processes to end")
    response = server.admin.get("/refreshuserspod/")
    assert response.status_code == 200, response.text
    assert response.json() == []
    failed = session(server, pod["sessionid"])
    assert failed["state"] == "failed"
    assert "SIGKILL" in failed["reason"] or "gone" in failed["reason"]


def test_refresh_is_for_admins(server: Any, make_user: UserMaker) -> None:
    _, token = make_user()
    assert_error(server.client(token).get("/refreshuserspod/"), 403)
