"""The HDF5 viewer in the browser: a member opens a file of their proposal from the files page and h5web shows its
tree and a heatmap of a 3-D stack, read through the proposal's /h5 routes with the login cookie; a non-member gets
the not-found page."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from beamhub.config import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect
h5py = pytest.importorskip("h5py", reason="h5py is not installed: run scripts/install.sh")
np = pytest.importorskip("numpy", reason="numpy is not installed: run scripts/install.sh")

FILE = "scan1/stack.h5"


@pytest.fixture(scope="module")
def bundle() -> Path:
    """The viewer bundle the server serves; the tests skip (saying why) when it was not built."""
    directory = Path(os.environ.get("BEAMHUB_VIEWER_DIR") or Settings.model_fields["viewer_dir"].default)
    if not (directory / "viewer.js").is_file():
        pytest.skip(f"the HDF5 viewer is not built in {directory}: run scripts/install.sh (npm, esbuild)")
    return directory


@pytest.fixture(scope="module")
def stack_file(world: Any) -> str:
    """A NeXus-like file with a 3-D stack in P1, registered so that its ACL is the proposal's."""
    path = Path(world.proposals["P1"]["path"]) / FILE
    with h5py.File(path, "w") as h5:
        entry = h5.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        frames = np.fromfunction(lambda z, y, x: (x + y) * (z + 1), (3, 64, 80), dtype=np.float32)
        entry.create_dataset("stack", data=frames)
    answer = world.server.admin.post(f"/api/v1/proposals/{world.proposals['P1']['id']}/register", json={})
    assert answer.status_code == 200, answer.text
    return FILE


def test_a_member_opens_a_file_in_the_viewer_and_sees_the_tree_and_a_heatmap(
        bundle: Path, stack_file: str, open_page: Callable[..., Page], world: Any,
        shoot: Callable[[Page, str], None], screenshot_dir: Path) -> None:
    own = world.proposals["P1"]["id"]
    page = open_page("alice")
    page.goto(f"/data/{own}/files?prefix=scan1")
    page.click(f"tr[data-file='{stack_file}'] a[data-viewer]")
    expect(page.locator("section > h1")).to_have_text(f"Viewer: {stack_file}")
    explorer = page.get_by_role("treeitem", name="entry", exact=True)
    expect(explorer).to_be_visible()
    explorer.click()
    page.get_by_role("treeitem", name="stack", exact=True).click()
    expect(page.locator("#h5web canvas").first).to_be_visible()
    expect(page.get_by_role("tab", name="Heatmap")).to_be_visible()
    page.goto(f"/data/{own}/view?file={stack_file}&path=/entry/stack")
    canvas = page.locator("#h5web canvas").first
    expect(canvas).to_be_visible()
    page.wait_for_function("() => document.querySelectorAll('#h5web svg text').length > 4")
    canvas.screenshot(path=screenshot_dir / "viewer-heatmap.png")
    shoot(page, "viewer")


def test_a_non_member_cannot_open_the_viewer(bundle: Path, stack_file: str, open_page: Callable[..., Page],
                                             world: Any) -> None:
    page = open_page("bob")
    answer = page.goto(f"/data/{world.proposals['P1']['id']}/view?file={stack_file}")
    assert answer is not None and answer.status == 404
    expect(page.locator("#h5web")).to_have_count(0)
