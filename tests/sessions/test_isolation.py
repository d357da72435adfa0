"""Keeping users apart at the session boundary, attacked as users would: a session is served on its own origin and
entered only by its owner, with a cookie of that origin; the proxy talks only to the program beamhub started; a
session cannot set beamhub's cookies. How access ends (logout, revocation) is in test_revocation.py."""

from __future__ import annotations

import os
import pwd
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from helpers.session_origin import ECHO, browser_of, make_people, start_echo, wait_answering


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


def test_the_owner_enters_on_the_sessions_own_origin_with_a_cookie_of_that_origin(
        hub: Any, people: dict[str, tuple[str, str]], echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    first = browser.request("GET", f"/s/{echo['id']}/echo?x=1")
    assert first.status_code == 303
    target = urlsplit(first.headers["location"])
    assert (target.netloc, target.path, target.query) == (browser.host_of(echo["id"]), f"/s/{echo['id']}/echo", "x=1")
    to_console = urlsplit(browser.request("GET", f"/s/{echo['id']}/echo?x=1", echo["id"]).headers["location"])
    assert (to_console.netloc, to_console.path) == (browser.host_of(None), f"/sessions/{echo['id']}/enter")
    with_code = browser.follow(browser.request("GET", f"{to_console.path}?{to_console.query}"))
    assert with_code.status_code == 200, with_code.text
    seen = wait_answering(browser, echo["id"]).json()
    assert seen["path"] == f"/s/{echo['id']}/echo"
    assert "beamhub" not in seen["cookie"]  # neither the console's cookie nor the entry cookie reach the program
    session_jar = browser.jars[browser.host_of(echo["id"])]
    assert sorted(session_jar) == ["beamhub-entry", "beamhub-entry-state"]
    assert session_jar["beamhub-entry"] != browser.jars[browser.host_of(None)]["beamhub-session"]
    browser.close()


def test_a_one_time_code_works_once(hub: Any, people: dict[str, tuple[str, str]], echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    enter = browser.code_link(echo["id"])
    assert browser.request("GET", enter, echo["id"]).status_code == 303
    again = browser.request("GET", enter, echo["id"])
    assert again.status_code == 401
    assert "used" in again.json()["detail"]
    browser.close()


def test_a_code_works_only_in_the_browser_that_asked_for_it(hub: Any, people: dict[str, tuple[str, str]],
                                                             echo: dict[str, Any]) -> None:
    """Login CSRF: alice asks for a code into her own session and sends the link to bob; bob's browser (with or
    without an entry state of its own) is not let into alice's session, so her pages never run as bob's visit."""
    alice = browser_of(hub, people, "alice")
    link = alice.code_link(echo["id"])
    bob = browser_of(hub, people, "bob")
    assert bob.request("GET", link, echo["id"]).status_code == 401
    bob.request("GET", f"/s/{echo['id']}/echo", echo["id"])  # bob's browser now holds a state of its own
    assert "beamhub-entry-state" in bob.jars[bob.host_of(echo["id"])]
    refused = bob.request("GET", link, echo["id"])
    assert refused.status_code == 401
    assert "another browser" in refused.json()["detail"]
    assert "beamhub-entry" not in bob.jars[bob.host_of(echo["id"])]
    assert alice.request("GET", link, echo["id"]).status_code == 303  # the refusals did not spend alice's code
    alice.close()
    bob.close()


def test_a_code_needs_the_state_it_was_asked_with(hub: Any, people: dict[str, tuple[str, str]],
                                                  echo: dict[str, Any]) -> None:
    browser = browser_of(hub, people, "alice")
    short = browser.request("GET", f"/sessions/{echo['id']}/enter?state=x&next=/s/{echo['id']}/echo")
    assert short.status_code == 422
    elsewhere = browser.request("GET", f"/sessions/{echo['id']}/enter?state={'s' * 43}&next=/s/other/echo")
    assert elsewhere.status_code == 422
    browser.close()


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


@pytest.mark.parametrize("host", ["{session}.sessions.localhost.", "127.0.0.1."])
def test_a_host_name_with_a_trailing_dot_is_served_nothing(hub: Any, people: dict[str, tuple[str, str]],
                                                           echo: dict[str, Any], host: str) -> None:
    """To a browser `x.sessions.localhost.` is an origin of its own: it must get neither the console nor a
    session."""
    name = host.format(session=echo["id"])
    for path in ("/login", "/api/v1/users", f"/s/{echo['id']}/echo"):
        response = httpx.get(f"{hub.url}{path}", headers={"Host": f"{name}:{hub.port}",
                                                          "Authorization": f"Bearer {people['admin'][1]}"})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["detail"] == "host names end without a dot"
    assert httpx.get(f"{hub.url}/login").status_code == 200
