"""The keys page and the administration pages in the browser: a token made on the page works once and is revoked
there; an administrator sees the node and every session, stops a user's session, and looks at each admin page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

ADMIN_PAGES = {"admin-users": "/admin/users", "admin-groups": "/admin/groups",
               "admin-workstations": "/admin/workstations", "admin-audit": "/admin/audit"}
"""The admin pages that are only looked at (screenshot name: address)."""


def test_a_token_made_on_the_keys_page_works_until_it_is_revoked(open_page: Callable[..., Page], world: Any,
                                                                 shoot: Callable[[Page, str], None],
                                                                 screenshot_dir: Path) -> None:
    page = open_page("alice")
    page.click("nav.main a[href='/keys']")
    expect(page.locator("h1")).to_have_text("Keys and tokens")
    page.fill("form[action='/keys/tokens'] input[name=name]", "laptop-scripts")
    page.click("form[action='/keys/tokens'] button.primary")
    token = page.locator("[data-token-value]").inner_text().strip()
    page.screenshot(path=screenshot_dir / "token-created-en.png", full_page=True)
    mine = world.server.client(token).get("/api/v1/proposals")
    assert mine.status_code == 200 and [p["id"] for p in mine.json()["items"]] == [world.proposals["P1"]["id"]]

    page.click("a.button.primary[href='/keys']")
    row = page.locator("tr[data-token]", has_text="laptop-scripts")
    expect(row).to_be_visible()
    shoot(page, "keys")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.danger").click()
    expect(page.locator(".notice")).to_contain_text("The token was revoked")
    assert world.server.client(token).get("/api/v1/proposals").status_code == 401


def test_an_administrator_sees_the_node_and_stops_a_users_session(open_page: Callable[..., Page], world: Any,
                                                                 shoot: Callable[[Page, str], None],
                                                                 require_image: None) -> None:
    started = world.server.admin.post("/api/v1/sessions", json={
        "user": world.users["alice"], "kind": "command", "command": "sleep", "args": ["600"], "ncores": 0.5,
        "memory": "256Mi", "name": "overnight-fit"})
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    world.server.wait_for_state(session_id, {"running"})
    assert open_page("alice").goto("/admin").status == 403

    page = open_page("admin")
    page.click("nav.main a[href='/admin']")
    expect(page.locator("h1")).to_have_text("Administration")
    expect(page.locator("a.tile[href='/admin/sessions'] strong")).to_have_text("1")
    shoot(page, "admin")

    page.click("nav.subnav a[href='/admin/sessions']")
    row = page.locator(f"tr[data-session='{session_id}']")
    expect(row).to_contain_text(world.users["alice"])
    expect(row).to_contain_text("overnight-fit")
    shoot(page, "admin-sessions")
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.danger").click()
    assert world.server.wait_for_state(session_id, {"stopped"})["state"] == "stopped"
    page.reload()
    expect(page.locator(f"table.ended tr[data-session='{session_id}']")).to_contain_text("stopped")

    for name, address in ADMIN_PAGES.items():
        page.click(f"nav.subnav a[href='{address}']")
        expect(page.locator("nav.subnav a[aria-current=page]")).to_have_attribute("href", address)
        shoot(page, name)
