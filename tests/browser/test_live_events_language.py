"""A session's new events appear in the page's language: the API's events are English, so a Chinese page shows
them as the server renders them, translated; an English page adds them as they come."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import in_language

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect


@pytest.fixture
def running(world: Any, require_image: None) -> Iterator[dict[str, Any]]:
    """A running command session of alice's."""
    created = world.server.admin.post("/api/v1/sessions", json={
        "user": world.users["alice"], "kind": "command", "command": "sleep", "args": ["3600"], "ncores": 0.1,
        "memory": "64Mi", "runtime": 1800})
    assert created.status_code == 201, created.text
    yield world.server.wait_for_state(created.json()["id"], {"running"})
    world.server.stop_all_sessions()


@pytest.mark.parametrize(("language", "moved"), [("zh_CN", "到期时间已改为"), ("en", "expiry moved to")])
def test_an_extension_shows_on_the_open_session_page_in_its_language(
        open_page: Callable[..., Page], world: Any, running: dict[str, Any], language: str, moved: str) -> None:
    page = open_page("alice")
    page.goto(f"/sessions/{running['id']}")
    in_language(page, language)
    events = page.locator("[data-events]")
    expect(events).not_to_contain_text(moved)
    extended = world.server.admin.patch(f"/api/v1/sessions/{running['id']}", json={"runtime": 3600})
    assert extended.status_code == 200, extended.text
    expect(events).to_contain_text(moved)
    if language == "zh_CN":
        expect(events).not_to_contain_text("expiry moved to")
