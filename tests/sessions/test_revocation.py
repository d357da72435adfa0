"""Access through the proxy ends when its credential does: a logout ends the entry cookie, a revoked token is
refused within seconds, and open websockets (on either origin) close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from helpers.session_origin import (
    ECHO,
    PASSWORD,
    Browser,
    browser_of,
    make_people,
    refused_within,
    seconds_until_closed,
    start_echo,
)
from helpers.waiting import wait_for


@pytest.fixture(scope="module")
def hub(make_module_hub: Any) -> Any:
    """The module's server, with room for the sessions its tests hold at once (the host has two cores)."""
    return make_module_hub(BEAMHUB_NODE_CPUS="8", BEAMHUB_NODE_MEMORY="8Gi")


@pytest.fixture(scope="module")
def people(hub: Any) -> dict[str, tuple[str, str]]:
    return make_people(hub)


@pytest.fixture(scope="module")
def echo(hub: Any, hub_sessions: Any, people: dict[str, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    session = start_echo(hub, hub_sessions, people["alice"][0])
    yield session
    hub_sessions.stop(session["id"])


def test_logging_out_ends_the_entry_cookie(hub: Any, people: dict[str, tuple[str, str]],
                                           echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    assert browser.enter(echo["id"]).status_code == 200
    console = browser.jars[browser.host_of(None)]
    page = browser.request("GET", "/")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert browser.request("POST", "/logout", data={"csrf_token": csrf}).status_code in (200, 303)
    assert "beamhub-session" not in console
    own_page = {"Origin": f"http://{browser.host_of(echo['id'])}"}
    assert refused_within(5, lambda: browser.request("POST", f"/s/{echo['id']}/echo", echo["id"], headers=own_page))
    browser.close()


def test_a_revoked_token_is_refused_by_the_proxy_within_seconds(hub: Any, people: dict[str, tuple[str, str]],
                                                               echo: dict[str, Any]) -> None:
    alice = people["alice"][0]
    issued = hub.admin.post(f"/api/v1/users/{alice}/tokens", json={"name": "soon revoked"}).json()
    with hub.client(issued["token"]) as client:
        wait_until_answering = [client.get(f"/s/{echo['id']}/echo").status_code for _ in range(3)]
        assert wait_until_answering[-1] == 200
        assert hub.admin.delete(f"/api/v1/users/{alice}/tokens/{issued['id']}").status_code in (200, 204)
        assert refused_within(5, lambda: client.get(f"/s/{echo['id']}/echo"))


def test_a_kernel_websocket_closes_once_its_token_is_revoked(hub: Any, hub_sessions: Any, lab: dict[str, Any],
                                                             owner: tuple[str, str]) -> None:
    name, _ = owner
    issued = hub.admin.post(f"/api/v1/users/{name}/tokens", json={"name": "short"})
    assert issued.status_code == 201
    token, token_id = issued.json()["token"], issued.json()["id"]
    kernel = hub_sessions.start_kernel(lab["id"], token)
    url = hub_sessions.channels_url(lab["id"], kernel)

    async def held_open() -> float:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                      open_timeout=10) as ws:
            revoked = await asyncio.to_thread(hub.admin.delete, f"/api/v1/users/{name}/tokens/{token_id}")
            assert revoked.status_code in (200, 204), revoked.text
            return await seconds_until_closed(ws)

    assert asyncio.run(held_open()) < 5


def test_a_websocket_on_the_sessions_origin_closes_once_the_login_ends(hub: Any, hub_sessions: Any,
                                                                      lab: dict[str, Any],
                                                                      owner: tuple[str, str]) -> None:
    assert hub.admin.put(f"/api/v1/users/{owner[0]}/password", json={"password": PASSWORD}).status_code == 204
    browser = Browser(hub)
    browser.log_in(owner[0])
    assert browser.enter(lab["id"], "api/status").status_code == 200
    host = browser.host_of(lab["id"])
    kernel = hub_sessions.start_kernel(lab["id"], owner[1])
    url = f"ws://{host}/s/{lab['id']}/api/kernels/{kernel}/channels"
    headers = {"Cookie": f"beamhub-entry={browser.jars[host]['beamhub-entry']}", "Origin": f"http://{host}"}

    async def held_open() -> float:
        async with websockets.connect(url, host="127.0.0.1", port=hub.port, additional_headers=headers,
                                      open_timeout=10) as ws:
            page = await asyncio.to_thread(browser.request, "GET", "/")
            csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
            ended = await asyncio.to_thread(browser.request, "POST", "/logout", data={"csrf_token": csrf})
            assert ended.status_code in (200, 303)
            return await seconds_until_closed(ws)

    assert asyncio.run(held_open()) < 5
    browser.close()


def test_disabling_a_user_ends_their_access_through_the_proxy_within_seconds(hub: Any, hub_sessions: Any) -> None:
    name, token = hub.create_user()
    session = hub_sessions.running(hub.admin_token, user=name, kind="command", command="python3", args=["-c", ECHO],
                                   memory="128Mi", ncores=0.1)
    wait_for((Path("/run/beamhub") / session["id"] / "http.sock").exists, 15, "the echo server to listen")
    with hub.client(token) as client:
        assert [client.get(f"/s/{session['id']}/echo").status_code for _ in range(3)][-1] == 200
        disabled = time.monotonic()
        assert hub.admin.patch(f"/api/v1/users/{name}", json={"state": "disabled"}).status_code == 200
        while (status := client.get(f"/s/{session['id']}/echo").status_code) == 200:
            assert time.monotonic() - disabled < 5, "still served 5 s after the user was disabled"
            time.sleep(0.2)
        assert status == 403
