"""The session's end where the user works: inside JupyterLab, a session that ends within the earliest warning shows
a banner in the browser's language (English, Simplified Chinese) with one click to extend it, and a link back to
its page in the console (JupyterHub's "Hub Control Panel")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

START_TIMEOUT = 90_000
RUNTIME = 600
"""Seconds a session is started for: within the default earliest warning (15 min), so the banner shows at once."""


@pytest.fixture
def short_lab(world: Any, require_image: None) -> Iterator[dict[str, Any]]:
    """alice's JupyterLab, started with RUNTIME seconds to run; stopped after the test."""
    created = world.server.admin.post("/api/v1/sessions", json={
        "user": world.users["alice"], "kind": "jupyter", "ncores": 0.5, "memory": "1Gi", "runtime": RUNTIME})
    assert created.status_code == 201, created.text
    yield world.server.wait_for_state(created.json()["id"], {"running"}, timeout=60)
    world.server.stop_all_sessions()


def expiry(world: Any, session_id: str) -> datetime:
    return datetime.fromisoformat(world.server.admin.get(f"/api/v1/sessions/{session_id}").json()["expires_at"])


def open_lab(chromium: Browser, world: Any, locale: str, session_id: str) -> tuple[Page, list[str]]:
    """alice's JupyterLab in a browser of this language, and the errors the browser reports while it runs."""
    context = chromium.new_context(base_url=world.server.url, locale=locale, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", note)
    log_in(page, world.users["alice"])
    page.goto(f"/s/{session_id}/lab")
    page.wait_for_url(re.compile(rf"^http://{session_id}\.sessions\.localhost:\d+/s/{session_id}/lab"))
    page.locator(".jp-LauncherCard").first.wait_for(timeout=START_TIMEOUT)
    return page, errors


@pytest.mark.parametrize("locale, language, words", [("zh-CN", "zh_CN", "本会话将于"),
                                                     ("en-US", "en", "This session ends at")])
def test_the_banner_speaks_the_browsers_language(chromium: Browser, world: Any, short_lab: dict[str, Any],
                                                 screenshot_dir: Path, locale: str, language: str,
                                                 words: str) -> None:
    page, errors = open_lab(chromium, world, locale, short_lab["id"])
    banner = page.locator("#beamhub-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(words)
    expect(banner).to_contain_text(re.compile(r"\d\d:\d\d"))
    expect(page.locator("#beamhub-home")).to_have_text("beamhub")
    page.screenshot(path=screenshot_dir / f"jupyter-banner-{language}.png")
    assert not [e for e in errors if "beamhub" in e or "Content Security Policy" in e], errors
    page.context.close()


def test_extend_from_inside_jupyterlab_and_go_back_to_the_console(chromium: Browser, world: Any,
                                                                   short_lab: dict[str, Any]) -> None:
    session_id = short_lab["id"]
    before = expiry(world, session_id)
    page, _ = open_lab(chromium, world, "en-US", session_id)
    banner = page.locator("#beamhub-banner")
    expect(banner).to_contain_text("(in 10 min)")
    banner.get_by_role("button", name="Extend 1 hour").click()
    expect(banner).to_be_hidden()  # now 70 min from its end: beyond every warning
    assert expiry(world, session_id) == before + timedelta(hours=1)
    expect(banner.locator("a", has_text="Back to the console")).to_have_attribute(
        "href", f"{world.server.url}/sessions/{session_id}")
    page.locator("#beamhub-home").click()
    page.wait_for_url(f"{world.server.url}/sessions/{session_id}")
    expect(page.locator("[data-session-page] .state")).to_have_text("running")
    page.context.close()
