"""Keeping users apart at the session boundary, attacked as users would: a session is served on its own origin and
entered only by its owner, with a cookie of that origin that stands only while the login behind it does; the proxy
talks only to the program beamhub started; a session cannot set beamhub's cookies."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

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
        """Open a session's page from the console, following the redirects to its own origin."""
        response = self.request("GET", f"/s/{session_id}/{path}")
        on: str | None = None
        for _ in range(3):
            if response.status_code != 303:
                return response
            target = urlsplit(response.headers["location"])
            if target.hostname:  # a relative location stays on the origin it came from
                on = target.hostname.split(".")[0] if target.hostname.endswith(".sessions.localhost") else None
            response = self.request("GET", target.path + (f"?{target.query}" if target.query else ""), on)
        return response

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def hub(make_module_hub: Any) -> Any:
    """The module's server, with room for the sessions its tests hold at once (the host has two cores)."""
    return make_module_hub(BEAMHUB_NODE_CPUS="8", BEAMHUB_NODE_MEMORY="8Gi")


@pytest.fixture(scope="module")
def people(hub: Any) -> dict[str, tuple[str, str]]:
    """alice (owns the session), bob (another user), staff of beamline b7, an administrator: (name, token)."""
    made = {"alice": hub.create_user(), "bob": hub.create_user(),
            "staff": hub.create_user(roles=["staff"], beamlines=["b7"]), "admin": hub.create_user(roles=["admin"])}
    for name, _ in made.values():
        answer = hub.admin.put(f"/api/v1/users/{name}/password", json={"password": PASSWORD})
        assert answer.status_code == 204, answer.text
    return made


@pytest.fixture(scope="module")
def echo(hub: Any, hub_sessions: Any, people: dict[str, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """alice's running echo session, held by beamline b7's workstation so that b7's staff manage it."""
    registered = hub.admin.post("/uniqueipinfo/", json={"sourceip": "192.0.2.77", "beamline": "b7"})
    assert registered.status_code == 201, registered.text
    session = hub_sessions.running(hub.admin_token, user=people["alice"][0], kind="command", command="python3",
                                   args=["-c", ECHO], memory="128Mi", source_ip="192.0.2.77")
    yield session
    hub_sessions.stop(session["id"])


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


def test_the_owner_enters_on_the_sessions_own_origin_with_a_cookie_of_that_origin(
        hub: Any, people: dict[str, tuple[str, str]], echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    first = browser.request("GET", f"/s/{echo['id']}/echo?x=1")
    assert first.status_code == 303
    target = urlsplit(first.headers["location"])
    assert target.netloc == f"{echo['id']}.sessions.localhost:{hub.port}"
    assert target.path == "/_beamhub/enter"
    assert "beamhub-session" not in first.headers["location"]
    response = browser.enter(echo["id"], "echo?x=1")
    assert response.status_code == 200, response.text
    seen = wait_answering(browser, echo["id"]).json()
    assert seen["path"] == f"/s/{echo['id']}/echo"
    assert "beamhub" not in seen["cookie"]  # neither the console's cookie nor the entry cookie reach the program
    session_jar = browser.jars[browser.host_of(echo["id"])]
    assert list(session_jar) == ["beamhub-entry"]
    assert session_jar["beamhub-entry"] != browser.jars[browser.host_of(None)]["beamhub-session"]
    browser.close()


def test_a_one_time_code_works_once(hub: Any, people: dict[str, tuple[str, str]], echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    location = urlsplit(browser.request("GET", f"/s/{echo['id']}/echo").headers["location"])
    enter = f"{location.path}?{location.query}"
    assert browser.request("GET", enter, echo["id"]).status_code == 303
    thief = Browser(hub)
    again = thief.request("GET", enter, echo["id"])
    assert again.status_code == 401
    assert "used or expired" in again.json()["detail"]
    browser.close()
    thief.close()


def test_the_console_origin_never_serves_a_session_to_a_browser(hub: Any, people: dict[str, tuple[str, str]],
                                                                echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    post = browser.request("POST", f"/s/{echo['id']}/echo", headers={"Origin": browser.hub.url})
    assert post.status_code == 403
    assert "own origin" in post.json()["detail"]
    browser.close()


def test_a_token_in_a_cookie_is_no_credential(hub: Any, people: dict[str, tuple[str, str]]) -> None:
    """beamhub sets no token cookie: one in a browser was put there by another site (a sibling session's page
    setting it for a parent domain), so it must not sign anyone in."""
    planted = {"Cookie": f"beamhub-token={people['bob'][1]}"}
    assert httpx.get(f"{hub.url}/api/v1/me", headers=planted).status_code == 401
    assert httpx.post(f"{hub.url}/api/v1/users/{people['bob'][0]}/tokens", json={"name": "x"},
                      headers=planted).status_code == 401


def test_tossed_entry_cookies_are_refused(hub: Any, people: dict[str, tuple[str, str]],
                                          echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    browser.enter(echo["id"])
    mine = browser.jars[browser.host_of(echo["id"])]["beamhub-entry"]
    both = {"Cookie": f"beamhub-entry={mine}; beamhub-entry=tossed", "Host": browser.host_of(echo["id"])}
    response = browser.http.get(f"/s/{echo['id']}/echo", headers=both)
    assert response.status_code == 401
    assert "another site" in response.json()["detail"]
    browser.close()


def test_a_sessions_pages_may_not_be_framed_by_other_pages(hub: Any, people: dict[str, tuple[str, str]],
                                                         echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    answer = browser.enter(echo["id"])
    assert answer.status_code == 200
    assert "frame-ancestors 'self'" in answer.headers.get_list("content-security-policy")
    browser.close()


def test_a_sessions_origin_serves_nothing_of_the_console(hub: Any, people: dict[str, tuple[str, str]],
                                                         echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    browser.enter(echo["id"])
    for path in ("/api/v1/users", "/", "/keys", "/login", "/api/v1/sessions"):
        response = browser.request("GET", path, echo["id"], headers={"Authorization": f"Bearer {people['admin'][1]}"})
        assert response.status_code == 404, path
    browser.close()


def test_an_entry_cookie_opens_its_own_session_only(hub: Any, hub_sessions: Any, people: dict[str, tuple[str, str]],
                                                   echo: dict[str, Any]) -> None:
    other = hub_sessions.running(people["alice"][1], kind="command", command="sleep", args=["600"],
                                 memory="64Mi", ncores=0.1)
    try:
        browser = browser_of(hub, people, "alice")
        browser.enter(echo["id"])
        cookie = browser.jars[browser.host_of(echo["id"])]["beamhub-entry"]
        browser.jars[browser.host_of(other["id"])] = {"beamhub-entry": cookie}
        response = browser.request("GET", f"/s/{other['id']}/echo", other["id"])
        assert response.status_code == 401
        wrong_path = browser.request("GET", f"/s/{other['id']}/echo", echo["id"])
        assert wrong_path.status_code == 404
        browser.close()
    finally:
        hub_sessions.stop(other["id"])


@pytest.mark.parametrize("who", ["admin", "staff", "bob"])
def test_only_the_owner_enters(hub: Any, people: dict[str, tuple[str, str]], echo: dict[str, Any], who: str) -> None:
    browser = browser_of(hub, people, who)
    response = browser.request("GET", f"/s/{echo['id']}/echo")
    assert response.status_code == 403, response.text
    assert not any(host.endswith(f".sessions.localhost:{hub.port}") for host in browser.jars)
    with hub.client(people[who][1]) as client:
        assert client.get(f"/s/{echo['id']}/echo").status_code == 403
    browser.close()


def test_staff_still_see_and_stop_what_they_cannot_enter(hub: Any, people: dict[str, tuple[str, str]],
                                                         echo: dict[str, Any]) -> None:
    with hub.client(people["staff"][1]) as client:
        assert client.get(f"/api/v1/sessions/{echo['id']}").status_code == 200
        assert client.patch(f"/api/v1/sessions/{echo['id']}", json={"runtime": 3600}).status_code == 200


def test_another_sessions_pages_cannot_use_the_entry_cookie(hub: Any, people: dict[str, tuple[str, str]],
                                                           echo: dict[str, Any]) -> None:
    """Sessions' origins are same-site (siblings under sessions.localhost), so SameSite does not stop them."""
    browser = browser_of(hub, people, "alice")
    browser.enter(echo["id"])
    evil = f"http://0123456789abcdef.sessions.localhost:{hub.port}"
    post = browser.request("POST", f"/s/{echo['id']}/echo", echo["id"], headers={"Origin": evil})
    assert post.status_code == 403
    fetch = browser.request("GET", f"/s/{echo['id']}/echo", echo["id"],
                            headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"})
    assert fetch.status_code == 403
    own = browser.request("POST", f"/s/{echo['id']}/echo", echo["id"],
                          headers={"Origin": f"http://{browser.host_of(echo['id'])}"})
    assert own.status_code == 200
    browser.close()


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


def test_tossed_console_cookies_are_refused(hub: Any, people: dict[str, tuple[str, str]]) -> None:
    """A sibling host can set a cookie of the console's name for a parent domain; the browser then sends two."""
    browser = browser_of(hub, people, "alice")
    mine = browser.jars[browser.host_of(None)]["beamhub-session"]
    response = browser.http.get("/api/v1/sessions", headers={"Cookie": f"beamhub-session=tossed; "
                                                                        f"beamhub-session={mine}"})
    assert response.status_code == 401
    assert "another site" in response.json()["detail"]
    browser.close()


def test_no_other_user_can_stand_in_for_a_starting_session(hub: Any, hub_sessions: Any,
                                                           people: dict[str, tuple[str, str]],
                                                           echo: dict[str, Any]) -> None:
    """The program answers on a Unix socket in a directory only its user (and beamhub) may enter: a neighbour
    cannot bind there first, nor connect to it."""
    runtime = Path("/run/beamhub") / echo["id"]
    stat = runtime.stat()
    assert stat.st_mode & 0o777 == 0o700
    assert stat.st_uid == pwd.getpwnam(people["alice"][0]).pw_uid
    squatter = pwd.getpwnam(people["bob"][0])
    attempt = textwrap.dedent(f"""
        import socket
        for action, path in (("bind", {str(runtime / "squat.sock")!r}), ("connect", {str(runtime / "http.sock")!r})):
            try:
                getattr(socket.socket(socket.AF_UNIX), action)(path)
                print(action, "succeeded")
            except PermissionError:
                print(action, "refused")
    """)
    result = subprocess.run(["setpriv", f"--reuid={squatter.pw_uid}", f"--regid={squatter.pw_gid}", "--clear-groups",
                             "/usr/bin/python3", "-c", attempt], capture_output=True, text=True, timeout=30)
    assert result.stdout.split("\n")[:2] == ["bind refused", "connect refused"], result.stdout + result.stderr
    assert not os.path.exists(runtime / "squat.sock")


async def seconds_until_closed(ws: Any) -> float:
    """How long the websocket stays open from now (it must close within 10 s)."""
    started = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    return time.monotonic() - started


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


def test_a_browser_at_an_ended_sessions_origin_is_sent_to_its_page_in_the_console(
        hub: Any, hub_sessions: Any, people: dict[str, tuple[str, str]]) -> None:
    session = hub_sessions.running(hub.admin_token, user=people["alice"][0], kind="command", command="python3",
                                   args=["-c", ECHO], memory="128Mi", ncores=0.1)
    browser = browser_of(hub, people, "alice")
    try:
        browser.enter(session["id"])
        assert wait_answering(browser, session["id"]).status_code == 200
        hub_sessions.stop(session["id"])
        page = browser.request("GET", f"/s/{session['id']}/echo", session["id"], headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == f"{hub.url}/sessions/{session['id']}"
        script = browser.request("GET", f"/s/{session['id']}/echo", session["id"])
        assert script.status_code == 503 and script.json()["detail"].endswith("not running")
    finally:
        browser.close()
