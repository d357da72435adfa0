"""The console's frame: login page in both languages, the language switch, redirects, error pages, headers."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize(("language", "heading", "button"), [
    ("en-GB,en;q=0.8", "Sign in to beamhub", "Sign in"),
    ("zh-CN,zh;q=0.9,en;q=0.5", "登录 beamhub", "登录"),
    ("fr-FR, zh-TW;q=0.7, en;q=0.3", "登录 beamhub", "登录"),
    ("fr-FR", "Sign in to beamhub", "Sign in"),
])
def test_the_login_page_speaks_the_browsers_language(browser: Any, language: str, heading: str,
                                                     button: str) -> None:
    page = browser(language=language).get("/login")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"<h1>{heading}</h1>" in page.text and f">{button}</button>" in page.text


def test_the_language_switch_is_remembered_and_wins_over_the_browser(browser: Any) -> None:
    client = browser(language="en")
    switched = client.get("/lang/zh_CN", params={"next": "/login?next=/sessions/new"})
    assert switched.status_code == 303 and switched.headers["location"] == "/login?next=/sessions/new"
    assert client.cookies["beamhub-lang"] == "zh_CN"
    page = client.get("/login")
    assert '<html lang="zh-CN">' in page.text and "用户名" in page.text
    assert client.get("/lang/en", params={"next": "https://evil.example/"}).headers["location"] == "/"
    assert "Username" in client.get("/login").text


def test_the_dashboard_sends_a_stranger_to_the_login_page_and_back(browser: Any, new_user: Any) -> None:
    client = browser()
    answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/"
    assert client.get("/sessions/new?kind=command").headers["location"] == "/login?next=/sessions/new%3Fkind%3Dcommand"
    form = client.get("/login?next=/sessions/new")
    assert 'name="next" value="/sessions/new"' in form.text


def test_an_expired_login_says_so_on_the_login_page(browser: Any) -> None:
    client = browser()
    client.cookies.set("beamhub-session", "no-such-login")
    answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/&expired=1"
    assert "Your login has expired; please sign in again." in client.get(answer.headers["location"]).text


def test_a_wrong_password_is_shown_on_the_page_in_the_users_language(browser: Any, new_user: Any) -> None:
    username = new_user()
    client = browser(language="zh-CN")
    form = client.get("/login")
    csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    page = client.post("/login", data={"username": username, "password": "wrong password", "csrf_token": csrf})
    assert page.status_code == 401 and "用户名或密码错误" in page.text


def test_a_logged_in_page_has_navigation_and_a_csrf_protected_logout(browser: Any, new_user: Any) -> None:
    username = new_user()
    client = browser(username)
    page = client.get("/")
    assert page.status_code == 200 and username in page.text
    for link in ('href="/data"', 'href="/keys"'):
        assert link in page.text
    assert 'href="/admin"' not in page.text
    assert client.post("/logout").status_code == 403
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    out = client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/").status_code == 303


def test_an_unknown_page_is_a_page_for_browsers_and_json_for_programs(hub: Any, browser: Any) -> None:
    page = browser(language="zh-CN").get("/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "未找到" in page.text and "返回我的会话" in page.text
    api = hub.client().get("/no/such/page")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found", "code": "not_found"}
    assert browser().get("/api/v1/nothing").headers["content-type"] == "application/json"


def test_an_error_page_keeps_the_menu_of_whoever_is_signed_in(browser: Any, new_user: Any) -> None:
    username = new_user()
    page = browser(username).get("/no/such/page")
    assert page.status_code == 404 and "There is no page at this address." in page.text
    assert f'<span class="who">{username}</span>' in page.text and 'href="/data"' in page.text
    assert 'action="/logout"' in page.text and 'name="csrf_token" value=""' not in page.text
    stranger = browser().get("/no/such/page")
    assert 'class="who"' not in stranger.text and 'href="/data"' not in stranger.text


def test_pages_forbid_inline_scripts_and_framing(browser: Any) -> None:
    page = browser().get("/login")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and " on" + "click=" not in page.text


def test_static_files_are_served_by_beamhub(browser: Any) -> None:
    client = browser()
    script = client.get("/static/console.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    style = client.get("/static/console.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "http" not in style.text and "//cdn" not in script.text
