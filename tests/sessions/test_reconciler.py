"""The reconciler makes the database agree with what runs: it re-adopts survivors after a crash of beamhub,
fails sessions whose processes died (also while beamhub was down), and warns, then ends, expiring ones."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.processes import pid_alive
from helpers.waiting import wait_for

SLEEP = {"kind": "command", "command": "sleep", "args": ["600"], "memory": "64Mi", "ncores": 0.1}


def kill_session_processes(sessions: Any, session_id: str) -> set[int]:
    """SIGKILL the session's process group, as an operator or a crash would; return the PIDs it had."""
    pids = sessions.pids(session_id)
    os.killpg(sessions.handle(session_id)["pid"], signal.SIGKILL)
    return pids


def let_the_reconciler_run(server: Any, rounds: int = 4) -> None:
    """Give the reconciler time for a few rounds, to see that it leaves something alone."""
    time.sleep(rounds * float(server.env["BEAMHUB_RECONCILE_INTERVAL"]))


def events(server: Any, session_id: str) -> list[dict[str, Any]]:
    """Every event of an ended session (its stream closes once the session has ended)."""
    with server.admin.stream("GET", f"/api/v1/sessions/{session_id}/events") as response:
        return [json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line.startswith("data: ")]


def events_so_far(server: Any, session_id: str) -> list[dict[str, Any]]:
    """The events of a session recorded until now: its stream, read until it pauses."""
    found: list[dict[str, Any]] = []
    try:
        with server.admin.stream("GET", f"/api/v1/sessions/{session_id}/events", timeout=1) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    found.append(json.loads(line.removeprefix("data: ")))
    except httpx.ReadTimeout:
        pass
    return found


@pytest.fixture(scope="module")
def warning_hub(make_module_hub: Any) -> Any:
    """A server that warns 2 s before a session expires."""
    return make_module_hub(BEAMHUB_EXPIRY_WARNING="2")


@pytest.fixture(scope="module")
def two_warnings_hub(make_module_hub: Any) -> Any:
    """A server that warns 4 s and 2 s before a session expires, and looks twice a second."""
    return make_module_hub(BEAMHUB_EXPIRY_WARNING="[4, 2]", BEAMHUB_RECONCILE_INTERVAL="0.5")


@pytest.fixture(scope="module")
def warning_sessions(warning_hub: Any, kit: Any) -> Any:
    return kit(warning_hub)


# --- a crash of beamhub -----------------------------------------------------------------------------------------


def test_a_running_session_survives_a_crash_of_beamhub(make_hub: Any, kit: Any, database_url: str,
                                                       require_image: None) -> None:
    server = make_hub(BEAMHUB_DATABASE_URL=database_url)
    sessions = kit(server)
    _, token = server.create_user()
    session = sessions.running(token, kind="jupyter", memory="512Mi")
    agent, lab = sessions.handle(session["id"])["pid"], sessions.program_pid(session["id"])
    server.kill()
    server.start()
    let_the_reconciler_run(server)
    with server.client(token) as client:
        assert client.get(f"/s/{session['id']}/api/status").status_code == 200
        listed = client.get("/api/v1/sessions", params={"active": True}).json()
    assert [(s["id"], s["state"]) for s in listed] == [(session["id"], "running")]
    assert sessions.program_pid(session["id"]) == lab
    pids = sessions.pids(session["id"])
    assert {agent, lab} <= pids
    assert sessions.stop(session["id"])["state"] == "stopped"
    assert not any(pid_alive(pid) for pid in pids)


def test_a_session_killed_while_beamhub_was_down_is_failed_after_restart(make_hub: Any, kit: Any,
                                                                         database_url: str) -> None:
    server = make_hub(BEAMHUB_DATABASE_URL=database_url)
    sessions = kit(server)
    _, token = server.create_user()
    session = sessions.running(token, **SLEEP)
    server.kill()
    kill_session_processes(sessions, session["id"])
    server.start()
    failed = server.wait_for_state(session["id"], {"failed"}, timeout=5)
    assert "gone" in failed["reason"]


def test_a_session_that_expired_while_beamhub_was_down_is_expired_after_restart(make_hub: Any, kit: Any) -> None:
    server = make_hub()
    sessions = kit(server)
    _, token = server.create_user()
    session = sessions.running(token, **SLEEP, runtime=2)
    pids = sessions.pids(session["id"])
    server.kill()
    time.sleep(2)
    server.start()
    expired = server.wait_for_state(session["id"], {"expired"}, timeout=5)
    assert expired["reason"] == "its time ran out"
    assert not any(pid_alive(pid) for pid in pids)


# --- dead and expiring sessions ---------------------------------------------------------------------------------


def test_a_session_whose_processes_are_killed_is_failed_with_the_reason(warning_hub: Any,
                                                                        warning_sessions: Any) -> None:
    _, token = warning_hub.create_user()
    session = warning_sessions.running(token, **SLEEP)
    cgroups = warning_sessions.handle(session["id"])["cgroups"]
    pids = kill_session_processes(warning_sessions, session["id"])
    failed = warning_hub.wait_for_state(session["id"], {"failed"}, timeout=5)
    assert "SIGKILL" in failed["reason"]
    assert not any(pid_alive(pid) for pid in pids)
    assert not any(Path(directory).exists() for directory in cgroups)


def test_a_session_ends_as_expired_at_its_runtime(warning_hub: Any, warning_sessions: Any) -> None:
    _, token = warning_hub.create_user()
    session = warning_sessions.running(token, **SLEEP, runtime=3)
    pids = warning_sessions.pids(session["id"])
    expired = warning_hub.wait_for_state(session["id"], {"expired", "failed", "stopped"}, timeout=10)
    assert expired["state"] == "expired"
    assert expired["reason"] == "its time ran out"
    assert datetime.fromisoformat(expired["ended_at"]) >= datetime.fromisoformat(session["expires_at"])
    assert pids and not any(pid_alive(pid) for pid in pids)


def test_a_warning_comes_before_the_expiry(warning_hub: Any, warning_sessions: Any) -> None:
    _, token = warning_hub.create_user()
    session = warning_sessions.running(token, **SLEEP, runtime=4)
    warning_hub.wait_for_state(session["id"], {"expired"}, timeout=10)
    history = events(warning_hub, session["id"])
    warnings = [e for e in history if e["kind"] == "warning"]
    assert len(warnings) == 1
    expiry = [e for e in history if e["state"] == "expired"][0]
    expires_at = datetime.fromisoformat(session["expires_at"])
    assert expires_at - timedelta(seconds=2) <= datetime.fromisoformat(warnings[0]["at"]) < expires_at
    assert warnings[0]["id"] < expiry["id"]
    assert "extend" in warnings[0]["message"]


def test_an_extended_session_is_warned_again_before_its_new_expiry(warning_hub: Any, warning_sessions: Any) -> None:
    _, token = warning_hub.create_user()
    session = warning_sessions.running(token, **SLEEP, runtime=3)
    wait_for(lambda: any(e["kind"] == "warning" for e in events_so_far(warning_hub, session["id"])), 5,
             "the first warning")
    with warning_hub.client(token) as client:
        assert client.patch(f"/api/v1/sessions/{session['id']}", json={"runtime": 3}).status_code == 200
    warning_hub.wait_for_state(session["id"], {"expired"}, timeout=10)
    kinds = [e["kind"] for e in events(warning_hub, session["id"]) if e["kind"] != "transition"]
    assert kinds == ["warning", "extended", "warning"]


def test_a_warning_comes_at_each_lead_time(two_warnings_hub: Any, kit: Any) -> None:
    _, token = two_warnings_hub.create_user()
    session = kit(two_warnings_hub).running(token, **SLEEP, runtime=7)
    two_warnings_hub.wait_for_state(session["id"], {"expired"}, timeout=12)
    history = events(two_warnings_hub, session["id"])
    expires_at = datetime.fromisoformat(history[-1]["at"])
    warned = [datetime.fromisoformat(e["at"]) for e in history if e["kind"] == "warning"]
    assert len(warned) == 2, history
    assert expires_at - timedelta(seconds=4.5) <= warned[0] < expires_at - timedelta(seconds=2)
    assert expires_at - timedelta(seconds=2.5) <= warned[1] < expires_at
