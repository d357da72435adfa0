"""In Chromium, an ended session's address lands on its page in the console, which says when and why it ended in
the reader's language, on a desktop and on a phone (screenshots ended-*.png, phone-ended-*.png)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import PHONE, in_language, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

SAID = {"en": "This session ended at", "zh_CN": "此会话已于"}


def test_an_ended_sessions_address_says_when_and_why_in_both_languages(
        chromium: Browser, world: Any, require_image: None, open_page: Callable[..., Page],
        shoot: Callable[[Page, str], None], screenshot_dir: Path) -> None:
    started = world.server.admin.post("/api/v1/sessions", json={
        "user": world.users["alice"], "kind": "command", "command": "true", "ncores": 0.1, "memory": "64Mi",
        "name": "ends-at-once"})
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    world.server.wait_for_state(session_id, {"completed"}, timeout=30)
    page = open_page("alice")
    page.goto(f"/s/{session_id}/lab")
    expect(page).to_have_url(f"{world.server.url}/sessions/{session_id}")
    expect(page.locator("main")).to_contain_text(SAID["en"])
    shoot(page, "ended")
    phone = chromium.new_context(base_url=world.server.url, locale="en-US", viewport=PHONE, is_mobile=True)
    try:
        small = phone.new_page()
        log_in(small, world.users["alice"])
        small.goto(f"/s/{session_id}/lab")
        for language, words in SAID.items():
            in_language(small, language)
            expect(small.locator("main")).to_contain_text(words)
            assert small.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            small.screenshot(path=screenshot_dir / f"phone-ended-{language}.png", full_page=True)
    finally:
        phone.close()
