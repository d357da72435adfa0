"""The authorization matrix: every route of both APIs, the proxy and the events stream refuses a caller without
credentials (401) and another user acting on someone else's resources (403, or 404 where the code must not
reveal existence); the owner, or an administrator for admin routes, passes."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from helpers.authz_world import SESSION_BODY, World, detail, new_name, public_key, world_of

PUBLIC = "public"  # anyone, no credentials
ANYONE = "anyone"  # any authenticated user, about themselves
OWNER = "owner"  # the user who owns the resource (or an admin)
ADMIN = "admin"  # administrators only
AGENT = "agent"  # a session's agent, by its secret: no user token passes


@pytest.fixture(scope="module")
def world(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[Any]:
    with world_of(module_beamhub_factory, uid_range_env) as built:
        yield built


Body = Callable[[Any], dict[str, Any]]


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


NO_JOB = "0123456789abcdef"

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
    Route("GET", "/api/v1/sessions/{session_id}/log", OWNER),
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
    Route("POST", "/api/v1/proposals/{proposal_id}/migrate", ADMIN, body=lambda w: {"to": "hot"}),  # 422: it is there
    Route("POST", "/api/v1/proposals/{proposal_id}/prefetch", OWNER),  # its data is on the fast tier already
    *(Route("GET", f"/api/v1/proposals/{{proposal_id}}/h5/{what}", OWNER, params=lambda ids: {"file": "none.h5"})
      for what in ("meta", "attr", "data", "stats", "paths")),
    # Batch jobs: this server has no Slurm, so a submission is 404 "not set up" and no job exists; who may reach
    # the routes is still decided first (tests/jobs covers ownership against a real cluster).
    Route("GET", "/api/v1/streams", ANYONE),
    Route("GET", "/api/v1/jobs", ANYONE),
    Route("POST", "/api/v1/jobs", OWNER, body=lambda w: {"command": "hostname", "minutes": 1}),
    Route("GET", "/api/v1/jobs/partitions", ANYONE),
    Route("GET", "/api/v1/jobs/{job_id}", OWNER),
    Route("DELETE", "/api/v1/jobs/{job_id}", OWNER),
    Route("GET", "/api/v1/jobs/{job_id}/events", OWNER),
    Route("GET", "/api/v1/jobs/{job_id}/{which}", OWNER),
]
GUARDED = [route for route in ROUTES if route.access != PUBLIC]


@pytest.fixture(autouse=True)
def _a_job_that_is_not_there(world: World) -> None:
    world.ids.setdefault("job_id", NO_JOB)
    world.ids.setdefault("which", "output")


def call(w: World, client: httpx.Client, route: Route, ids: dict[str, Any] | None = None) -> httpx.Response:
    """Call a route on alice's resources (or on `ids` where given); a stream is read no further than its head."""
    ids = {**w.ids, **(ids or {})}
    params = route.params(ids) if route.params else None
    request = client.build_request(route.method, route.path.format(**ids), params=params,
                                   json=route.body(w) if route.body else None)
    response = client.send(request, stream=True)
    response.close()
    return response


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
    url = f"ws://127.0.0.1:{world.server.port}/s/{world.ids['session_id']}/api/ws"

    async def refused(headers: dict[str, str]) -> bool:
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=10):
                return False
        except websockets.InvalidStatus:
            return True

    assert asyncio.run(refused({}))
    assert asyncio.run(refused({"Authorization": f"Bearer {world.bob_token}"}))
