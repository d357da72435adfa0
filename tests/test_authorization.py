"""The authorization matrix: every route of both APIs, the proxy and the events stream refuses a caller without
credentials (401) and another user acting on someone else's resources (403, or 404 where the code must not
reveal existence); the owner, or an administrator for admin routes, passes. Staff reach the sessions of their
beamlines and no other; a token without the sessions scope reaches none; a disabled user reaches nothing."""

from __future__ import annotations

import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

PUBLIC = "public"  # anyone, no credentials
ANYONE = "anyone"  # any authenticated user, about themselves
OWNER = "owner"  # the user who owns the resource (or an admin)
ADMIN = "admin"  # administrators only
AGENT = "agent"  # a session's agent, by its secret: no user token passes

SESSION_BODY = {"kind": "command", "command": "sleep", "args": ["300"], "memory": "256Mi", "ncores": 0.1}


def new_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def public_key() -> str:
    """A fresh ed25519 public key in OpenSSH format."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " t@x"


@dataclass
class World:
    """The users and resources of the shared server."""

    server: Any
    alice: str = ""
    alice_token: str = ""
    bob: str = ""
    bob_token: str = ""
    ids: dict[str, Any] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def user(self, **fields: Any) -> tuple[str, str]:
        username = new_name("az")
        self.users.append(username)
        return self.server.create_user(username=username, **fields)

    def session(self, token: str | None = None, **changes: Any) -> dict[str, Any]:
        """A new sleeping command session, of alice unless another token is given (the admin's: for alice)."""
        client = self.server.client(token or self.alice_token) if token != "admin" else self.server.admin
        body = {**SESSION_BODY, **changes}
        if token == "admin":
            body.setdefault("user", self.alice)
        response = client.post("/api/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def token_id(self) -> int:
        response = self.server.admin.post(f"/api/v1/users/{self.alice}/tokens", json={"name": "spare"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def key_id(self) -> int:
        response = self.server.admin.post(f"/api/v1/users/{self.alice}/keys", json={"public_key": public_key()})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def pod(self) -> str:
        """A new HEPS pod of alice; its name."""
        name = new_name("pod")
        response = self.server.admin.post("/userpod/", json={"username": self.alice, "podname": name, "ncores": 0.1,
                                                             "memory": "256Mi", "single_cmd": "sleep",
                                                             "single_cmd_args": "300"})
        assert response.status_code == 201, response.text
        return name

    def proposal(self) -> str:
        """A new proposal with alice as PI and one registered file, scan1/data.h5; its id."""
        now = datetime.now(timezone.utc).isoformat()
        response = self.server.admin.post("/api/v1/proposals", json={
            "id": f"2024-{random.randrange(10**5):05d}", "title": "matrix", "beamline": "x1", "beamtime_start": now,
            "beamtime_end": now, "members": [{"username": self.alice, "role": "pi"}]})
        assert response.status_code == 201, response.text
        data = Path(response.json()["path"]) / "scan1" / "data.h5"
        data.parent.mkdir()
        data.write_bytes(b"frame")
        pid = response.json()["id"]
        assert self.server.admin.post(f"/api/v1/proposals/{pid}/register", json={}).status_code == 200
        return pid

    def member(self) -> dict[str, Any]:
        """A new user made a member of alice's proposal: the ids that name them."""
        username, _ = self.user()
        response = self.server.admin.put(f"/api/v1/proposals/{self.ids['proposal_id']}/members/{username}")
        assert response.status_code == 200, response.text
        return {"username": username}


@pytest.fixture(scope="module")
def world(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[World]:
    start = random.randrange(20000, 32000, 200)
    storage = Path(tempfile.mkdtemp(prefix="beamhub-authz-"))
    storage.chmod(0o755)
    server = module_beamhub_factory(env={**uid_range_env, "BEAMHUB_PORT_MIN": str(start),
                                         "BEAMHUB_PORT_MAX": str(start + 199), "BEAMHUB_STORAGE_ROOT": str(storage)})
    w = World(server)
    try:
        w.alice, w.alice_token = w.user()
        w.bob, w.bob_token = w.user()
        w.groups.append(new_name("azg"))
        assert server.admin.post("/api/v1/groups", json={"name": w.groups[0]}).status_code == 201
        w.ids = {"username": w.alice, "session_id": w.session()["id"], "token_id": w.token_id(),
                 "key_id": w.key_id(), "name": w.groups[0], "podname": w.pod(),
                 "sid": "S-1-5-21-1-2-3-4", "ip": f"198.51.100.{random.randrange(1, 250)}"}
        assert server.admin.post("/uniqueipinfo/", json={"sourceip": w.ids["ip"], "beamline": "X1"}).status_code \
            == 201
        w.ids |= {"proposal_id": w.proposal(), "path": "scan1/data.h5", "dataset": "scan1"}
        yield w
    finally:
        server.stop_all_sessions()
        for name in w.users:
            subprocess.run(["userdel", "-r", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)
        for name in w.groups:
            subprocess.run(["groupdel", name], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)


Body = Callable[[World], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    access: str
    body: Body | None = None
    params: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Query parameters, from the ids the call acts on."""
    fresh: Callable[[World], dict[str, Any]] | None = None
    """For routes that end what they act on: fresh resources for the owner's own call."""

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def _user_body(w: World) -> dict[str, Any]:
    name = new_name("az")
    w.users.append(name)
    return {"username": name}


def _group_body(w: World) -> dict[str, Any]:
    name = new_name("azg")
    w.groups.append(name)
    return {"name": name}


ROUTES = [
    Route("GET", "/api/v1/health", PUBLIC),
    Route("GET", "/api/v1/me", ANYONE),
    Route("PUT", "/api/v1/users/{username}/password", OWNER, body=lambda w: {"password": secrets.token_hex(8)}),
    Route("GET", "/api/v1/users", ADMIN),
    Route("POST", "/api/v1/users", ADMIN, body=_user_body),
    Route("GET", "/api/v1/users/{username}", OWNER),
    Route("PATCH", "/api/v1/users/{username}", ADMIN, body=lambda w: {"display_name": "Alice"}),
    Route("GET", "/api/v1/users/{username}/tokens", OWNER),
    Route("POST", "/api/v1/users/{username}/tokens", OWNER, body=lambda w: {"name": "more"}),
    Route("DELETE", "/api/v1/users/{username}/tokens/{token_id}", OWNER,
          fresh=lambda w: {"token_id": w.token_id()}),
    Route("GET", "/api/v1/groups", ADMIN),
    Route("POST", "/api/v1/groups", ADMIN, body=_group_body),
    Route("PUT", "/api/v1/groups/{name}/members/{username}", ADMIN),
    Route("DELETE", "/api/v1/groups/{name}/members/{username}", ADMIN),
    Route("GET", "/api/v1/audit", ADMIN),
    Route("GET", "/api/v1/users/{username}/keys", OWNER),
    Route("POST", "/api/v1/users/{username}/keys", OWNER, body=lambda w: {"public_key": public_key()}),
    Route("DELETE", "/api/v1/users/{username}/keys/{key_id}", OWNER, fresh=lambda w: {"key_id": w.key_id()}),
    Route("GET", "/api/v1/users/{username}/windows", OWNER),
    Route("GET", "/api/v1/windows/sid/{sid}", ADMIN),
    Route("GET", "/api/v1/sessions", ANYONE),
    Route("GET", "/api/v1/sessions/events", ANYONE),
    Route("POST", "/api/v1/sessions", OWNER, body=lambda w: {**SESSION_BODY, "user": w.alice}),
    Route("GET", "/api/v1/sessions/{session_id}", OWNER),
    Route("PATCH", "/api/v1/sessions/{session_id}", OWNER, body=lambda w: {"runtime": 600}),
    Route("DELETE", "/api/v1/sessions/{session_id}", OWNER, fresh=lambda w: {"session_id": w.session()["id"]}),
    Route("GET", "/api/v1/sessions/{session_id}/events", OWNER),
    Route("POST", "/api/v1/sessions/{session_id}/agent", AGENT, body=lambda w: {"event": "exited", "status": 0}),
    Route("GET", "/s/{session_id}/", OWNER),
    Route("POST", "/s/{session_id}/api/anything", OWNER, body=lambda w: {}),
    Route("POST", "/users/", ADMIN, body=_user_body),
    Route("GET", "/users/", ADMIN),
    Route("GET", "/users/count", ADMIN),
    Route("GET", "/users/{username}", OWNER),
    Route("POST", "/userpod/", OWNER, body=lambda w: {"username": w.alice, "podname": new_name("pod"),
                                                     "ncores": 0.1, "memory": "256Mi", "single_cmd": "sleep",
                                                     "single_cmd_args": "300"}),
    Route("DELETE", "/userpod/", OWNER, params=lambda ids: {"username": ids["username"], "podname": ids["podname"]},
          fresh=lambda w: {"podname": w.pod()}),
    Route("PATCH", "/userpod/", OWNER,
          body=lambda w: {"username": w.alice, "podname": w.ids["podname"], "expireruntime": 900}),
    Route("GET", "/userpod/{username}", OWNER),
    Route("GET", "/refreshuserspod/", ADMIN),
    Route("GET", "/uniqueipinfo/", ANYONE),
    Route("POST", "/uniqueipinfo/", ADMIN,
          body=lambda w: {"sourceip": f"198.51.100.{random.randrange(1, 250)}", "beamline": "X2"}),
    Route("PUT", "/uniqueipinfo/", ADMIN, body=lambda w: {"sourceip": w.ids["ip"], "description": "moved"}),
    Route("GET", "/api/v1/proposals", ANYONE),
    Route("POST", "/api/v1/proposals", ADMIN, body=lambda w: {
        "id": f"2025-{random.randrange(10**5):05d}", "title": "t", "beamline": "x1",
        "beamtime_start": "2025-01-01T00:00:00Z", "beamtime_end": "2025-01-02T00:00:00Z"}),
    Route("GET", "/api/v1/proposals/{proposal_id}", OWNER),
    Route("PUT", "/api/v1/proposals/{proposal_id}/members/{username}", OWNER,
          fresh=lambda w: {"username": w.user()[0]}),
    Route("DELETE", "/api/v1/proposals/{proposal_id}/members/{username}", OWNER, fresh=lambda w: w.member()),
    Route("GET", "/api/v1/proposals/{proposal_id}/datasets", OWNER),
    Route("GET", "/api/v1/proposals/{proposal_id}/datasets/{dataset}/zip", OWNER),
    Route("GET", "/api/v1/proposals/{proposal_id}/files", OWNER),
    Route("GET", "/api/v1/proposals/{proposal_id}/files/{path}", OWNER),
    Route("HEAD", "/api/v1/proposals/{proposal_id}/files/{path}", OWNER),
    Route("POST", "/api/v1/proposals/{proposal_id}/register", ADMIN, body=lambda w: {}),
    Route("GET", "/api/v1/proposals/{proposal_id}/readers", ADMIN),
]
GUARDED = [route for route in ROUTES if route.access != PUBLIC]


def call(w: World, client: httpx.Client, route: Route, ids: dict[str, Any] | None = None) -> httpx.Response:
    """Call a route on alice's resources (or on `ids` where given); a stream is read no further than its head."""
    ids = {**w.ids, **(ids or {})}
    params = route.params(ids) if route.params else None
    request = client.build_request(route.method, route.path.format(**ids), params=params,
                                   json=route.body(w) if route.body else None)
    response = client.send(request, stream=True)
    response.close()
    return response


def detail(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url} -> {response.status_code}"


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: r.id)
def test_without_credentials_a_route_is_401(world: World, route: Route) -> None:
    assert call(world, world.server.client(), route).status_code == 401
    assert call(world, world.server.client("not-a-token"), route).status_code == 401


@pytest.mark.parametrize("route", [r for r in ROUTES if r.access in (OWNER, ADMIN, AGENT)], ids=lambda r: r.id)
def test_another_user_is_refused(world: World, route: Route) -> None:
    response = call(world, world.server.client(world.bob_token), route)
    wanted = {401} if route.access == AGENT else {403, 404}
    assert response.status_code in wanted, detail(response)


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: r.id)
def test_the_owner_or_an_admin_passes(world: World, route: Route) -> None:
    client = world.server.admin if route.access == ADMIN else world.server.client(world.alice_token)
    fresh = route.fresh(world) if route.fresh else None
    response = call(world, client, route, fresh)
    if route.access == AGENT:
        assert response.status_code == 401, detail(response)  # a user's token is not the agent's secret
        assert call(world, world.server.admin, route).status_code == 401
    else:
        assert response.status_code not in (401, 403), detail(response)
        assert response.status_code < 500 or route.path.startswith("/s/"), detail(response)


def test_the_matrix_covers_every_route(world: World) -> None:
    """A new route of /api/v1 or of the HEPS API fails here until the matrix above covers it."""
    spec = world.server.admin.get("/openapi.json").json()
    served = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
    heps = ("/users/", "/userpod/", "/refreshuserspod/", "/uniqueipinfo/")
    served = {route for route in served if route.split(" ", 1)[1].startswith(("/api/v1/", *heps))}
    assert len(served) > 30, served
    assert served - {route.id for route in ROUTES} == set()


def test_an_ordinary_user_lists_only_their_own(world: World) -> None:
    bob = world.server.client(world.bob_token)
    assert world.alice not in {s["user"] for s in bob.get("/api/v1/sessions").json()}
    assert bob.get("/api/v1/sessions", params={"user": world.alice}).status_code == 403
    assert bob.get(f"/userpod/{world.alice}").status_code == 403
    assert bob.get("/api/v1/me").json()["username"] == world.bob


def test_another_user_cannot_act_for_the_first(world: World) -> None:
    bob = world.server.client(world.bob_token)
    assert bob.post("/api/v1/sessions", json={**SESSION_BODY, "user": world.alice}).status_code == 403
    assert bob.post(f"/api/v1/users/{world.alice}/tokens", json={}).status_code == 403
    assert bob.post("/api/v1/users", json={"username": new_name("az"), "roles": ["admin"]}).status_code == 403


def test_another_user_cannot_take_a_registered_workstation(world: World) -> None:
    """Taking a workstation stops the session it holds: not for another user calling from elsewhere."""
    held = world.session("admin", source_ip=world.ids["ip"])
    bob = world.server.client(world.bob_token)
    assert bob.post("/api/v1/sessions", json={**SESSION_BODY, "source_ip": world.ids["ip"]}).status_code == 403
    assert bob.post("/userpod/", json={"username": world.bob, "sourceip": world.ids["ip"], "ncores": 0.1,
                                       "memory": "256Mi", "single_cmd": "sleep"}).status_code == 403
    assert world.server.admin.get(f"/api/v1/sessions/{held['id']}").json()["state"] in ("starting", "running")
    world.server.admin.delete(f"/api/v1/sessions/{held['id']}")


def test_websockets_to_a_session_are_refused_without_the_right_user(world: World) -> None:
    import asyncio

    url = f"ws://127.0.0.1:{world.server.port}/s/{world.ids['session_id']}/api/ws"

    async def refused(headers: dict[str, str]) -> bool:
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=10):
                return False
        except websockets.InvalidStatus:
            return True

    assert asyncio.run(refused({}))
    assert asyncio.run(refused({"Authorization": f"Bearer {world.bob_token}"}))


# --- staff, scopes, disabled users ---------------------------------------------------------------


@pytest.fixture(scope="module")
def beamlines(world: World) -> dict[str, str]:
    """A B7 and a BE workstation: their IPs."""
    ips = {"B7": f"192.0.2.{random.randrange(1, 120)}", "BE": f"192.0.2.{random.randrange(130, 250)}"}
    for beamline, ip in ips.items():
        response = world.server.admin.post("/uniqueipinfo/", json={"sourceip": ip, "beamline": beamline})
        assert response.status_code == 201, response.text
    return ips


def test_staff_reach_the_sessions_of_their_beamline_and_no_other(world: World, beamlines: dict[str, str]) -> None:
    _, token = world.user(roles=["user", "staff"], beamlines=["B7"])
    staff = world.server.client(token)
    b7 = world.session("admin", source_ip=beamlines["B7"])
    be = world.session("admin", source_ip=beamlines["BE"])
    listed = {s["id"] for s in staff.get("/api/v1/sessions").json()}
    assert b7["id"] in listed and be["id"] not in listed
    assert staff.get(f"/api/v1/sessions/{b7['id']}").status_code == 200
    assert staff.patch(f"/api/v1/sessions/{b7['id']}", json={"runtime": 600}).status_code == 200
    for method, path in [("GET", ""), ("PATCH", ""), ("GET", "/events"), ("DELETE", "")]:
        body = {"runtime": 600} if method == "PATCH" else None
        response = staff.request(method, f"/api/v1/sessions/{be['id']}{path}", json=body)
        assert response.status_code == 403, detail(response)
    assert staff.get(f"/s/{be['id']}/").status_code == 403
    assert staff.get(f"/s/{b7['id']}/").status_code not in (401, 403)
    stopped = staff.delete(f"/api/v1/sessions/{b7['id']}")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] in ("stopped", "stopping")
    assert world.server.admin.get(f"/api/v1/sessions/{be['id']}").json()["state"] in ("starting", "running")
    assert world.server.admin.delete(f"/api/v1/sessions/{be['id']}").status_code == 200


def test_staff_of_another_beamline_see_nothing(world: World, beamlines: dict[str, str]) -> None:
    _, token = world.user(roles=["user", "staff"], beamlines=["BE"])
    b7 = world.session("admin", source_ip=beamlines["B7"])
    try:
        staff = world.server.client(token)
        assert staff.get(f"/api/v1/sessions/{b7['id']}").status_code == 403
        assert staff.delete(f"/api/v1/sessions/{b7['id']}").status_code == 403
        assert b7["id"] not in {s["id"] for s in staff.get("/api/v1/sessions").json()}
    finally:
        world.server.admin.delete(f"/api/v1/sessions/{b7['id']}")


def test_a_token_without_the_sessions_scope_reaches_no_session(world: World) -> None:
    response = world.server.admin.post(f"/api/v1/users/{world.alice}/tokens",
                                       json={"name": "reader", "scopes": ["data:read"]})
    assert response.status_code == 201, response.text
    reader = world.server.client(response.json()["token"])
    sid = world.ids["session_id"]
    for method, path, body in [("GET", "/api/v1/sessions", None), ("POST", "/api/v1/sessions", SESSION_BODY),
                               ("GET", f"/api/v1/sessions/{sid}", None),
                               ("PATCH", f"/api/v1/sessions/{sid}", {"runtime": 600}),
                               ("GET", f"/api/v1/sessions/{sid}/events", None),
                               ("DELETE", f"/api/v1/sessions/{sid}", None), ("GET", f"/s/{sid}/", None),
                               ("GET", f"/userpod/{world.alice}", None),
                               ("POST", "/userpod/", {"username": world.alice, "single_cmd": "sleep"})]:
        response = reader.request(method, path, json=body)
        assert response.status_code == 403, detail(response)
    assert world.server.admin.get(f"/api/v1/sessions/{sid}").json()["state"] in ("starting", "running")
    assert reader.get(f"/api/v1/users/{world.alice}").status_code == 200


def test_a_limited_token_cannot_add_ssh_keys_or_set_the_password(world: World) -> None:
    response = world.server.admin.post(f"/api/v1/users/{world.alice}/tokens",
                                       json={"name": "reader", "scopes": ["data:read"]})
    reader = world.server.client(response.json()["token"])
    key = reader.post(f"/api/v1/users/{world.alice}/keys", json={"public_key": public_key()})
    assert key.status_code == 403, detail(key)
    assert reader.get(f"/api/v1/users/{world.alice}/keys").status_code == 403
    password = reader.put(f"/api/v1/users/{world.alice}/password", json={"password": secrets.token_hex(8)})
    assert password.status_code == 403, detail(password)
    assert "scope" in password.json()["detail"]


def test_a_limited_token_cannot_issue_a_wider_one(world: World) -> None:
    response = world.server.admin.post(f"/api/v1/users/{world.alice}/tokens",
                                       json={"name": "reader", "scopes": ["data:read"]})
    reader = world.server.client(response.json()["token"])
    path = f"/api/v1/users/{world.alice}/tokens"
    assert reader.post(path, json={"name": "all"}).status_code == 403
    assert reader.post(path, json={"name": "s", "scopes": ["sessions"]}).status_code == 403
    narrow = reader.post(path, json={"name": "same", "scopes": ["data:read"]})
    assert narrow.status_code == 201, narrow.text
    assert narrow.json()["scopes"] == ["data:read"]
    assert world.server.client(world.alice_token).post(path, json={"name": "full"}).status_code == 201


def test_a_disabled_user_is_refused_and_their_sessions_end(world: World) -> None:
    username, token = world.user()
    carol = world.server.client(token)
    session = world.session(token)
    response = world.server.admin.patch(f"/api/v1/users/{username}", json={"state": "disabled"})
    assert response.status_code == 200, response.text
    for method, path in [("GET", f"/api/v1/users/{username}"), ("GET", "/api/v1/sessions"),
                         ("GET", f"/api/v1/sessions/{session['id']}"), ("GET", f"/s/{session['id']}/"),
                         ("POST", f"/api/v1/users/{username}/tokens")]:
        response = carol.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 403, detail(response)
    deadline = time.monotonic() + 30
    while (state := world.server.admin.get(f"/api/v1/sessions/{session['id']}").json()["state"]) == "stopping":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state == "stopped"
