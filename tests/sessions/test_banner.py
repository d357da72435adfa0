"""The banner inside a session's JupyterLab: its script is added to JupyterLab's pages on the session's own origin
only (never on the console's, never with the private token), and what it asks there (when the session ends, one
click to extend it) answers the owner alone, from the session's own pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from beamhub.sessions.proxy import with_script
from helpers.session_origin import PASSWORD, Browser

TAG = '<script src="/_beamhub/banner.js" defer></script>'


@pytest.fixture(scope="module")
def alice(hub: Any, owner: tuple[str, str], lab: dict[str, Any]) -> Iterator[Browser]:
    """The owner of `lab`, signed in, with its JupyterLab open on the session's own origin."""
    answer = hub.admin.put(f"/api/v1/users/{owner[0]}/password", json={"password": PASSWORD})
    assert answer.status_code == 204, answer.text
    browser = Browser(hub)
    browser.log_in(owner[0])
    page = browser.enter(lab["id"], "lab")
    assert page.status_code == 200, page.text
    yield browser
    browser.close()


def own_origin(browser: Browser, session_id: str) -> dict[str, str]:
    return {"Origin": f"http://{browser.host_of(session_id)}"}


def expiry(hub: Any, session_id: str) -> datetime:
    return datetime.fromisoformat(hub.admin.get(f"/api/v1/sessions/{session_id}").json()["expires_at"])


def test_jupyterlabs_pages_on_the_sessions_origin_carry_the_banner_script(alice: Browser, lab: dict[str, Any],
                                                                          hub_sessions: Any) -> None:
    page = alice.request("GET", f"/s/{lab['id']}/lab", lab["id"])
    assert page.status_code == 200, page.text
    assert page.text.count(TAG) == 1
    assert page.text.index(TAG) < page.text.index("</body>")
    assert hub_sessions.private_token(lab["id"]) not in page.text
    script = alice.request("GET", "/_beamhub/banner.js", lab["id"])
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "/_beamhub/extend" in script.text


def test_the_console_origins_answer_carries_no_banner(hub: Any, owner: tuple[str, str], lab: dict[str, Any]) -> None:
    with hub.client(owner[1]) as client:
        page = client.get(f"/s/{lab['id']}/lab")
        assert page.status_code == 200, page.text
        assert any(csp.startswith("sandbox") for csp in page.headers.get_list("content-security-policy"))
        assert "/_beamhub/banner.js" not in page.text
        assert client.get("/_beamhub/session").status_code == 404  # nothing of it on the console's origin


def test_the_session_answers_its_owner_on_its_own_origin(hub: Any, alice: Browser, lab: dict[str, Any]) -> None:
    answer = alice.request("GET", "/_beamhub/session", lab["id"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["state"] == "running"
    assert datetime.fromisoformat(body["expires_at"]) == expiry(hub, lab["id"])
    assert body["warnings"] == [900, 300]
    assert body["console_url"] == f"{hub.url}/sessions/{lab['id']}"
    assert "token" not in answer.text


def test_the_session_needs_the_entry_cookie_of_its_own_origin(hub: Any, alice: Browser, lab: dict[str, Any]) -> None:
    stranger = Browser(hub)
    assert stranger.request("GET", "/_beamhub/session", lab["id"]).status_code == 401
    stranger.close()
    cookie = alice.jars[alice.host_of(lab["id"])]["beamhub-entry"]
    elsewhere = alice.request("GET", "/_beamhub/session", "0123456789abcdef",
                              headers={"Cookie": f"beamhub-entry={cookie}"})
    assert elsewhere.status_code == 401
    sibling = {"Origin": f"http://0123456789abcdef.sessions.localhost:{hub.port}"}
    assert alice.request("GET", "/_beamhub/session", lab["id"], headers=sibling).status_code == 403


def test_extend_from_another_origin_is_refused(hub: Any, alice: Browser, lab: dict[str, Any]) -> None:
    before = expiry(hub, lab["id"])
    sibling = {"Origin": f"http://0123456789abcdef.sessions.localhost:{hub.port}"}
    assert alice.request("POST", "/_beamhub/extend", lab["id"], headers=sibling).status_code == 403
    cross_site = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}
    assert alice.request("POST", "/_beamhub/extend", lab["id"], headers=cross_site).status_code == 403
    assert expiry(hub, lab["id"]) == before


def test_extend_from_the_sessions_own_pages_moves_its_end_an_hour(hub: Any, alice: Browser,
                                                                   lab: dict[str, Any]) -> None:
    before = expiry(hub, lab["id"])
    answer = alice.request("POST", "/_beamhub/extend", lab["id"], headers=own_origin(alice, lab["id"]))
    assert answer.status_code == 200, answer.text
    assert datetime.fromisoformat(answer.json()["expires_at"]) == before + timedelta(hours=1)
    assert expiry(hub, lab["id"]) == before + timedelta(hours=1)


def test_another_user_gets_nothing_of_the_session(hub: Any, lab: dict[str, Any]) -> None:
    name, token = hub.create_user()
    assert hub.admin.put(f"/api/v1/users/{name}/password", json={"password": PASSWORD}).status_code == 204
    bob = Browser(hub)
    bob.log_in(name)
    assert bob.enter(lab["id"], "lab").status_code == 403  # no entry cookie for him
    before = expiry(hub, lab["id"])
    for method, path in (("GET", "/_beamhub/session"), ("POST", "/_beamhub/extend")):
        assert bob.request(method, path, lab["id"], headers=own_origin(bob, lab["id"])).status_code == 401
        bearer = {**own_origin(bob, lab["id"]), "Authorization": f"Bearer {token}"}
        assert bob.request(method, path, lab["id"], headers=bearer).status_code == 403
    assert expiry(hub, lab["id"]) == before
    bob.close()


def test_extend_stops_at_the_longest_runtime(hub: Any, alice: Browser, lab: dict[str, Any]) -> None:
    created = datetime.fromisoformat(lab["created_at"])
    longest = created + timedelta(days=30)
    near = hub.admin.patch(f"/api/v1/sessions/{lab['id']}",
                           json={"expires_at": (longest - timedelta(minutes=10)).isoformat()})
    assert near.status_code == 200, near.text
    answer = alice.request("POST", "/_beamhub/extend", lab["id"], headers=own_origin(alice, lab["id"]))
    assert answer.status_code == 200, answer.text
    assert datetime.fromisoformat(answer.json()["expires_at"]) == longest
    again = alice.request("POST", "/_beamhub/extend", lab["id"], headers=own_origin(alice, lab["id"]))
    assert again.status_code == 422
    assert "at most" in again.json()["detail"]


def test_only_jupyterlabs_own_pages_get_the_script() -> None:
    config = b'<script id="jupyter-config-data" type="application/json">{}</script>'
    users_page = b"<html><body>a user's page</body></html>"
    assert with_script(users_page, "/x.js") == users_page
    assert with_script(b"<head>" + config + b"</head><body></body>", "/x.js") == (
        b"<head>" + config + b'</head><body><script src="/x.js" defer></script></body>')
    assert with_script(b"<head>" + config + b"</head>", "/x.js").endswith(b'<script src="/x.js" defer></script></head>')
    assert with_script(b"<head>" + config + b"</head>", "") == b"<head>" + config + b"</head>"
