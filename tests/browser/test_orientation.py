"""A new user finds their way (issue 14, item 5), one test per defect: the login page says how administrators sign
in, every page links its help, an empty dashboard shows the first steps, kinds come JupyterLab first with a sentence
each, GPU fields only where GPUs exist, phone layouts label every field, a favicon, the README's console paths exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import PASSWORD, PHONE, REPO, in_language, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

PAGES_AND_TOPICS = {"/": "sessions", "/sessions/new": "launch", "/data": "data", "/jobs": "jobs", "/keys": "keys",
                    "/admin": "admin", "/admin/users": "admin", "/help": "start"}


def test_the_login_page_says_how_administrators_sign_in(open_page: Callable[..., Page], world: Any,
                                                        shoot: Callable[[Page, str], None]) -> None:
    page = open_page()
    page.goto("/login")
    help_box = page.locator("details[data-login-help]")
    help_box.locator("summary").click()
    expect(help_box).to_contain_text("beamhub user create NAME --admin")
    expect(help_box).to_contain_text("BEAMHUB_ADMIN_TOKEN")
    shoot(page, "login-help")
    in_language(page, "zh_CN")
    page.locator("details[data-login-help] summary").click()
    expect(page.locator("details[data-login-help]")).to_contain_text("管理员")
    log_in(page, world.users["admin"])  # the documented way: a user with the admin role, a password, this form
    expect(page.locator("nav.main a[href='/admin']")).to_be_visible()


def test_every_page_links_its_own_help(open_page: Callable[..., Page], shoot: Callable[[Page, str], None]) -> None:
    page = open_page("admin")
    for address, topic in PAGES_AND_TOPICS.items():
        page.goto(address)
        link = page.locator("header a.help-link")
        expect(link).to_have_attribute("href", f"/help#{topic}")
    page.click("header a.help-link")
    expect(page.locator(f"h2#{topic}")).to_be_visible()
    shoot(page, "help")
    in_language(page, "zh_CN")
    expect(page.locator("h1")).to_have_text("帮助")


def test_a_user_without_sessions_sees_the_first_steps(open_page: Callable[..., Page],
                                                      shoot: Callable[[Page, str], None]) -> None:
    page = open_page("bob")
    steps = page.locator("[data-first-steps]")
    expect(steps).to_contain_text("the folder proposals holds a link to each proposal")
    expect(steps.locator("a.button.primary")).to_have_attribute("href", "/sessions/new?kind=jupyter")
    shoot(page, "dashboard-first-steps")
    in_language(page, "zh_CN")
    expect(page.locator("[data-first-steps] h2")).to_have_text("入门步骤")


def test_kinds_come_jupyterlab_first_each_with_its_sentence(open_page: Callable[..., Page]) -> None:
    page = open_page("bob")
    tiles = page.locator("section.tiles a.tile")
    expect(tiles.first).to_have_attribute("href", "/sessions/new?kind=jupyter")
    for index in range(tiles.count()):
        assert tiles.nth(index).locator("span").inner_text().strip()
    page.goto("/sessions/new?kind=command")
    options = page.locator("select[data-kind] option")
    assert options.first.get_attribute("value") == "jupyter"
    expect(page.locator("small[data-for-kind='command']")).to_be_visible()
    page.select_option("select[data-kind]", "jupyter")
    expect(page.locator("small[data-for-kind='jupyter']")).to_contain_text("Notebooks")
    expect(page.locator("small[data-for-kind='command']")).to_be_hidden()


def test_the_gpu_field_shows_only_where_the_node_has_gpus(open_page: Callable[..., Page], world: Any,
                                                          chromium: Browser, module_beamhub_factory: Any,
                                                          uid_range_env: dict[str, str]) -> None:
    page = open_page("bob")
    page.goto("/sessions/new")
    expect(page.locator("input[name=ncores]")).to_be_visible()
    expect(page.locator("input[name=gpus]")).to_have_count(0)
    assert "GPU" not in page.locator("form[data-launch-form]").inner_text()

    with_gpus = module_beamhub_factory(env={**uid_range_env, "BEAMHUB_GPUS": '["0", "1"]'})
    name, _ = with_gpus.create_user()
    assert with_gpus.admin.put(f"/api/v1/users/{name}/password", json={"password": PASSWORD}).status_code == 204
    context = chromium.new_context(base_url=with_gpus.url, locale="en-US")
    try:
        gpu_page = context.new_page()
        log_in(gpu_page, name)
        gpu_page.goto("/sessions/new")
        expect(gpu_page.locator("input[name=gpus]")).to_be_visible()
        expect(gpu_page.locator("form[data-launch-form]")).to_contain_text("2 of 2 free")
    finally:
        context.close()


def test_on_a_phone_every_field_of_a_card_has_its_label(chromium: Browser, world: Any, require_image: None,
                                                        screenshot_dir: Path) -> None:
    started = world.server.admin.post("/api/v1/sessions", json={
        "user": world.users["alice"], "kind": "command", "command": "sleep", "args": ["600"], "ncores": 0.1,
        "memory": "64Mi", "name": "phone-fit"})
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    world.server.wait_for_state(session_id, {"running"})
    context = chromium.new_context(base_url=world.server.url, locale="en-US", viewport=PHONE, is_mobile=True)
    try:
        page = context.new_page()
        log_in(page, world.users["alice"])
        for language in ("zh_CN", "en"):
            in_language(page, language)
            expect(page.locator("table.sessions thead")).to_be_hidden()
            cells = page.locator("table.sessions tbody td")
            for index in range(cells.count()):
                cell = cells.nth(index)
                label = cell.get_attribute("data-label")
                assert label, cell.inner_html()
                shown = cell.evaluate("c => getComputedStyle(c, '::before').content")
                assert shown.strip('"') == label, (label, shown)
            for name, address in {"dashboard": "/", "launch": "/sessions/new", "session": f"/sessions/{session_id}",
                                  "data": "/data", "keys": "/keys", "help": "/help"}.items():
                page.goto(address)
                assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], address
                page.screenshot(path=screenshot_dir / f"phone-{name}-{language}.png", full_page=True)
            page.goto("/")
        admin = chromium.new_context(base_url=world.server.url, locale="en-US", viewport=PHONE, is_mobile=True)
        admin_page = admin.new_page()
        log_in(admin_page, world.users["admin"])
        for name, address in {"admin": "/admin", "admin-sessions": "/admin/sessions", "admin-users": "/admin/users",
                              "admin-audit": "/admin/audit"}.items():
            admin_page.goto(address)
            cells = admin_page.locator("table tbody td")
            assert all(cells.nth(i).get_attribute("data-label") for i in range(min(cells.count(), 40))), address
            admin_page.screenshot(path=screenshot_dir / f"phone-{name}-en.png", full_page=True)
        admin.close()
    finally:
        context.close()
        world.server.stop_all_sessions()


def test_every_page_has_a_favicon(open_page: Callable[..., Page], world: Any) -> None:
    page = open_page()
    page.goto("/login")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    answer = world.server.client().get(icon)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")


def test_the_console_paths_the_readme_names_exist(open_page: Callable[..., Page]) -> None:
    readme = (REPO / "README.md").read_text()
    console = readme.split("## The console", 1)[1].split("\n## ", 1)[0]
    paths = set(re.findall(r"`(/[a-z/]*)`", console))
    assert {"/sessions/new", "/data", "/jobs", "/keys", "/admin", "/help"} <= paths, paths
    page = open_page("admin")
    for path in sorted(paths):
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, path
