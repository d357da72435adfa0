"""Console test helpers: a shared server, users with passwords, browsers logged in through the login form."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token a page's forms carry."""
    match = CSRF.search(page.text)
    assert match, f"no CSRF token on the page:\n{page.text[:2000]}"
    return match.group(1)


@pytest.fixture(scope="module")
def hub(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Any:
    """A server shared by a module: a node of 4 cores and 8 GiB."""
    return module_beamhub_factory(env={**uid_range_env, "BEAMHUB_NODE_CPUS": "4", "BEAMHUB_NODE_MEMORY": "8Gi"})


@pytest.fixture(scope="module")
def new_user(hub: Any) -> Callable[[], str]:
    """new_user(): a user with the local password PASSWORD."""

    def make() -> str:
        username, _ = hub.create_user()
        response = hub.admin.put(f"/api/v1/users/{username}/password", json={"password": PASSWORD})
        assert response.status_code == 204, response.text
        return username

    return make


@pytest.fixture
def browser(hub: Any) -> Iterator[Callable[..., httpx.Client]]:
    """browser(username=None, language=None): an HTTP client as a browser is, logged in through the login form
    if a username is given."""
    clients: list[httpx.Client] = []

    def make(username: str | None = None, language: str | None = None) -> httpx.Client:
        headers = {"Accept": "text/html"} | ({"Accept-Language": language} if language else {})
        client = httpx.Client(base_url=hub.url, headers=headers, timeout=30)
        clients.append(client)
        if username is not None:
            form = client.get("/login")
            answer = client.post("/login", data={"username": username, "password": PASSWORD,
                                                 "csrf_token": csrf_of(form), "next": "/"})
            assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
        return client

    yield make
    for client in clients:
        client.close()
