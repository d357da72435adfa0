"""The audit log: logins, tokens, users, groups and sessions are recorded with who, what, when and from where;
administrators query it (API and CLI); it never holds a secret."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from beamhub.db import Database, migrate
from beamhub.identity.audit.service import AuditService, clean_detail
from beamhub.identity.principal import SYSTEM
from helpers.accounts import UserMaker
from helpers.waiting import wait_for

ADMIN = "admin-token"
LOCAL = "127.0.0.1"


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, module_database_url: str, uid_range_env: dict[str, str]) -> Any:
    """One server per database."""
    return module_beamhub_factory(env={"BEAMHUB_DATABASE_URL": module_database_url, **uid_range_env})


@pytest.fixture
def user(make_user: UserMaker) -> tuple[str, str]:
    """A new user of the server: (username, token)."""
    return make_user()


def events(server: Any, **params: Any) -> list[dict[str, Any]]:
    """Audit events the admin sees, newest first."""
    response = server.admin.get("/api/v1/audit", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return response.json()


def find(server: Any, action: str, target: str, **params: Any) -> list[dict[str, Any]]:
    return [e for e in events(server, action=action, **params) if e["target"] == target]


def the_one(server: Any, action: str, target: str, **params: Any) -> dict[str, Any]:
    found = find(server, action, target, **params)
    assert len(found) == 1, (action, target, events(server))
    return found[0]


def assert_by(event: dict[str, Any], actor: str, success: bool = True) -> None:
    assert (event["actor"], event["address"], event["success"]) == (actor, LOCAL, success), event
    datetime.fromisoformat(event["at"])


def test_user_creation_and_changes_are_recorded(server: Any, user: tuple[str, str]) -> None:
    username, _ = user
    created = the_one(server, "user.create", username)
    assert_by(created, ADMIN)
    assert created["detail"]["roles"] == ["user"]
    assert server.admin.patch(f"/api/v1/users/{username}", json={"roles": ["user", "staff"],
                                                                "beamlines": ["B7"]}).status_code == 200  # stored as b7
    updated = the_one(server, "user.update", username)
    assert_by(updated, ADMIN)
    assert updated["detail"]["changes"]["roles"] == {"from": ["user"], "to": ["staff", "user"]}
    assert updated["detail"]["changes"]["beamlines"] == {"from": [], "to": ["b7"]}
    assert server.admin.patch(f"/api/v1/users/{username}", json={"state": "disabled"}).status_code == 200
    disabled = find(server, "user.update", username)[0]
    assert disabled["detail"]["changes"] == {"state": {"from": "active", "to": "disabled"}}


def test_group_creation_and_membership_are_recorded(server: Any, user: tuple[str, str]) -> None:
    username, _ = user
    name = f"ag{secrets.token_hex(3)}"
    try:
        assert server.admin.post("/api/v1/groups", json={"name": name}).status_code == 201
        assert server.admin.put(f"/api/v1/groups/{name}/members/{username}").status_code == 200
        assert server.admin.delete(f"/api/v1/groups/{name}/members/{username}").status_code == 200
    finally:
        subprocess.run(["groupdel", name], capture_output=True)
    assert_by(the_one(server, "group.create", name), ADMIN)
    added = the_one(server, "group.member.add", name)
    removed = the_one(server, "group.member.remove", name)
    for event in (added, removed):
        assert_by(event, ADMIN)
        assert event["detail"] == {"user": username, "changed": True}
    assert [e["action"] for e in events(server, action="group") if e["target"] == name] == [
        "group.member.remove", "group.member.add", "group.create"]


def test_tokens_issued_used_revoked_and_refused_are_recorded(server: Any, user: tuple[str, str]) -> None:
    username, token = user
    issued = the_one(server, "token.issue", username)
    assert_by(issued, ADMIN)
    token_id = issued["detail"]["token_id"]
    me = server.client(token)
    for _ in range(3):
        assert me.get(f"/api/v1/users/{username}").status_code == 200
    used = the_one(server, "token.use", username)  # once a minute, not once a request
    assert_by(used, username)
    assert used["detail"]["token_id"] == token_id
    own = me.post(f"/api/v1/users/{username}/tokens", json={"name": "laptop"}).json()
    assert_by(find(server, "token.issue", username)[0], username)
    assert me.delete(f"/api/v1/users/{username}/tokens/{own['id']}").status_code == 200
    revoked = the_one(server, "token.revoke", username)
    assert_by(revoked, username)
    assert revoked["detail"]["token_id"] == own["id"]
    assert server.client(own["token"]).get(f"/api/v1/users/{username}").status_code == 401
    refused = the_one(server, "token.refused", username, success=False)
    assert_by(refused, username, success=False)
    assert refused["detail"]["token_id"] == own["id"]
    assert "revoked" in refused["detail"]["reason"]


def test_an_unknown_token_is_recorded_as_a_failure(server: Any) -> None:
    since = datetime.now(UTC).isoformat()
    assert server.client(f"bogus-{secrets.token_hex(8)}").get("/api/v1/sessions").status_code == 401
    refused = wait_for(lambda: events(server, action="token.refused", since=since, actor=""), 30, "token.refused")
    assert_by(refused[0], "", success=False)
    assert refused[0]["detail"]["reason"] == "the token is unknown or revoked"
    assert all(not e["success"] for e in events(server, success=False))
    assert refused[0]["id"] not in {e["id"] for e in events(server, success=True)}


def start_session(server: Any, token: str, **body: Any) -> dict[str, Any]:
    body = {"kind": "command", "command": "sleep", "args": ["300"], "memory": "256Mi", "ncores": 0.1, **body}
    response = server.client(token).post("/api/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_session_start_stop_fail_and_expiry_are_recorded(server: Any, user: tuple[str, str]) -> None:
    username, token = user
    session = start_session(server, token)
    assert server.client(token).delete(f"/api/v1/sessions/{session['id']}").status_code == 200
    created = the_one(server, "session.create", session["id"])
    assert_by(created, username)
    assert created["detail"]["user"] == username
    assert_by(the_one(server, "session.start", session["id"]), username)
    stopped = the_one(server, "session.stop", session["id"])
    assert_by(stopped, username)
    assert stopped["detail"]["user"] == username

    failing = start_session(server, token, command="false", args=[])
    failed = wait_for(lambda: find(server, "session.fail", failing["id"]), 30, "session.fail")[0]
    assert (failed["actor"], failed["success"]) == ("beamhub", False)
    assert "exit status 1" in failed["detail"]["reason"]

    short = start_session(server, token, runtime=1)
    expired = wait_for(lambda: find(server, "session.expire", short["id"]), 30, "session.expire")[0]
    assert (expired["actor"], expired["success"]) == ("beamhub", True)
    assert [e["action"] for e in events(server, action="session") if e["target"] == short["id"]] == [
        "session.expire", "session.start", "session.create"]


def test_the_log_is_paged_newest_first_and_filtered(server: Any, user: tuple[str, str]) -> None:
    everything = events(server)
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    first = events(server, limit=2)
    second = events(server, limit=2, before_id=first[-1]["id"])
    assert [e["id"] for e in first + second] == [e["id"] for e in everything[:4]]
    assert all(e["actor"] == user[0] for e in events(server, actor=user[0]))
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert events(server, since=future) == []
    assert len(events(server, until=future)) == len(events(server))
    assert server.admin.get("/api/v1/audit", params={"since": "2026-01-01T00:00:00"}).status_code == 422


def test_the_log_never_holds_a_secret(server: Any, user: tuple[str, str]) -> None:
    username, token = user
    issued = server.admin.post(f"/api/v1/users/{username}/tokens", json={"name": "x", "expires_in": 60}).json()
    server.client(issued["token"]).get(f"/api/v1/users/{username}")
    server.client(token).get(f"/api/v1/users/{username}")
    server.client(token[:-2]).get(f"/api/v1/users/{username}")
    server.client(issued["token"] + "x").get(f"/api/v1/users/{username}")
    server.admin.delete(f"/api/v1/users/{username}/tokens/{issued['id']}")
    server.client(issued["token"]).get(f"/api/v1/users/{username}")
    dump = json.dumps(events(server))
    for secret in (token, issued["token"], server.admin_token, token[:-2], issued["token"][:20]):
        assert secret not in dump


def test_only_administrators_read_the_log(server: Any, user: tuple[str, str]) -> None:
    _, token = user
    assert server.client().get("/api/v1/audit").status_code == 401
    assert server.client(token).get("/api/v1/audit").status_code == 403


def test_the_cli_prints_events(server: Any, user: tuple[str, str]) -> None:
    username, _ = user
    env = {**server.env, "COLUMNS": "400", "NO_COLOR": "1"}
    result = subprocess.run([str(_beamhub_command()), "audit", "--actor", ADMIN, "--action", "user", "--since", "1h",
                             "--limit", "500"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if username in line]
    assert any("user.create" in line and ADMIN in line for line in lines), result.stdout
    assert server.admin_token not in result.stdout
    failures = subprocess.run([str(_beamhub_command()), "audit", "--failures", "--limit", "5"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert failures.returncode == 0, failures.stderr
    assert "user.create" not in failures.stdout


def _beamhub_command() -> Path:
    """The `beamhub` executable next to this interpreter."""
    return Path(sys.executable).parent / "beamhub"


# --- the service on its own ------------------------------------------------------------------------


@pytest.fixture
def audit(tmp_path: Path) -> AuditService:
    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate(db.engine)
    return AuditService(db)


def test_secret_looking_details_are_dropped() -> None:
    detail = clean_detail({"token": "t", "new_password": "p", "client_secret": "s", "Cookie": "c", "token_id": 3,
                           "token_name": "laptop", "nested": {"csrf_token": "x", "ok": [1, {"passwd": "y"}]},
                           "when": datetime(2026, 1, 1, tzinfo=UTC)})
    assert detail == {"token_id": 3, "token_name": "laptop", "nested": {"ok": [1, {}]},
                      "when": "2026-01-01T00:00:00+00:00"}


def test_recording_strips_secrets_and_counts_failures(audit: AuditService) -> None:
    event = audit.record("alice", "login", "alice", "10.0.0.1", success=False, password="hunter2", method="pam")
    assert event.detail == {"method": "pam"}
    audit.record("alice", "login", "alice", "10.0.0.2", success=False)
    audit.record("alice", "login", "alice", "10.0.0.1", success=True)
    audit.record("bob", "login", "bob", "10.0.0.1", success=False)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert audit.count_failures(actor="alice", since=hour_ago) == 2
    assert audit.count_failures(address="10.0.0.1", since=hour_ago) == 2
    assert audit.count_failures("alice", "10.0.0.1", hour_ago) == 1
    assert audit.count_failures(actor="alice", since=datetime.now(UTC) + timedelta(seconds=1)) == 0
    assert "hunter2" not in json.dumps([e.detail for e in audit.query(by=SYSTEM)])
    assert [e.actor for e in audit.query(action="login", success=False, limit=2, by=SYSTEM)] == ["bob", "alice"]
