"""Two beamhub processes on one database (worker processes of one host, or replicas): a login's state lives in the
database, so a single sign-on begun on one finishes on the other, and failed logins count across both."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpers.oidc_provider import Provider

PASSWORD = "correct horse battery"
MAX_FAILURES = 3


@pytest.fixture
def provider() -> Iterator[Any]:
    server = Provider("beamhub", secrets.token_urlsafe(16)).start()
    yield server
    server.stop()


@pytest.fixture
def pair(beamhub_factory, uid_range_env, provider, tmp_path):  # type: ignore[no-untyped-def]
    """Two servers sharing one state directory (one SQLite database); the first's address is the public one."""
    env = {**uid_range_env, "BEAMHUB_MANAGE_SYSTEM_ACCOUNTS": "false", "BEAMHUB_LOGIN_METHODS": '["password","oidc"]',
           "BEAMHUB_OIDC_ISSUER": provider.issuer, "BEAMHUB_OIDC_CLIENT_ID": provider.client_id,
           "BEAMHUB_OIDC_CLIENT_SECRET": provider.client_secret, "BEAMHUB_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
           "BEAMHUB_LOGIN_FAILURE_WINDOW": "300"}
    first = beamhub_factory(env=env, state_dir=tmp_path / "shared")
    second = beamhub_factory(env={**env, "BEAMHUB_PUBLIC_URL": first.url}, state_dir=tmp_path / "shared")
    return first, second


def login(client: httpx.Client, url: str, username: str, password: str) -> httpx.Response:
    csrf = client.get(f"{url}/login", headers={"Accept": "application/json"}).json()["csrf_token"]
    return client.post(f"{url}/login", headers={"Accept": "application/json"},
                       data={"username": username, "password": password, "method": "password", "csrf_token": csrf})


def test_a_single_sign_on_begun_on_one_process_finishes_on_the_other_once(pair: Any, provider: Any) -> None:
    first, second = pair
    username, _ = first.create_user()
    provider.login_as(preferred_username=username)
    with httpx.Client(timeout=30) as browser:
        start = browser.get(f"{first.url}/login/oidc", params={"next": "/api/v1/me"})
        assert start.status_code == 303, start.text
        callback = httpx.URL(httpx.get(start.headers["location"]).headers["location"])
        finished = browser.get(f"{second.url}/login/oidc/callback", params=dict(callback.params))
        assert finished.status_code == 303, finished.text
        assert browser.get(f"{second.url}/api/v1/me").json()["username"] == username
        replayed = browser.get(f"{first.url}/login/oidc/callback", params=dict(callback.params))
        assert replayed.status_code == 401  # a flow is taken once, whichever process took it


def test_failed_logins_on_one_process_limit_the_other(pair: Any) -> None:
    first, second = pair
    username, _ = first.create_user()
    first.admin.put(f"/api/v1/users/{username}/password", json={"password": PASSWORD}).raise_for_status()
    with httpx.Client(timeout=30) as browser:
        for _ in range(MAX_FAILURES):
            assert login(browser, first.url, username, "wrong password").status_code == 401
        refused = login(browser, second.url, username, PASSWORD)
        assert refused.status_code == 429 and "too many failed logins" in refused.json()["detail"]
