"""Browser login end to end: local passwords, PAM against a real system account, OpenID Connect against a
provider the tests start; cookies, CSRF, rate limits, disabled users, logout, redirects."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from helpers.oidc_provider import Provider

BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery"
MAX_FAILURES = 3
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def provider() -> Iterator[Any]:
    server = Provider("beamhub", secrets.token_urlsafe(16)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pam_service() -> Iterator[str]:
    """A PAM service of pam_unix only, so the check does not depend on the container's /etc/pam.d/login."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it writes /etc/pam.d and creates system accounts")
    name = f"beamhub-test-{secrets.token_hex(3)}"
    path = Path("/etc/pam.d") / name
    path.write_text("auth required pam_unix.so\naccount required pam_unix.so\n")
    yield name
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def hub(module_beamhub_factory, uid_range_env, provider, pam_service):  # type: ignore[no-untyped-def]
    return module_beamhub_factory(env={
        **uid_range_env, "BEAMHUB_MANAGE_SYSTEM_ACCOUNTS": "false",
        "BEAMHUB_LOGIN_METHODS": '["password","pam","oidc"]', "BEAMHUB_PAM_SERVICE": pam_service,
        "BEAMHUB_OIDC_ISSUER": provider.issuer, "BEAMHUB_OIDC_CLIENT_ID": provider.client_id,
        "BEAMHUB_OIDC_CLIENT_SECRET": provider.client_secret, "BEAMHUB_OIDC_PROVIDER_NAME": "Test <SSO>",
        "BEAMHUB_LOGIN_MAX_FAILURES": str(MAX_FAILURES), "BEAMHUB_LOGIN_FAILURE_WINDOW": "300",
    })


def browser(hub: Any, address: str | None = None) -> httpx.Client:
    """A client from its own loopback address (127.x.y.z), so failed-login counts of tests do not mix."""
    address = address or ".".join(["127", *(str(1 + secrets.randbelow(250)) for _ in range(3))])
    return httpx.Client(base_url=hub.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def user_with_password(hub: Any) -> str:
    username, _ = hub.create_user()
    response = hub.admin.put(f"/api/v1/users/{username}/password", json={"password": PASSWORD})
    assert response.status_code == 204, response.text
    return username


def login(client: httpx.Client, username: str, password: str = PASSWORD, method: str = "password",
          next_path: str | None = None, as_json: bool = True) -> httpx.Response:
    """Load the login form (for its CSRF token and cookie), then post it."""
    csrf = client.get("/login", headers=JSON).json()["csrf_token"]
    form = {"username": username, "password": password, "method": method, "csrf_token": csrf}
    if next_path is not None:
        form["next"] = next_path
    return client.post("/login", data=form, headers=JSON if as_json else {})


def test_password_login_sets_a_safe_cookie_that_authenticates(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        response = login(client, username)
        assert response.status_code == 200, response.text
        assert response.json()["username"] == username
        cookie = next(v for k, v in response.headers.multi_items()
                      if k == "set-cookie" and v.startswith("beamhub-session="))
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "samesite"} <= flags and "secure" not in flags
        assert "samesite=lax" in cookie.lower()
        me = client.get("/api/v1/me").json()
        assert me["username"] == username and me["csrf_token"] == response.json()["csrf_token"]
        assert client.get("/api/v1/sessions").status_code == 200


def test_state_changing_requests_need_the_csrf_token(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        csrf = login(client, username).json()["csrf_token"]
        refused = client.post(f"/api/v1/users/{username}/tokens", json={"name": "x"})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        wrong = client.post(f"/api/v1/users/{username}/tokens", json={"name": "x"}, headers={"X-CSRF-Token": "no"})
        assert wrong.status_code == 403
        ok = client.post(f"/api/v1/users/{username}/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201, ok.text


def test_the_login_form_itself_needs_its_csrf_token(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        response = client.post("/login", data={"username": username, "password": PASSWORD}, headers=JSON)
        assert response.status_code == 403
        client.get("/login")
        response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": "x"},
                               headers=JSON)
        assert response.status_code == 403


def test_html_form_login_redirects_to_a_local_next_only(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        page = client.get("/login", params={"next": '/x"><script>'}).text
        assert "<form" in page and "<script>" not in page and "Test &lt;SSO&gt;" in page
        assert f'name="csrf_token" value="{client.cookies["beamhub-login"]}"' in page
    for target, expected in [("/api/v1/me?a=1", "/api/v1/me?a=1"), ("//evil.example/x", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("javascript:alert(1)", "/")]:
        with browser(hub) as client:
            response = login(client, username, next_path=target, as_json=False)
            assert response.status_code == 303, response.text
            assert response.headers["location"] == expected


def test_wrong_password_and_unknown_user_are_401(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        assert login(client, username, "wrong password").status_code == 401
        assert login(client, f"nobody{secrets.token_hex(3)}").status_code == 401
        page = login(client, username, "wrong password", as_json=False)
        assert page.status_code == 401 and "wrong username or password" in page.text
        assert client.get("/api/v1/me").status_code == 401


def test_a_disabled_user_is_refused_with_403(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        assert login(client, username).status_code == 200
        hub.admin.patch(f"/api/v1/users/{username}", json={"state": "disabled"}).raise_for_status()
        assert client.get("/api/v1/me").status_code == 403
    with browser(hub) as client:
        response = login(client, username)
        assert response.status_code == 403 and response.json()["detail"] == "account disabled"


def test_failed_logins_are_limited_per_user(hub: Any) -> None:
    username = user_with_password(hub)
    for _ in range(MAX_FAILURES):
        with browser(hub) as client:
            assert login(client, username, "wrong password").status_code == 401
    with browser(hub) as client:
        response = login(client, username)
        assert response.status_code == 429 and "too many failed logins" in response.json()["detail"]


def test_failed_logins_are_limited_per_address(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        for _ in range(MAX_FAILURES):
            assert login(client, f"nobody{secrets.token_hex(3)}", "wrong password").status_code == 401
        assert login(client, username).status_code == 429
    with browser(hub) as client:
        assert login(client, username).status_code == 200


def test_logout_ends_the_session(hub: Any) -> None:
    username = user_with_password(hub)
    with browser(hub) as client:
        csrf = login(client, username).json()["csrf_token"]
        cookie = client.cookies["beamhub-session"]
        assert client.post("/logout", headers=JSON).status_code == 403
        response = client.post("/logout", data={"csrf_token": csrf})
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert "beamhub-session" not in client.cookies
    with httpx.Client(base_url=hub.url, cookies={"beamhub-session": cookie}) as replay:
        assert replay.get("/api/v1/me").status_code == 401


def test_passwords_are_set_by_self_or_admin_only(hub: Any) -> None:
    alice, alice_token = hub.create_user()
    bob, _ = hub.create_user()
    with hub.client(alice_token) as client:
        assert client.put(f"/api/v1/users/{bob}/password", json={"password": PASSWORD}).status_code == 403
        assert client.put(f"/api/v1/users/{alice}/password", json={"password": "short"}).status_code == 422
        assert client.put(f"/api/v1/users/{alice}/password", json={"password": PASSWORD}).status_code == 204
    with browser(hub) as client:
        assert login(client, alice).status_code == 200


def test_cli_sets_a_password(hub: Any) -> None:
    username, _ = hub.create_user()
    result = subprocess.run([str(BIN / "beamhub"), "user", "password", username, "--password-stdin"],
                            input=f"{PASSWORD}\n", env=hub.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    with browser(hub) as client:
        assert login(client, username).status_code == 200


def test_pam_login_against_a_real_system_account(hub: Any, system_users: list[str]) -> None:
    username = f"pam{secrets.token_hex(3)}"
    system_users.append(username)
    subprocess.run(["useradd", "--no-create-home", username], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{username}:{PASSWORD}\n", text=True, check=True, capture_output=True)
    with browser(hub) as client:
        assert login(client, username, method="pam").status_code == 401  # a system account unknown to beamhub
    hub.admin.post("/api/v1/users", json={"username": username}).raise_for_status()
    with browser(hub) as client:
        response = login(client, username, method="pam")
        assert response.status_code == 200, response.text
        assert client.get("/api/v1/me").json()["username"] == username
    with browser(hub) as client:
        assert login(client, username, "wrong password", method="pam").status_code == 401
        assert login(client, username, method="password").status_code == 401  # no local password


def oidc_flow(hub: Any, client: httpx.Client, next_path: str = "/api/v1/me",
              tamper: dict[str, str] | None = None) -> httpx.Response:
    """Browser steps: beamhub -> provider's authorize -> beamhub's callback (which answers)."""
    start = client.get("/login/oidc", params={"next": next_path})
    assert start.status_code == 303, start.text
    authorize = httpx.get(start.headers["location"])
    assert authorize.status_code == 302, authorize.text
    callback = httpx.URL(authorize.headers["location"])
    assert str(callback).startswith(f"{hub.url}/login/oidc/callback")
    params = dict(callback.params)
    params.update(tamper or {})
    return client.get("/login/oidc/callback", params=params)


def test_oidc_login_end_to_end(hub: Any, provider: Any) -> None:
    username, _ = hub.create_user()
    provider.login_as(preferred_username=username, email=f"{username}@example.org")
    with browser(hub) as client:
        response = oidc_flow(hub, client)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/api/v1/me"
        me = client.get("/api/v1/me").json()
        assert me["username"] == username and me["csrf_token"]


def test_oidc_refuses_wrong_state_wrong_nonce_and_unknown_users(hub: Any, provider: Any) -> None:
    username, _ = hub.create_user()
    provider.login_as(preferred_username=username)
    with browser(hub) as client:
        assert oidc_flow(hub, client, tamper={"state": "forged"}).status_code == 401
        assert "beamhub-session" not in client.cookies
    with browser(hub) as client:
        provider.nonce_override = "replayed"
        response = oidc_flow(hub, client)
        assert response.status_code == 401 and "nonce" in response.json()["detail"]
    provider.login_as(preferred_username=username)
    provider.forge_signature = True
    with browser(hub) as client:
        assert oidc_flow(hub, client).status_code == 401
    provider.login_as(preferred_username=f"stranger{secrets.token_hex(3)}")
    with browser(hub) as client:
        assert oidc_flow(hub, client).status_code == 403
    provider.login_as(preferred_username=username)
    with browser(hub) as other, browser(hub) as victim:
        start = other.get("/login/oidc")
        code_url = httpx.get(start.headers["location"]).headers["location"]
        assert victim.get(code_url).status_code == 401  # the flow is bound to the browser that started it


def test_oidc_can_create_unknown_users_when_configured(  # type: ignore[no-untyped-def]
        module_beamhub_factory, uid_range_env, provider: Any) -> None:
    auto = module_beamhub_factory(env={
        **uid_range_env, "BEAMHUB_MANAGE_SYSTEM_ACCOUNTS": "false", "BEAMHUB_LOGIN_METHODS": '["oidc"]',
        "BEAMHUB_OIDC_ISSUER": provider.issuer, "BEAMHUB_OIDC_CLIENT_ID": provider.client_id,
        "BEAMHUB_OIDC_CLIENT_SECRET": provider.client_secret, "BEAMHUB_OIDC_AUTO_CREATE": "true",
        "BEAMHUB_OIDC_USERNAME_CLAIM": "uid"})
    username = f"new{secrets.token_hex(3)}"
    provider.login_as(uid=username, preferred_username="ignored", email=f"{username}@example.org")
    with browser(auto) as client:
        assert oidc_flow(auto, client).status_code == 303
        assert client.get("/api/v1/me").json()["username"] == username
    assert auto.admin.get(f"/api/v1/users/{username}").json()["email"] == f"{username}@example.org"
    with browser(auto) as client:
        assert login(client, username, "whatever1").status_code == 422  # password login is not enabled there


def test_the_login_cookie_never_reaches_a_session_on_the_consoles_origin(hub: Any) -> None:
    """Sessions are served on their own origin: with the console's cookie, /s/... only redirects a browser there."""
    username = user_with_password(hub)
    with browser(hub) as client:
        login(client, username)
        cookie = f"beamhub-session={client.cookies['beamhub-session']}"
        for origin in ("http://evil.example", hub.url):
            refused = client.post("/s/0123456789abcdef/api/kernels", headers={"Origin": origin})
            assert refused.status_code == 403 and "own origin" in refused.json()["detail"]

    async def refusal(origin: str) -> int:
        url = f"ws://127.0.0.1:{hub.port}/s/0123456789abcdef/api/kernels"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": origin},
                                          open_timeout=10):
                pass
        return refused.value.response.status_code

    assert asyncio.run(refusal("http://evil.example")) == 403
    assert asyncio.run(refusal(hub.url)) == 403


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_cookies_are_secure_and_host_only_over_https(tmp_path: Path) -> None:
    """In process, over https (as behind a TLS proxy): every cookie of the console is `__Host-` prefixed (so no other
    host of the site, a session's, can set or overwrite it), Secure, HttpOnly and for path /; a cookie without the
    prefix is nobody's login there."""
    from fastapi.testclient import TestClient

    from beamhub.app import create_app
    from beamhub.config import Settings
    from beamhub.identity.principal import SYSTEM

    settings = Settings(state_dir=tmp_path, manage_system_accounts=False, uid_min=150000, uid_max=150010)
    app = create_app(settings, run_reconciler=False)
    services = app.state.services
    services.identity.create_user("carol", by=SYSTEM)
    services.login.set_password(SYSTEM, "carol", PASSWORD)
    with TestClient(app, base_url="https://testserver") as client:
        csrf = client.get("/login", headers=JSON).json()["csrf_token"]
        assert client.cookies["__Host-beamhub-login"] == csrf
        response = client.post("/login", data={"username": "carol", "password": PASSWORD, "csrf_token": csrf},
                               headers=JSON)
        assert response.status_code == 200, response.text
        cookies = response.headers.get_list("set-cookie")
        login = next(v for v in cookies if v.startswith("__Host-beamhub-session="))
        flags = {part.strip().split("=")[0].lower() for part in login.split(";")[1:]}
        assert {"secure", "httponly", "path"} <= flags and "domain" not in flags
        assert "path=/;" in login.lower().replace(" ", "") + ";"
        assert client.get("/api/v1/me").json()["username"] == "carol"
        value = client.cookies["__Host-beamhub-session"]
        client.cookies.clear()
        client.cookies.set("beamhub-session", value)
        assert client.get("/api/v1/me").status_code == 401
