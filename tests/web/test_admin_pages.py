"""The administration pages: only administrators get them; an administrator stops anyone's session, disables a user,
manages groups and workstations through the forms, and reads the audit log; every page speaks Chinese."""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

ADMIN_PAGES = ["/admin", "/admin/sessions", "/admin/users", "/admin/groups", "/admin/workstations", "/admin/audit"]
SLEEP = {"kind": "command", "command": "sleep", "args": ["600"], "ncores": 0.1, "memory": "64Mi", "runtime": 600}


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def post_form(client: httpx.Client, path: str, **fields: Any) -> httpx.Response:
    return client.post(path, data={**fields, "csrf_token": csrf_of(client.get("/"))})


@pytest.fixture(scope="module")
def admin_name(hub: Any, new_user: Callable[[], str]) -> str:
    """An administrator who signs in with the password."""
    username = new_user()
    answer = hub.admin.patch(f"/api/v1/users/{username}", json={"roles": ["admin"]})
    assert answer.status_code == 200, answer.text
    return username


@pytest.fixture
def admin(browser: Any, admin_name: str) -> httpx.Client:
    return browser(admin_name)


def test_someone_who_is_not_an_administrator_gets_403_on_every_admin_page(browser: Any, new_user: Any) -> None:
    client = browser(new_user())
    for path in ADMIN_PAGES:
        page = client.get(path)
        assert page.status_code == 403 and "Not allowed" in page.text and "this needs an administrator" in page.text
    for path in ("/admin/workstations", "/admin/groups", "/admin/sessions/0000/stop"):
        assert post_form(client, path, ip="10.9.9.9", name="sneaky").status_code == 403
    assert 'href="/admin"' not in client.get("/").text


def test_the_overview_shows_the_nodes_capacity_and_use(admin: httpx.Client) -> None:
    page = admin.get("/admin")
    assert page.status_code == 200 and "Node capacity and use" in page.text
    assert "of 4 in use" in page.text and "of 8 GiB in use" in page.text and "<meter" in page.text


def test_an_administrator_stops_another_users_session(hub: Any, admin: httpx.Client) -> None:
    username, token = hub.create_user()
    created = hub.client(token).post("/api/v1/sessions", json=SLEEP)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    hub.wait_for_state(session_id, {"running"})
    page = admin.get("/admin/sessions")
    row = page.text.split(f'data-session="{session_id}"')[1].split("</tr>")[0]
    assert f"<td>{username}</td>" in row and f'action="/admin/sessions/{session_id}/stop"' in row
    stopped = post_form(admin, f"/admin/sessions/{session_id}/stop")
    assert stopped.status_code == 303 and stopped.headers["location"] == "/admin/sessions"
    assert hub.wait_for_state(session_id, {"stopped"})["state"] == "stopped"
    assert f'data-session="{session_id}" data-state="stopped"' in admin.get("/admin/sessions").text


def test_a_disabled_user_is_refused_and_enabled_again(hub: Any, browser: Any, new_user: Any,
                                                         admin: httpx.Client) -> None:
    username = new_user()
    user = browser(username)
    assert f'data-user="{username}" data-state="active"' in admin.get("/admin/users").text
    disabled = post_form(admin, f"/admin/users/{username}/state", state="disabled")
    assert disabled.status_code == 303 and "The user is disabled" in admin.get(disabled.headers["location"]).text
    refused = user.get("/")
    assert refused.status_code == 403 and "account disabled" in refused.text
    assert post_form(admin, f"/admin/users/{username}/state", state="active").status_code == 303
    assert browser(username).get("/").status_code == 200
    assert post_form(admin, f"/admin/users/{username}/roles", roles="staff").status_code == 303
    assert hub.admin.get(f"/api/v1/users/{username}").json()["roles"] == ["staff", "user"]


@pytest.fixture
def group_name() -> Iterator[str]:
    """A name for a new group; its system group is removed at the end (beamhub has no way to delete groups)."""
    name = f"g{secrets.token_hex(3)}"
    yield name
    subprocess.run(["groupdel", name], capture_output=True)


def test_a_group_is_created_and_its_members_changed(hub: Any, admin: httpx.Client, new_user: Any,
                                                    group_name: str) -> None:
    member, name = new_user(), group_name
    assert post_form(admin, "/admin/groups", name=name, description="Tomography team").status_code == 303
    assert post_form(admin, f"/admin/groups/{name}/members", username=member).status_code == 303
    assert name in hub.admin.get(f"/api/v1/users/{member}").json()["groups"]
    section = admin.get("/admin/groups").text.split(f'data-group="{name}"')[1].split("</section>")[0]
    assert f'data-member="{member}"' in section and "Tomography team" in section
    unknown = post_form(admin, f"/admin/groups/{name}/members", username="nobody-here")
    assert unknown.status_code == 404 and "no user nobody-here" in unknown.text
    bad = post_form(admin, "/admin/groups", name="Bad Name!")
    assert bad.status_code == 422 and "A group name has lowercase letters" in bad.text
    assert post_form(admin, f"/admin/groups/{name}/members/{member}/remove").status_code == 303
    assert name not in hub.admin.get(f"/api/v1/users/{member}").json()["groups"]


def test_a_workstation_is_registered_and_edited_through_the_forms(hub: Any, admin: httpx.Client) -> None:
    ip = f"10.77.{len(hub.admin.get('/uniqueipinfo/').json())}.5"
    registered = post_form(admin, "/admin/workstations", ip=f" {ip} ", beamline="b7", description="hutch PC")
    assert registered.status_code == 303
    assert {"sourceip": ip, "beamline": "b7", "description": "hutch PC", "sessionid": None} in \
        hub.admin.get("/uniqueipinfo/").json()
    assert post_form(admin, "/admin/workstations/update", ip=ip, beamline="b7",
                     description="control room").status_code == 303
    row = admin.get("/admin/workstations").text.split(f'data-workstation="{ip}"')[1].split("</tr>")[0]
    assert 'value="control room"' in row
    again = post_form(admin, "/admin/workstations", ip=ip)
    assert again.status_code == 409 and f"workstation {ip} is already registered" in again.text
    wrong = post_form(admin, "/admin/workstations", ip="10.1.2", beamline="b9")
    assert wrong.status_code == 422 and "10.1.2 is not an IP address" in wrong.text and 'value="b9"' in wrong.text


def test_the_audit_log_shows_the_administrators_login(admin: httpx.Client, admin_name: str) -> None:
    page = admin.get("/admin/audit", params={"actor": admin_name, "action": "login"})
    assert page.status_code == 200 and 'data-action="login"' in page.text and admin_name in page.text
    none = admin.get("/admin/audit", params={"actor": "nobody-at-all"})
    assert "No event matches these filters" in none.text
    wrong = admin.get("/admin/audit", params={"since": "yesterday"})
    assert wrong.status_code == 422 and "A date is written like 2026-01-31." in wrong.text


def test_admin_forms_without_the_csrf_token_are_refused(hub: Any, admin: httpx.Client) -> None:
    refused = admin.post("/admin/workstations", data={"ip": "10.66.6.6"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert "10.66.6.6" not in {w["sourceip"] for w in hub.admin.get("/uniqueipinfo/").json()}
    assert admin.post("/admin/groups", data={"name": "nocsrf", "csrf_token": "forged"}).status_code == 403


@pytest.mark.parametrize(("path", "heading"), [
    ("/admin", "管理"), ("/admin/sessions", "所有会话"), ("/admin/users", "用户"), ("/admin/groups", "组"),
    ("/admin/workstations", "线站工作站"), ("/admin/audit", "审计日志")])
def test_every_admin_page_speaks_chinese(admin: httpx.Client, path: str, heading: str) -> None:
    admin.cookies.set("beamhub-lang", "zh_CN")
    page = admin.get(path)
    assert page.status_code == 200 and f"<h1>{heading}</h1>" in page.text
