"""Administrators do their daily work from the console (issue 14, item 5), one test per defect: they create users
and set passwords, create proposals and add or remove members, read the audit log as labelled fields; and a form's
answer cannot be sent again by reloading it (post/redirect/get)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import PASSWORD, in_language, log_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect


@pytest.fixture
def new_name() -> Iterator[str]:
    """A user name for an account the test creates through the console (its system account removed after)."""
    name = f"nu{secrets.token_hex(3)}"
    yield name
    subprocess.run(["userdel", "-r", name], capture_output=True)
    subprocess.run(["groupdel", name], capture_output=True)


def test_an_administrator_creates_a_user_and_sets_their_password(open_page: Callable[..., Page], new_name: str,
                                                                 shoot: Callable[[Page, str], None]) -> None:
    page = open_page("admin")
    page.goto("/admin/users")
    form = page.locator("#new-user form")
    form.locator("input[name=username]").fill("Not A Name")
    form.locator("button.primary").click()
    expect(page.locator(".alert")).to_contain_text("A user name has lowercase letters")
    form.locator("input[name=username]").fill(new_name)
    form.locator("input[name=display_name]").fill("Nora User")
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button.primary").click()
    expect(page.locator(".notice")).to_contain_text("The user was created")
    expect(page.locator(f"#user-{new_name}")).to_contain_text("Nora User")
    shoot(page, "admin-users-created")

    newcomer = open_page()
    log_in(newcomer, new_name)
    expect(newcomer.locator("[data-first-steps]")).to_be_visible()

    row = page.locator(f"#user-{new_name}")
    row.locator("details summary", has_text="Password").click()
    row.locator("input[name=password]").fill("a new password 2")
    row.locator("form[action$='/password'] button").click()
    expect(page.locator(".notice")).to_contain_text("The password was set")
    in_language(page, "zh_CN")
    expect(page.locator(".notice")).to_contain_text("密码已设置")
    again = open_page()
    again.goto("/login")
    again.fill("input[name=username]", new_name)
    again.fill("input[name=password]", PASSWORD)
    again.click("form[action='/login'] button.primary")
    expect(again.locator(".alert")).to_be_visible()  # the old password no longer opens the account


def test_an_administrator_creates_a_proposal_and_manages_its_members(open_page: Callable[..., Page], world: Any,
                                                                    shoot: Callable[[Page, str], None]) -> None:
    proposal = f"2026-{secrets.randbelow(10**5):05d}"
    alice = world.users["alice"]
    page = open_page("admin")
    page.goto("/admin/proposals")
    form = page.locator("#new-proposal form")
    form.locator("input[name=id]").fill(proposal)
    form.locator("input[name=title]").fill("Operando XRD")
    form.locator("input[name=beamline]").fill("b7")
    form.locator("input[name=start]").fill("2026-11-01")
    form.locator("input[name=end]").fill("2026-11-03")
    form.locator("button.primary").click()
    expect(page.locator(".notice")).to_contain_text("The proposal was created")
    card = page.locator(f"#proposal-{proposal}")
    card.locator("input[name=username]").fill(alice)
    card.locator("button", has_text="Add member").click()
    expect(page.locator(".notice")).to_contain_text("The member was added")
    expect(page.locator(f"#proposal-{proposal} [data-member='{alice}']")).to_be_visible()
    shoot(page, "admin-proposals")

    member = open_page("alice")
    member.goto("/data")
    expect(member.locator("main")).to_contain_text(proposal)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#proposal-{proposal} [data-member='{alice}'] button").click()
    expect(page.locator(".notice")).to_contain_text("The member was removed")
    member.reload()
    expect(member.locator("main")).not_to_contain_text(proposal)


def test_the_audit_log_shows_details_as_labelled_fields(open_page: Callable[..., Page], world: Any,
                                                        shoot: Callable[[Page, str], None]) -> None:
    page = open_page("admin")
    page.goto("/admin/audit?action=user.create")
    details = page.locator("tr[data-action='user.create'] td dl.detail").first
    expect(details.locator("dt", has_text="roles")).to_be_visible()
    assert "{" not in page.locator("table.audit").inner_text()
    shoot(page, "admin-audit-fields")
    in_language(page, "zh_CN")
    expect(page.locator("tr[data-action='user.create'] td dl.detail").first.locator("dt", has_text="角色"))\
        .to_be_visible()


def test_reloading_the_new_token_page_makes_no_second_token(open_page: Callable[..., Page]) -> None:
    page = open_page("bob")
    page.goto("/keys")
    name = f"reload-{secrets.token_hex(2)}"
    page.fill("form[action='/keys/tokens'] input[name=name]", name)
    page.click("form[action='/keys/tokens'] button.primary")
    expect(page.locator("[data-token-value]")).to_be_visible()
    assert page.url.split("?")[0].endswith("/keys/tokens/new")
    page.reload()
    expect(page.locator("[data-token-value]")).to_have_count(0)
    expect(page.locator("[data-token-gone]")).to_be_visible()
    page.goto("/keys")
    expect(page.locator("tr[data-token]", has_text=name)).to_have_count(1)
