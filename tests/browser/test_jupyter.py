"""A scientist's day in the browser: sign in, start JupyterLab from the launch form, follow it until it opens
through the proxy, read their own proposal in a notebook (and not another's: the kernel runs as their UID),
then stop the session and see it stopped on the dashboard."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

START_TIMEOUT = 90_000
"""Milliseconds for a session to start and JupyterLab to load in the browser (generous for a busy CI host)."""
RUN_TIMEOUT = 60_000
"""Milliseconds for a kernel to start and a cell's output to show."""


@pytest.fixture(autouse=True)
def _stop_sessions(world: Any) -> Iterator[None]:
    """A failed test leaves no session running for the next one."""
    yield
    world.server.stop_all_sessions()


def run_cell(page: Page, index: int, code: str) -> None:
    """Type `code` into the notebook's cell `index` and run it with Shift+Enter, as a person does."""
    editor = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.insert_text(code)  # as one input: no auto-closed brackets
    page.keyboard.press("Shift+Enter")


def test_sign_in_and_switch_language_on_the_login_page(open_page: Callable[..., Page], world: Any,
                                                       screenshot_dir: Path) -> None:
    page = open_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    expect(page.locator("h1")).to_have_text("Sign in to beamhub")
    page.screenshot(path=screenshot_dir / "login-en.png", full_page=True)
    page.click("nav.lang a[lang=zh-CN]")
    expect(page.locator("h1")).to_have_text("登录 beamhub")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.screenshot(path=screenshot_dir / "login-zh_CN.png", full_page=True)
    page.fill("input[name=username]", world.users["alice"])
    page.fill("input[name=password]", "not her password")
    page.click("form[action='/login'] button.primary")
    expect(page.locator(".alert[role=alert]")).to_contain_text("用户名或密码错误")
    page.click("nav.lang a[lang=en]")
    expect(page.locator("h1")).to_have_text("Sign in to beamhub")


def test_jupyterlab_from_launch_to_stop(open_page: Callable[..., Page], world: Any,
                                        shoot: Callable[[Page, str], None], screenshot_dir: Path,
                                        require_image: None) -> None:
    alice, own, other = world.users["alice"], world.proposals["P1"]["id"], world.proposals["P2"]["path"]
    page = open_page("alice")
    expect(page.locator(".who")).to_have_text(alice)
    shoot(page, "dashboard-empty")

    page.click("a.button.primary[href='/sessions/new?kind=jupyter']")
    expect(page.locator("select[name=kind]")).to_have_value("jupyter")
    shoot(page, "launch")
    page.fill("input[name=ncores]", "0.5")
    page.fill("input[name=memory]", "1")
    page.click("form[data-launch-form] button.primary")
    page.wait_for_url(re.compile(r"/s/[^/]+/lab"), timeout=START_TIMEOUT)
    session_id = page.url.split("/s/")[1].split("/")[0]
    assert world.server.admin.get(f"/api/v1/sessions/{session_id}").json()["state"] == "running"

    # JupyterLab opens in the home folder, next to the links to her proposals (read-only, says their README)
    expect(page.locator(".jp-DirListing-itemText", has_text="proposals")).to_be_visible(timeout=START_TIMEOUT)
    page.locator(".jp-LauncherCard[data-category=Notebook]").first.click(timeout=START_TIMEOUT)
    # a cell run before the kernel is connected is silently not run; the status bar says when it is
    kernel_status = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"ipykernel\) \| Idle$"))
    expect(kernel_status).to_be_visible(timeout=RUN_TIMEOUT)
    run_cell(page, 0, f"import os, pwd\nmine = os.path.expanduser('~/proposals/{own}')\n"
                      "print(pwd.getpwuid(os.getuid()).pw_name, sorted(os.listdir(mine)))")
    outputs = page.locator(".jp-Notebook .jp-Cell .jp-OutputArea-output")
    expect(outputs.nth(0)).to_have_text(f"{alice} ['notes.txt', 'scan1']", timeout=RUN_TIMEOUT)
    run_cell(page, 1, f"os.listdir({other!r})")
    expect(outputs.nth(1)).to_contain_text("PermissionError", timeout=RUN_TIMEOUT)
    expect(outputs.nth(1)).to_contain_text("Permission denied")
    page.screenshot(path=screenshot_dir / "jupyter.png")

    page.goto(f"/sessions/{session_id}")
    expect(page.locator("[data-session-page] .state")).to_have_text("running")
    shoot(page, "session")
    page.goto("/")
    row = page.locator(f"tr[data-session='{session_id}']")
    expect(row).to_have_attribute("data-state", "running")
    shoot(page, "dashboard")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.danger").click()
    ended = page.locator(f"table.ended tr[data-session='{session_id}'] .state")
    expect(ended).to_have_text("stopped", timeout=RUN_TIMEOUT)
    expect(page.locator("table.sessions:not(.ended)")).to_have_count(0)
    assert world.server.admin.get(f"/api/v1/sessions/{session_id}").json()["state"] == "stopped"
    shoot(page, "dashboard-stopped")
