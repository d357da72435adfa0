"""The dashboard and the administrators' sessions page say when a session ends as the session's page does: the time
of day in the console's time zone and the minutes left ("at 16:30, in 25 min"), in English and Chinese; never a
countdown clock or an ISO timestamp."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import in_language

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

RUNTIME = 25 * 60 + 10
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}|\b\d{2}:\d{2}:\d{2}\b")
"""An ISO timestamp, or a clock-like countdown such as 00:24:59."""


@pytest.fixture
def fit(world: Any, require_image: None) -> Iterator[dict[str, Any]]:
    """A running command session of alice's that ends in about 25 minutes."""
    created = world.server.admin.post("/api/v1/sessions", json={
        "user": world.users["alice"], "kind": "command", "command": "sleep", "args": ["3600"], "ncores": 0.1,
        "memory": "64Mi", "runtime": RUNTIME, "name": "nightly-fit"})
    assert created.status_code == 201, created.text
    yield world.server.wait_for_state(created.json()["id"], {"running"})
    world.server.stop_all_sessions()


def clock(session: dict[str, Any]) -> str:
    """The session's end as the console writes it in its time zone (UTC here): 16:30."""
    return datetime.fromisoformat(session["expires_at"]).astimezone(UTC).strftime("%H:%M")


def check_ends(page: Page, row: str, session: dict[str, Any], language: str) -> None:
    in_language(page, language)
    cell = page.locator(f"{row}[data-session='{session['id']}'] td:has([data-minutes-until])")
    said = cell.inner_text().strip()
    if language == "en":
        assert re.fullmatch(rf"at {clock(session)}, in 2[45] min", said), said
    else:
        assert re.fullmatch(rf"{clock(session)}，还剩 2[45] 分钟", said), said
    table = page.locator("table").first.inner_text()
    assert not ISO_TIME.search(table), table


def test_the_dashboard_says_when_a_session_ends_in_local_time(open_page: Callable[..., Page], fit: dict[str, Any],
                                                              shoot: Callable[[Page, str], None]) -> None:
    page = open_page("alice")
    expect(page.locator("th", has_text="Ends")).to_be_visible()
    for language in ("zh_CN", "en"):
        check_ends(page, "tr", fit, language)
    running_for = page.locator(f"tr[data-session='{fit['id']}'] [data-minutes-since]").inner_text()
    assert re.fullmatch(r"\d+ min", running_for), running_for
    shoot(page, "dashboard-ends")


def test_the_administrators_sessions_page_says_when_each_ends_in_local_time(
        open_page: Callable[..., Page], fit: dict[str, Any], shoot: Callable[[Page, str], None]) -> None:
    page = open_page("admin")
    page.goto("/admin/sessions")
    for language in ("zh_CN", "en"):
        check_ends(page, "tr", fit, language)
    shoot(page, "admin-sessions-ends")
