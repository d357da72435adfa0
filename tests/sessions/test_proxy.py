"""The proxy at /s/{id}/... for API clients with a bearer token: only the owner reaches a session, with beamhub's
credential swapped for the session's private token, over HTTP and websockets, against a real JupyterLab."""

from __future__ import annotations

import asyncio
import pwd
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from helpers.waiting import wait_for

EMPTY_NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

# A command session that answers every GET with the request's path and headers, as JSON.
ECHO_SERVER = textwrap.dedent("""
    import http.server, json, os, socketserver
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Accel-Redirect", "/_protected/etc/shadow")
            self.send_header("Set-Cookie", "beamhub-session=swapped; Path=/")
            self.send_header("Set-Cookie", "beamhub-entry=swapped; Path=/")
            self.send_header("Set-Cookie", "tossed=1; Domain=localhost; Path=/")
            self.send_header("Set-Cookie", "theme=light; Path=/")
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
        def address_string(self):
            return "session"
    class Server(socketserver.UnixStreamServer):
        def get_request(self):
            request, _ = super().get_request()
            return request, ("session", 0)
    Server(os.environ["BEAMHUB_SOCKET"], Echo).serve_forever()
""")


def status_url(session: dict[str, Any]) -> str:
    return f"/s/{session['id']}/api/status"


def test_owner_reaches_jupyterlab_with_a_bearer_token(hub: Any, owner: tuple[str, str],
                                                      lab: dict[str, Any]) -> None:
    with hub.client(owner[1]) as client:
        response = client.get(status_url(lab))
    assert response.status_code == 200, response.text
    assert "kernels" in response.json()


def test_the_console_origin_sandboxes_what_a_session_answers(hub: Any, owner: tuple[str, str],
                                                              lab: dict[str, Any]) -> None:
    with hub.client(owner[1]) as client:
        response = client.get(f"/s/{lab['id']}/lab")
    assert response.status_code == 200
    policies = response.headers.get_list("content-security-policy")  # a browser enforces every one of them
    assert any(policy.startswith("sandbox") and "allow-same-origin" not in policy for policy in policies)


def test_an_admin_does_not_enter_a_users_session(hub: Any, lab: dict[str, Any]) -> None:
    response = hub.admin.get(status_url(lab))
    assert response.status_code == 403
    assert "only" in response.json()["detail"]


def test_another_user_is_forbidden(hub: Any, lab: dict[str, Any]) -> None:
    _, stranger = hub.create_user()
    with hub.client(stranger) as client:
        response = client.get(status_url(lab))
    assert response.status_code == 403
    assert "another user" in response.json()["detail"]


def test_no_credentials_is_unauthenticated(hub: Any, lab: dict[str, Any]) -> None:
    with hub.client() as client:
        assert client.get(status_url(lab)).status_code == 401
    with hub.client("not-a-token") as client:
        assert client.get(status_url(lab)).status_code == 401


def test_a_session_that_is_not_running_is_unavailable(hub: Any, hub_sessions: Any, owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], kind="command", command="sleep", args=["600"], ncores=0.1,
                                   memory="64Mi")
    hub_sessions.stop(session["id"])
    with hub.client(owner[1]) as client:
        response = client.get(status_url(session))
    assert response.status_code == 503
    assert "stopped" in response.json()["detail"]


def test_an_unknown_session_is_not_found(hub: Any, owner: tuple[str, str]) -> None:
    with hub.client(owner[1]) as client:
        assert client.get("/s/0123456789abcdef/api/status").status_code == 404


def test_the_private_token_never_reaches_the_client(hub: Any, hub_sessions: Any, owner: tuple[str, str],
                                                    lab: dict[str, Any]) -> None:
    private = hub_sessions.private_token(lab["id"])
    assert private and private != owner[1]
    with hub.client(owner[1]) as client:
        seen = [client.get(f"/api/v1/sessions/{lab['id']}"), client.get("/api/v1/sessions"),
                client.get(status_url(lab)), client.get(f"/s/{lab['id']}/lab"),
                client.get(f"/s/{lab['id']}/api/me")]
    for response in seen:
        assert response.status_code == 200, (response.request.url, response.text)
        assert private not in response.text
        assert all(private not in value for value in response.headers.values())


def test_the_upstream_gets_the_session_token_and_never_beamhubs(hub: Any, hub_sessions: Any,
                                                                 owner: tuple[str, str]) -> None:
    session = hub_sessions.running(owner[1], kind="command", command="python3", args=["-c", ECHO_SERVER],
                               memory="128Mi")
    try:
        echo = wait_for(lambda: _echo(hub, session["id"], owner[1]), 15, "the echo server to answer")
        headers = {k.lower(): v for k, v in echo["headers"].items()}
        assert echo["path"] == f"/s/{session['id']}/echo?x=1"
        assert headers["authorization"] == f"token {hub_sessions.private_token(session['id'])}"
        assert headers["cookie"] == "theme=dark"  # neither beamhub-token nor the entry cookie
        assert all(owner[1] not in value for value in headers.values())
    finally:
        hub_sessions.stop(session["id"])


def _echo(hub: Any, session_id: str, token: str) -> dict[str, Any] | None:
    """What the echo server saw of a request carrying both beamhub credentials and another cookie."""
    cookies = f"beamhub-token={token}; beamhub-entry=x; theme=dark"
    with httpx.Client(base_url=hub.url, timeout=30,
                      headers={"Authorization": f"Bearer {token}", "Cookie": cookies}) as client:
        response = client.get(f"/s/{session_id}/echo", params={"x": "1"})
    if response.status_code == 502:  # the command runs before its server listens
        return None
    assert response.status_code == 200, response.text
    assert "x-accel-redirect" not in response.headers  # a session must never steer an nginx in front of beamhub
    set_cookies = response.headers.get_list("set-cookie")
    assert set_cookies == ["theme=light; Path=/"]  # never beamhub's cookies, never beyond the session's host
    return response.json()


def test_a_notebook_saved_through_the_proxy_belongs_to_the_user(hub: Any, owner: tuple[str, str],
                                                                lab: dict[str, Any]) -> None:
    with hub.client(owner[1]) as client:
        saved = client.put(f"/s/{lab['id']}/api/contents/x.ipynb",
                           json={"type": "notebook", "format": "json", "content": EMPTY_NOTEBOOK})
        assert saved.status_code == 201, saved.text
        read = client.get(f"/s/{lab['id']}/api/contents/x.ipynb")
    assert read.status_code == 200
    assert read.json()["content"]["nbformat"] == 4
    account = pwd.getpwnam(owner[0])
    assert (Path(account.pw_dir) / "x.ipynb").stat().st_uid == account.pw_uid


def test_a_kernel_reached_through_the_proxy_runs_as_the_user(hub_sessions: Any, owner: tuple[str, str],
                                                             lab: dict[str, Any]) -> None:
    printed = hub_sessions.execute(lab["id"], owner[1], "import os; print(os.getuid())")
    assert printed.strip() == str(pwd.getpwnam(owner[0]).pw_uid)


def test_a_kernel_websocket_of_another_user_is_refused(hub: Any, hub_sessions: Any, owner: tuple[str, str],
                                                       lab: dict[str, Any]) -> None:
    kernel_id = hub_sessions.start_kernel(lab["id"], owner[1])
    _, stranger = hub.create_user()
    url = hub_sessions.channels_url(lab["id"], kernel_id)
    assert _websocket_refusal(url, {"Authorization": f"Bearer {stranger}"}) == 403
    assert _websocket_refusal(url, {}) == 403
    assert _websocket_refusal(url, {"Cookie": f"beamhub-token={owner[1]}"}) == 403  # no credential at all


def _websocket_refusal(url: str, headers: dict[str, str]) -> int:
    """The HTTP status with which a websocket handshake is refused."""

    async def connect() -> int:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=headers, open_timeout=10):
                pass
        return refused.value.response.status_code

    return asyncio.run(connect())
