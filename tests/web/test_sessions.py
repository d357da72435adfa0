"""The session pages: launch through the form, see it run on the dashboard, extend and stop it; refusals as pages."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

SLEEP = {"kind": "command", "command": "sleep", "args": "600", "ncores": "0.1", "memory": "0.0625", "gpus": "0",
         "hours": "1", "image": "default"}


def csrf(client: httpx.Client, path: str = "/") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)  # type: ignore[union-attr]


def launch(client: httpx.Client, **fields: str) -> httpx.Response:
    return client.post("/sessions", data={**SLEEP, **fields, "csrf_token": csrf(client, "/sessions/new")})


@pytest.fixture
def running(hub: Any, browser: Any, new_user: Any) -> tuple[httpx.Client, str]:
    """A logged-in browser and a running `sleep` session it started through the launch form."""
    client = browser(new_user())
    answer = launch(client)
    assert answer.status_code == 303, answer.text
    session_id = answer.headers["location"].rsplit("/", 1)[1]
    hub.wait_for_state(session_id, {"running"})
    return client, session_id


def test_the_launch_form_shows_the_limits_and_what_is_free(browser: Any, new_user: Any) -> None:
    page = browser(new_user()).get("/sessions/new?kind=command")
    assert page.status_code == 200
    assert re.search(r'<option value="command" selected>', page.text)
    assert "of 4 free" in page.text and "of 8 GiB free" in page.text and "at most 720 hours" in page.text
    assert 'name="csrf_token"' in page.text and 'name="command"' in page.text


def test_an_empty_dashboard_says_what_to_do(browser: Any, new_user: Any) -> None:
    page = browser(new_user()).get("/")
    assert "You have no sessions yet: start JupyterLab" in page.text
    assert 'href="/sessions/new?kind=jupyter"' in page.text


def test_a_session_launched_from_the_form_runs_and_shows_on_the_dashboard(hub: Any,
                                                                         running: tuple[httpx.Client, str]) -> None:
    client, session_id = running
    page = client.get(f"/sessions/{session_id}")
    assert page.status_code == 200 and "data-session-page" in page.text and "requested 0.1 cores" in page.text
    dashboard = client.get("/").text
    row = dashboard.split(f'data-session="{session_id}"')[1].split("</tr>")[0]
    assert 'data-state="running"' in row and "sleep" not in row.split("</td>")[0]
    assert ">running<" in row and "0.1" in row and "64 MiB" in row and "default" in row
    assert f'action="/sessions/{session_id}/stop"' in row and f'action="/sessions/{session_id}/extend"' in row


def test_a_session_is_stopped_with_the_dashboard_form(hub: Any, running: tuple[httpx.Client, str]) -> None:
    client, session_id = running
    answer = client.post(f"/sessions/{session_id}/stop", data={"csrf_token": csrf(client)})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert hub.wait_for_state(session_id, {"stopped"})["state"] == "stopped"
    dashboard = client.get("/").text
    assert "Recently ended" in dashboard and ">stopped<" in dashboard
    assert "No session of yours is running now" in dashboard


def test_a_form_without_the_csrf_token_is_refused(hub: Any, browser: Any,
                                                   running: tuple[httpx.Client, str]) -> None:
    client, session_id = running
    refused = client.post(f"/sessions/{session_id}/stop", data={"next": "/"})
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert "Not allowed" in refused.text and "CSRF" in refused.text
    assert client.post(f"/sessions/{session_id}/stop", data={"csrf_token": "forged"}).status_code == 403
    before = len(hub.admin.get("/api/v1/sessions").json())
    assert client.post("/sessions", data=SLEEP).status_code == 403
    assert len(hub.admin.get("/api/v1/sessions").json()) == before
    assert hub.admin.get(f"/api/v1/sessions/{session_id}").json()["state"] == "running"


def test_a_session_is_extended_with_the_dashboard_form(hub: Any, running: tuple[httpx.Client, str]) -> None:
    client, session_id = running
    before = datetime.fromisoformat(hub.admin.get(f"/api/v1/sessions/{session_id}").json()["expires_at"])
    answer = client.post(f"/sessions/{session_id}/extend",
                         data={"hours": "4", "next": f"/sessions/{session_id}", "csrf_token": csrf(client)})
    assert answer.status_code == 303 and answer.headers["location"] == f"/sessions/{session_id}"
    after = datetime.fromisoformat(hub.admin.get(f"/api/v1/sessions/{session_id}").json()["expires_at"])
    assert after - before == timedelta(hours=4)


@pytest.mark.parametrize(("language", "title", "why"), [
    ("en", "Not enough free resources", "100 cores requested, but this node has only 4 in all"),
    ("zh-CN", "空闲资源不足", "请求了100个 CPU 核，但本节点总共只有4个"),
])
def test_an_over_capacity_request_is_explained_on_the_form(browser: Any, new_user: Any, language: str,
                                                           title: str, why: str) -> None:
    client = browser(new_user(), language=language)
    page = launch(client, ncores="100", name="big-one")
    assert page.status_code == 409 and page.headers["content-type"].startswith("text/html")
    assert title in page.text and why in page.text
    assert 'value="big-one"' in page.text and 'value="100"' in page.text  # the form comes back as typed
    assert not page.text.lstrip().startswith("{")


def test_a_field_that_is_not_a_number_is_explained_in_the_users_language(browser: Any, new_user: Any) -> None:
    client = browser(new_user(), language="zh-CN")
    page = launch(client, memory="lots")
    assert page.status_code == 422 and "内存必须是以 GiB 为单位的数字" in page.text


def test_another_users_session_cannot_be_seen_or_stopped_from_the_pages(hub: Any, browser: Any, new_user: Any,
                                                                        running: tuple[httpx.Client, str]) -> None:
    _, session_id = running
    stranger = browser(new_user())
    refused = stranger.post(f"/sessions/{session_id}/stop", data={"csrf_token": csrf(stranger)})
    assert refused.status_code == 403 and "this session belongs to another user" in refused.text
    assert stranger.get(f"/sessions/{session_id}").status_code == 403
    assert session_id not in stranger.get("/").text
    assert stranger.get("/sessions/0000000000000000").status_code == 404
    assert hub.admin.get(f"/api/v1/sessions/{session_id}").json()["state"] == "running"


def test_the_dashboard_stream_tells_of_every_change_of_my_sessions(hub: Any, browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    token = csrf(client)
    with client.stream("GET", "/api/v1/sessions/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == ": listening"
        created = client.post("/sessions", data={**SLEEP, "csrf_token": token})
        session_id = created.headers["location"].rsplit("/", 1)[1]
        states = []
        for line in lines:
            if line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["session_id"] == session_id
                states.append(event["state"])
                if event["state"] == "running":
                    break
    assert states[0] == "pending" and states[-1] == "running"


def test_an_open_event_stream_ends_when_its_login_does(browser: Any, new_user: Any) -> None:
    """Logging out (like revoking a token or disabling the user) also ends the streams that login opened."""
    client = browser(new_user())
    token = csrf(client)
    with client.stream("GET", "/api/v1/sessions/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": listening"
        assert client.post("/logout", data={"csrf_token": token}).status_code == 303
        assert set(lines) <= {""}  # the server closes the stream (the client would time out after 30 s)
