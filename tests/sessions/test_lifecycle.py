"""A session's life through /api/v1/sessions: events, extension, names, resources and placement, on a real
server running real processes (sleep, JupyterLab) as the user, in cgroups."""

from __future__ import annotations

import json
import pwd
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

SLEEP = {"kind": "command", "command": "sleep", "args": ["600"], "memory": "64Mi", "ncores": 0.1}


def sleep(**overrides: Any) -> dict[str, Any]:
    """A small command session running `sleep 600`, with some fields changed."""
    return {**SLEEP, **overrides}


TRANSITIONS = ["pending", "starting", "running", "stopping", "stopped"]


def read_events(server: Any, token: str, session_id: str, stop_when_running: bool = False,
                headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every server-sent event of a session until the stream ends; optionally stop it once it runs."""
    events: list[dict[str, Any]] = []
    with server.client(token) as client, client.stream(
            "GET", f"/api/v1/sessions/{session_id}/events", headers=headers or {},
            timeout=httpx.Timeout(30)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(json.loads(line.removeprefix("data: ")))
            if stop_when_running and events[-1]["state"] == "running" and events[-1]["kind"] == "transition":
                assert client.delete(f"/api/v1/sessions/{session_id}").status_code == 200
    return events


def transitions(events: list[dict[str, Any]]) -> list[str]:
    return [e["state"] for e in events if e["kind"] == "transition"]


# --- events ---------------------------------------------------------------------------------------------------


def test_events_stream_every_transition_until_the_session_ends(make_hub: Any, kit: Any, database_url: str) -> None:
    server = make_hub(BEAMHUB_DATABASE_URL=database_url)
    _, token = server.create_user()
    session = kit(server).start(token, **SLEEP)
    events = read_events(server, token, session["id"], stop_when_running=True)
    assert transitions(events) == TRANSITIONS
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert server.admin.get(f"/api/v1/sessions/{session['id']}").json()["state"] == "stopped"


def test_events_resume_after_the_last_event_id(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], **SLEEP)
    hub_sessions.stop(session["id"])
    everything = read_events(hub, owner[1], session["id"])
    resumed = read_events(hub, owner[1], session["id"], headers={"Last-Event-ID": str(everything[1]["id"])})
    assert resumed == everything[2:]


def test_events_of_another_users_session_are_forbidden(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], **SLEEP)
    _, stranger = hub.create_user()
    try:
        with hub.client(stranger) as client:
            assert client.get(f"/api/v1/sessions/{session['id']}/events").status_code == 403
    finally:
        hub_sessions.stop(session["id"])


# --- extending ------------------------------------------------------------------------------------------------


def test_patch_moves_the_expiry_by_a_runtime_from_now(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], **sleep(runtime=60))
    before = datetime.now(UTC)
    with hub.client(owner[1]) as client:
        response = client.patch(f"/api/v1/sessions/{session['id']}", json={"runtime": 7200})
    after = datetime.now(UTC)
    hub_sessions.stop(session["id"])
    assert response.status_code == 200, response.text
    expires_at = datetime.fromisoformat(response.json()["expires_at"])
    assert before + timedelta(seconds=7200) <= expires_at <= after + timedelta(seconds=7200)
    assert "extended" in [e["kind"] for e in read_events(hub, owner[1], session["id"])]


def test_patch_refuses_an_expiry_in_the_past(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], **SLEEP)
    try:
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        with hub.client(owner[1]) as client:
            refused = client.patch(f"/api/v1/sessions/{session['id']}", json={"expires_at": past})
            both = client.patch(f"/api/v1/sessions/{session['id']}", json={"expires_at": past, "runtime": 10})
            after = client.get(f"/api/v1/sessions/{session['id']}").json()
        assert refused.status_code == 422
        assert "past" in refused.json()["detail"]
        assert both.status_code == 422
        assert after["expires_at"] == session["expires_at"]
    finally:
        hub_sessions.stop(session["id"])


def test_a_stopped_session_cannot_be_extended(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], **SLEEP)
    hub_sessions.stop(session["id"])
    with hub.client(owner[1]) as client:
        assert client.patch(f"/api/v1/sessions/{session['id']}", json={"runtime": 60}).status_code == 409


# --- names ------------------------------------------------------------------------------------------------------


def test_a_user_runs_several_sessions_with_distinct_names(hub: Any, hub_sessions: Any) -> None:
    _, token = hub.create_user()
    named = [hub_sessions.running(token, **sleep(name=name)) for name in ("alpha", "beta")]
    unnamed = [hub_sessions.running(token, **SLEEP) for _ in range(2)]
    try:
        with hub.client(token) as client:
            listed = client.get("/api/v1/sessions", params={"active": True}).json()
        assert sorted(s["name"] for s in listed) == ["alpha", "beta", "command", "command-2"]
        assert {s["state"] for s in listed} == {"running"}
    finally:
        for session in named + unnamed:
            hub_sessions.stop(session["id"])


def test_a_duplicate_active_name_is_a_conflict_until_the_first_ends(hub: Any, hub_sessions: Any) -> None:
    _, token = hub.create_user()
    first = hub_sessions.running(token, **sleep(name="scan"))
    duplicate = hub_sessions.create(token, **sleep(name="scan"))
    assert duplicate.status_code == 409
    assert "scan" in duplicate.json()["detail"]
    hub_sessions.stop(first["id"])
    again = hub_sessions.running(token, **sleep(name="scan"))
    hub_sessions.stop(again["id"])


def test_a_session_of_another_user_may_share_a_name(hub: Any, hub_sessions: Any) -> None:
    sessions = [hub_sessions.running(hub.create_user()[1], **sleep(name="scan")) for _ in range(2)]
    for session in sessions:
        hub_sessions.stop(session["id"])


# --- kinds and identity -----------------------------------------------------------------------------------------


def test_a_command_session_runs_as_the_user(hub: Any, hub_sessions: Any) -> None:
    username, token = hub.create_user()
    session = hub_sessions.running(token, **SLEEP)
    try:
        program = hub_sessions.program_pid(session["id"])
        status = Path(f"/proc/{program}/status").read_text()
        uid = pwd.getpwnam(username).pw_uid
        assert f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}" in status
        assert Path(f"/proc/{program}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"600"]
    finally:
        hub_sessions.stop(session["id"])


def test_a_command_that_exits_with_an_error_fails_the_session_saying_so_in_words(hub: Any, hub_sessions: Any,
                                                                                 owner: tuple[str, str]) -> None:
    session = hub_sessions.start(owner[1], kind="command", command="sh", args=["-c", "exit 3"], memory="64Mi")
    ended = hub.wait_for_state(session["id"], {"completed", "failed", "stopped"}, timeout=15)
    assert ended["state"] == "failed"
    assert ended["reason"] == "the program stopped with an error (exit status 3); its log shows what it printed"


def test_a_command_that_exits_0_completes_the_session(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.start(owner[1], kind="command", command="sh", args=["-c", "sleep 1"], memory="64Mi")
    ended = hub.wait_for_state(session["id"], {"completed", "failed", "stopped"}, timeout=15)
    assert ended["state"] == "completed"
    assert ended["reason"] == "the program finished successfully"


def test_a_command_not_in_the_image_fails_saying_it_was_not_found(hub: Any, hub_sessions: Any,
                                                                  owner: tuple[str, str]) -> None:
    session = hub_sessions.start(owner[1], kind="command", command="no-such-program", memory="64Mi")
    ended = hub.wait_for_state(session["id"], {"completed", "failed", "stopped"}, timeout=15)
    assert ended["state"] == "failed"
    assert "not found" in ended["reason"], ended["reason"]


def test_a_command_session_without_a_command_is_refused_and_not_recorded(hub: Any, hub_sessions: Any) -> None:
    _, token = hub.create_user()
    refused = hub_sessions.create(token, kind="command", memory="64Mi")
    assert refused.status_code == 422
    with hub.client(token) as client:
        assert client.get("/api/v1/sessions").json() == []


def test_an_unknown_kind_is_refused(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    refused = hub_sessions.create(owner[1], kind="teleporter", memory="64Mi")
    assert refused.status_code == 422
    assert "teleporter" in refused.json()["detail"]


# --- memory -----------------------------------------------------------------------------------------------------

ALLOCATE_TOO_MUCH = """
import subprocess, sys
child = subprocess.run([sys.executable, "-c", "b = b'x' * (512 * 2**20); print(len(b))"], capture_output=True)
print(child.returncode)
"""


def memory_limit(cgroup_dirs: list[str]) -> int:
    """The memory limit of a session's cgroups, v1 or v2."""
    for directory in map(Path, cgroup_dirs):
        for name in ("memory.limit_in_bytes", "memory.max"):
            if (directory / name).exists():
                return int((directory / name).read_text())
    raise AssertionError(f"no memory controller among {cgroup_dirs}")


def test_a_jupyter_session_is_held_to_its_memory(hub: Any, hub_sessions: Any, owner: tuple[str, str],
                                                 require_image: None) -> None:
    session = hub_sessions.running(owner[1], kind="jupyter", memory="256Mi", name="small")
    try:
        handle = hub_sessions.handle(session["id"])
        if not handle["cgroups"]:
            pytest.skip("this host has no usable cgroup cpu+memory controllers")
        assert memory_limit(handle["cgroups"]) == 256 * 2**20
        assert hub_sessions.program_pid(session["id"]) in hub_sessions.pids(session["id"])
        printed = hub_sessions.execute(session["id"], owner[1], ALLOCATE_TOO_MUCH)
        assert printed.strip() == "-9"  # the kernel's OOM killer ended the child, not the session
        assert hub.admin.get(f"/api/v1/sessions/{session['id']}").json()["state"] == "running"
    finally:
        hub_sessions.stop(session["id"])


# --- placement: cores, memory, GPUs and ports -------------------------------------------------------------------

SMALL_NODE = {"BEAMHUB_NODE_CPUS": "4", "BEAMHUB_NODE_MEMORY": "1Gi", "BEAMHUB_GPUS": '["0","1"]'}


@pytest.fixture(scope="module")
def small_node(make_module_hub: Any) -> Any:
    """A server that believes its node has 4 cores, 1 GiB and GPUs 0 and 1."""
    return make_module_hub(**SMALL_NODE)


@pytest.fixture(scope="module")
def small_node_sessions(small_node: Any, kit: Any) -> Any:
    return kit(small_node)


def test_a_request_beyond_the_node_is_refused_with_the_reason(small_node_sessions: Any, small_node: Any) -> None:
    _, token = small_node.create_user()
    cases = {"cores": {"ncores": 8}, "memory": {"memory": "2Gi"}, "GPUs": {"gpus": 3}}
    for what, ask in cases.items():
        refused = small_node_sessions.create(token, **sleep(**ask))
        assert refused.status_code == 409, (what, refused.text)
        assert f"{what} requested, but this node has only" in refused.json()["detail"]
    with small_node.client(token) as client:
        assert client.get("/api/v1/sessions").json() == []


def test_a_request_beyond_what_is_free_now_waits_for_room(small_node_sessions: Any, small_node: Any) -> None:
    _, token = small_node.create_user()
    first = small_node_sessions.running(token, **sleep(ncores=3))
    refused = small_node_sessions.create(token, **sleep(ncores=2))
    assert refused.status_code == 409
    assert "only 1 are free" in refused.json()["detail"]
    small_node_sessions.stop(first["id"])
    second = small_node_sessions.running(token, **sleep(ncores=2))
    small_node_sessions.stop(second["id"])


def test_overcommit_lets_cores_and_memory_exceed_the_node_but_not_gpus(make_hub: Any, kit: Any) -> None:
    server = make_hub(BEAMHUB_OVERCOMMIT="true", **SMALL_NODE)
    sessions = kit(server)
    _, token = server.create_user()
    big = sessions.running(token, **sleep(ncores=8, memory="2Gi"))
    bigger = sessions.running(token, **sleep(ncores=8, memory="2Gi"))
    assert sessions.create(token, **sleep(gpus=3)).status_code == 409
    for session in (big, bigger):
        sessions.stop(session["id"])


def test_each_gpu_goes_to_one_session_at_a_time(small_node_sessions: Any, small_node: Any,
                                                require_image: None) -> None:
    _, token = small_node.create_user()
    labs = [small_node_sessions.running(token, kind="jupyter", memory="384Mi", gpus=1) for _ in range(2)]
    try:
        assigned = [session["gpu_ids"] for session in labs]
        assert sorted(assigned) == [["0"], ["1"]]
        for session, gpu_ids in zip(labs, assigned, strict=True):
            assert small_node_sessions.program_env(session["id"])["CUDA_VISIBLE_DEVICES"] == gpu_ids[0]
        third = small_node_sessions.create(token, **sleep(gpus=1))
        assert third.status_code == 409
        assert "GPUs" in third.json()["detail"]
        small_node_sessions.stop(labs[0]["id"])
        freed = small_node_sessions.running(token, **sleep(gpus=1))
        assert freed["gpu_ids"] == assigned[0]
        small_node_sessions.stop(freed["id"])
    finally:
        for session in labs:
            small_node_sessions.stop(session["id"])


def test_a_session_without_gpus_sees_none(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], **SLEEP)
    try:
        assert hub_sessions.program_env(session["id"])["CUDA_VISIBLE_DEVICES"] == ""
    finally:
        hub_sessions.stop(session["id"])


def runtime_dir(server: Any, session_id: str) -> Path:
    return Path(server.env.get("BEAMHUB_RUNTIME_DIR", "/run/beamhub")) / session_id


def test_sessions_started_at_once_each_get_their_own_runtime_directory(hub: Any, hub_sessions: Any) -> None:
    user, token = hub.create_user()
    started: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: started.append(hub_sessions.running(token, **SLEEP)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(started) == 4
        account = pwd.getpwnam(user)
        sockets = [hub_sessions.program_env(s["id"])["BEAMHUB_SOCKET"] for s in started]
        assert sockets == [str(runtime_dir(hub, s["id"]) / "http.sock") for s in started]
        assert len(set(sockets)) == 4
        for session in started:
            info = runtime_dir(hub, session["id"]).stat()
            assert (info.st_uid, info.st_gid) == (account.pw_uid, account.pw_gid)
            assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    finally:
        for session in started:
            hub_sessions.stop(session["id"])


def test_a_stopped_sessions_runtime_directory_is_gone(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], **SLEEP)
    directory = runtime_dir(hub, session["id"])
    try:
        assert directory.is_dir()
    finally:
        hub_sessions.stop(session["id"])
    hub.wait_for_state(session["id"], {"stopped"}, timeout=30)
    assert not directory.exists()
