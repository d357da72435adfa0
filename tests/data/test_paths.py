"""Request paths never leave the storage root, whatever their spelling; symlinks inside it are followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beamhub.data.paths import resolve_inside
from beamhub.errors import Invalid, NotFound


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/hot/bl1/p1/scan.h5 plus, beside the root, outside/secret."""
    root = tmp_path / "root"
    (root / "hot" / "bl1" / "p1").mkdir(parents=True)
    (root / "hot" / "bl1" / "p1" / "scan.h5").write_bytes(b"frames")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"not yours")
    return root


def test_a_path_below_the_root_resolves_to_its_real_path(tree: Path) -> None:
    assert resolve_inside(tree, "hot/bl1/p1/scan.h5") == tree / "hot" / "bl1" / "p1" / "scan.h5"
    assert resolve_inside(tree, "hot/./bl1//p1/scan.h5/") == tree / "hot" / "bl1" / "p1" / "scan.h5"


def test_the_empty_path_is_the_root_itself(tree: Path) -> None:
    assert resolve_inside(tree, "") == tree


@pytest.mark.parametrize("spelling", [
    "..", "../outside/secret", "hot/../../outside/secret", "hot/bl1/../../..", "hot/..",
    "/etc/passwd", "//etc/passwd",
    "%2e%2e/outside/secret", "%2E%2E/outside/secret", ".%2e/outside/secret", "hot%2f..%2f..%2foutside",
    "hot%5c..", "hot\\..\\..\\outside\\secret", "hot/bl1/p1/scan.h5\x00.txt", "hot%00",
])
def test_every_escaping_spelling_is_refused_before_the_disk_is_touched(tree: Path, spelling: str) -> None:
    with pytest.raises(Invalid):
        resolve_inside(tree, spelling)


def test_a_file_that_does_not_exist_is_not_found(tree: Path) -> None:
    with pytest.raises(NotFound):
        resolve_inside(tree, "hot/bl1/p1/missing.h5")


def test_a_symlink_to_etc_inside_the_root_is_not_found(tree: Path) -> None:
    (tree / "hot" / "etc").symlink_to("/etc")
    with pytest.raises(NotFound):
        resolve_inside(tree, "hot/etc/passwd")
    with pytest.raises(NotFound):
        resolve_inside(tree, "hot/etc")


def test_a_symlink_anywhere_on_the_way_out_of_the_root_is_not_found(tree: Path) -> None:
    (tree / "hot" / "bl1" / "p1" / "link").symlink_to(tree.parent / "outside" / "secret")
    (tree / "warm").symlink_to(tree.parent / "outside")
    (tree / "hot" / "relative").symlink_to("../../outside")
    for spelling in ("hot/bl1/p1/link", "warm/secret", "hot/relative/secret"):
        with pytest.raises(NotFound):
            resolve_inside(tree, spelling)


def test_a_symlink_that_stays_inside_the_root_resolves_to_its_target(tree: Path) -> None:
    """The caller then decides access on the target, so the target's own ACL counts."""
    (tree / "hot" / "latest").symlink_to("bl1/p1")
    assert resolve_inside(tree, "hot/latest/scan.h5") == tree / "hot" / "bl1" / "p1" / "scan.h5"


def test_a_symlink_loop_is_not_found(tree: Path) -> None:
    (tree / "loop").symlink_to("loop")
    with pytest.raises(NotFound):
        resolve_inside(tree, "loop/x")


def test_a_root_reached_through_a_symlink_still_confines(tree: Path) -> None:
    alias = tree.parent / "alias"
    alias.symlink_to(tree)
    assert resolve_inside(alias, "hot/bl1/p1/scan.h5") == tree / "hot" / "bl1" / "p1" / "scan.h5"
    with pytest.raises((Invalid, NotFound)):
        resolve_inside(alias, "../outside/secret")


@pytest.fixture(scope="module")
def tree_with_a_way_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/hot/bl1/p1/a and root/a, a symlink to the directory above the root."""
    base = tmp_path_factory.mktemp("property")
    root = base / "root"
    (root / "hot" / "bl1" / "p1").mkdir(parents=True)
    (root / "hot" / "bl1" / "p1" / "a").write_bytes(b"a")
    (root / "a").symlink_to(base)
    return root


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", ".", "..", "/", "%", "2", "e", "E", "f", "\\", "hot", "bl1", "p1"]),
                max_size=16).map("".join))
def test_whatever_is_asked_the_answer_lies_inside_the_root(tree_with_a_way_out: Path, spelling: str) -> None:
    root = tree_with_a_way_out
    try:
        found = resolve_inside(root, spelling)
    except (Invalid, NotFound):
        return
    assert found == root or root in found.parents
    assert os.path.realpath(found) == str(found)
