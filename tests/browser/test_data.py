"""The data pages in the browser: a member finds their proposal and downloads a file and a dataset's zip (the bytes
on disk); a non-member sees nothing of it, and its addresses answer the not-found page."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect


def test_a_member_browses_and_downloads_their_proposal(open_page: Callable[..., Page], world: Any,
                                                       shoot: Callable[[Page, str], None]) -> None:
    own, other = world.proposals["P1"]["id"], world.proposals["P2"]["id"]
    page = open_page("alice")
    page.click("nav.main a[href='/data']")
    expect(page.locator("h1")).to_have_text("My data")
    expect(page.locator(f"tr[data-proposal='{own}']")).to_contain_text("principal investigator")
    expect(page.locator(f"tr[data-proposal='{other}']")).to_have_count(0)
    shoot(page, "data")

    page.click(f"tr[data-proposal='{own}'] a")
    expect(page.locator("h1")).to_have_text(f"Proposal {own}")
    expect(page.locator("tr[data-dataset]")).to_have_count(1)
    shoot(page, "proposal")
    with page.expect_download() as zipped:
        page.click("tr[data-dataset=scan1] a[download]")
    archive = zipfile.ZipFile(io.BytesIO(Path(zipped.value.path()).read_bytes()))
    assert {name: archive.read(name) for name in archive.namelist()} == {
        name: data for name, data in world.files["P1"].items() if name.startswith("scan1/")}

    page.click("tr[data-dataset=scan1] a:not([download])")
    row = page.locator("tr[data-file='scan1/frame0001.h5']")
    expect(row).to_contain_text("frame0001.h5")
    shoot(page, "files")
    with page.expect_download() as download:
        row.locator("a[download]").click()
    assert download.value.suggested_filename == "frame0001.h5"
    assert Path(download.value.path()).read_bytes() == world.files["P1"]["scan1/frame0001.h5"]


def test_a_non_member_sees_nothing_of_the_proposal(open_page: Callable[..., Page], world: Any,
                                                   shoot: Callable[[Page, str], None]) -> None:
    own, other = world.proposals["P1"]["id"], world.proposals["P2"]["id"]
    page = open_page("bob")
    page.goto("/data")
    expect(page.locator(f"tr[data-proposal='{other}']")).to_be_visible()
    expect(page.locator(f"tr[data-proposal='{own}']")).to_have_count(0)
    assert own not in page.content()

    for address in (f"/data/{own}", f"/data/{own}/files?prefix=scan1"):
        answer = page.goto(address)
        assert answer is not None and answer.status == 404, address
        expect(page.locator("h1")).to_have_text("Not found")
        expect(page.locator("main")).not_to_contain_text("frame0001")
    shoot(page, "not-found")
    for path in world.files["P1"]:
        assert page.request.get(f"/api/v1/proposals/{own}/files/{path}").status == 404, path
    assert page.request.get(f"/api/v1/proposals/{own}/datasets/scan1/zip").status == 404
