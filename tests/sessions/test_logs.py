"""A session's log: its program's output, in the user's own space (theirs, 0600, capped), read by its owner and
administrators through /api/v1/sessions/{id}/log."""

from __future__ import annotations

import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from helpers.waiting import wait_for

PRINTS = "echo hello from the program; echo an error >&2"


def log_file(username: str, session_id: str) -> Path:
    return Path(pwd.getpwnam(username).pw_dir) / ".beamhub" / "sessions" / f"{session_id}.log"


@pytest.fixture(scope="module")
def people(hub: Any) -> dict[str, tuple[str, str]]:
    """The owner, another user, staff of the session's beamline and an administrator: (name, token)."""
    return {"owner": hub.create_user(), "other": hub.create_user(),
            "staff": hub.create_user(roles=["staff"], beamlines=["b9"]), "admin": hub.create_user(roles=["admin"])}


@pytest.fixture(scope="module")
def printed(hub: Any, hub_sessions: Any, people: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A completed command session of the owner that printed on stdout and stderr, held by a b9 workstation."""
    registered = hub.admin.post("/uniqueipinfo/", json={"sourceip": "192.0.2.91", "beamline": "b9"})
    assert registered.status_code == 201, registered.text
    session = hub_sessions.start(hub.admin_token, user=people["owner"][0], kind="command", command="sh",
                                 args=["-c", PRINTS], memory="64Mi", source_ip="192.0.2.91")
    return hub.wait_for_state(session["id"], {"completed", "failed", "stopped"}, timeout=15)


def read_log(hub: Any, token: str, session_id: str, **params: Any) -> Any:
    with hub.client(token) as client:
        return client.get(f"/api/v1/sessions/{session_id}/log", params=params)


def test_the_owner_reads_what_the_program_printed(hub: Any, people: dict[str, tuple[str, str]],
                                                  printed: dict[str, Any]) -> None:
    assert printed["state"] == "completed"
    answer = read_log(hub, people["owner"][1], printed["id"])
    assert answer.status_code == 200, answer.text
    assert answer.text == "hello from the program\nan error\n"
    assert answer.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("who, status", [("admin", 200), ("other", 403), ("staff", 403)])
def test_only_the_owner_and_administrators_read_the_log(hub: Any, people: dict[str, tuple[str, str]],
                                                        printed: dict[str, Any], who: str, status: int) -> None:
    assert read_log(hub, people[who][1], printed["id"]).status_code == status


def test_the_log_is_the_users_file_only_they_may_read(people: dict[str, tuple[str, str]],
                                                      printed: dict[str, Any]) -> None:
    path = log_file(people["owner"][0], printed["id"])
    uid = pwd.getpwnam(people["owner"][0]).pw_uid
    assert (path.stat().st_uid, stat.S_IMODE(path.stat().st_mode)) == (uid, 0o600)
    assert (path.parent.stat().st_uid, stat.S_IMODE(path.parent.stat().st_mode)) == (uid, 0o700)


def test_a_log_put_in_place_by_a_symlink_is_not_read(hub: Any, people: dict[str, tuple[str, str]],
                                                     printed: dict[str, Any]) -> None:
    path = log_file(people["owner"][0], printed["id"])
    path.rename(path.with_suffix(".moved"))
    path.symlink_to("/etc/shadow")
    assert read_log(hub, people["owner"][1], printed["id"]).text == ""


def test_a_chatty_program_keeps_its_log_under_the_cap(make_hub: Any, kit: Any) -> None:
    small = make_hub(BEAMHUB_SESSION_LOG_MAX="65536")
    username, token = small.create_user()
    session = kit(small).start(token, kind="command", command="sh", memory="64Mi",
                               args=["-c", "i=0; while [ $i -lt 5000 ]; do echo line $i; i=$((i+1)); done"])
    small.wait_for_state(session["id"], {"completed", "failed", "stopped"}, timeout=30)
    path = log_file(username, session["id"])
    rotated = path.with_name(path.name + ".1")
    wait_for(lambda: rotated.exists() or None, 5, "the rotated log")
    assert path.stat().st_size + rotated.stat().st_size <= 65536
    tail = read_log(small, token, session["id"], tail=100).text
    assert tail.endswith("line 4999\n")
