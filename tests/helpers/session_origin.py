"""A browser's view of beamhub's two kinds of origin, and the people and echo session the tests of the session
boundary share (tests/sessions/test_isolation.py, test_revocation.py, test_banner.py)."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from helpers.waiting import wait_for

PASSWORD = "correct horse battery"

# A command session that answers every request with its method, path and the cookies it was sent, as JSON,
# on the session's Unix socket.
ECHO = textwrap.dedent("""
    import http.server, json, os, socketserver
    class Echo(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = json.dumps({"method": self.command, "path": self.path,
                               "cookie": self.headers.get("Cookie", "")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = answer
        def log_message(self, *args):
            pass
    class Server(socketserver.UnixStreamServer):
        def get_request(self):
            request, _ = super().get_request()
            return request, ("session", 0)
    Server(os.environ["BEAMHUB_SOCKET"], Echo).serve_forever()
""")


class Browser:
    """What a browser does with beamhub's two kinds of origin, over loopback: the console at the server's URL,
    each session at {id}.sessions.localhost on the same port (Chromium resolves *.localhost itself; here the Host
    header says which origin a request is for), with cookies kept per host as a browser keeps them."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.http = httpx.Client(base_url=hub.url, timeout=30, follow_redirects=False)
        self.jars: dict[str, dict[str, str]] = {}

    def host_of(self, session_id: str | None) -> str:
        return f"{session_id}.sessions.localhost:{self.hub.port}" if session_id else f"127.0.0.1:{self.hub.port}"

    def request(self, method: str, path: str, session_id: str | None = None, **kwargs: Any) -> httpx.Response:
        host = self.host_of(session_id)
        cookies = "; ".join(f"{k}={v}" for k, v in self.jars.get(host, {}).items())
        headers = {"Host": host, **({"Cookie": cookies} if cookies else {}), **kwargs.pop("headers", {})}
        response = self.http.request(method, path, headers=headers, **kwargs)
        for line in response.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";")[0]
            jar = self.jars.setdefault(host, {})
            if "max-age=0" in line.lower() or not value.strip('"'):
                jar.pop(name, None)
            else:
                jar[name] = value
        return response

    def log_in(self, username: str) -> None:
        page = self.request("GET", "/login")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = self.request("POST", "/login", data={"username": username, "password": PASSWORD,
                                                      "csrf_token": csrf, "method": "password", "next": "/"})
        assert answer.status_code == 303, answer.text
        assert "beamhub-session" in self.jars[self.host_of(None)]

    def enter(self, session_id: str, path: str = "echo") -> httpx.Response:
        """Open a session's page from the console, following the redirects between the two origins."""
        return self.follow(self.request("GET", f"/s/{session_id}/{path}"))

    def follow(self, response: httpx.Response, on: str | None = None, until: str | None = None) -> httpx.Response:
        """Follow redirects as a browser does, each on the origin it names (`on`: the session whose origin answered
        first, None for the console's); stop before a location whose path is `until`."""
        for _ in range(6):
            if response.status_code != 303:
                return response
            target = urlsplit(response.headers["location"])
            if target.path == until:
                return response
            if target.hostname:  # a relative location stays on the origin it came from
                on = target.hostname.split(".")[0] if target.hostname.endswith(".sessions.localhost") else None
            response = self.request("GET", target.path + (f"?{target.query}" if target.query else ""), on)
        return response

    def code_link(self, session_id: str, path: str = "echo") -> str:
        """The console's link with a one-time code into a session, asked for by this browser (not yet used)."""
        response = self.follow(self.request("GET", f"/s/{session_id}/{path}"), until="/_beamhub/enter")
        location = urlsplit(response.headers["location"])
        assert location.path == "/_beamhub/enter", response.headers["location"]
        return f"{location.path}?{location.query}"

    def close(self) -> None:
        self.http.close()


def make_people(hub: Any) -> dict[str, tuple[str, str]]:
    """alice (owns the session), bob (another user), staff of beamline b7, an administrator: (name, token)."""
    made = {"alice": hub.create_user(), "bob": hub.create_user(),
            "staff": hub.create_user(roles=["staff"], beamlines=["b7"]), "admin": hub.create_user(roles=["admin"])}
    for name, _ in made.values():
        answer = hub.admin.put(f"/api/v1/users/{name}/password", json={"password": PASSWORD})
        assert answer.status_code == 204, answer.text
    return made


def start_echo(hub: Any, kit: Any, owner: str) -> dict[str, Any]:
    """A running echo session of `owner`, held by beamline b7's workstation so that b7's staff manage it."""
    registered = hub.admin.post("/uniqueipinfo/", json={"sourceip": "192.0.2.77", "beamline": "b7"})
    assert registered.status_code == 201, registered.text
    session = kit.running(hub.admin_token, user=owner, kind="command", command="python3", args=["-c", ECHO],
                          memory="128Mi", ncores=0.1, source_ip="192.0.2.77")
    socket = Path("/run/beamhub") / session["id"] / "http.sock"  # "running" comes before the program listens
    wait_for(socket.exists, 15, "the echo server to listen")
    return session


def browser_of(hub: Any, people: dict[str, tuple[str, str]], who: str) -> Browser:
    browser = Browser(hub)
    browser.log_in(people[who][0])
    return browser


def wait_answering(browser: Browser, session_id: str) -> httpx.Response:
    deadline = time.monotonic() + 15
    while (response := browser.request("GET", f"/s/{session_id}/echo", session_id)).status_code == 502:
        assert time.monotonic() < deadline, "the echo server never answered"
        time.sleep(0.2)
    return response


def refused_within(seconds: float, request: Any) -> bool:
    """Whether a request repeated for `seconds` comes to be refused with 401 (and never answers another error)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = request().status_code
        if status == 401:
            return True
        assert status == 200, status
        time.sleep(0.2)
    return False


async def seconds_until_closed(ws: Any) -> float:
    """How long the websocket stays open from now (it must close within 10 s)."""
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    return time.monotonic() - started
