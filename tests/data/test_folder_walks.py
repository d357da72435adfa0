"""FolderWalks: a page's ACL checks walk each folder once and answer exactly what may_read answers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from beamhub.data import access
from beamhub.data.access import Caller, FolderWalks, may_read

MEMBER = Caller(61100, frozenset({62100}))


@pytest.fixture
def proposal(require_root: None) -> Iterator[Path]:
    """root/p/{a,b}/f0..f49 (the member reads a, not b), a closed folder outside it, links into and out of it."""
    base = Path(tempfile.mkdtemp(prefix="beamhub-walks-"))
    base.chmod(0o755)
    (base / "p").mkdir(mode=0o755)
    for folder, mode in (("a", 0o755), ("b", 0o700)):
        (base / "p" / folder).mkdir(mode=mode)
        for n in range(50):
            (base / "p" / folder / f"f{n}").write_bytes(b"x")
            (base / "p" / folder / f"f{n}").chmod(0o644 if n % 7 else 0o600)
    (base / "closed").mkdir(mode=0o700)
    (base / "closed" / "secret").write_bytes(b"x")
    (base / "closed" / "secret").chmod(0o644)
    (base / "p" / "a" / "out").symlink_to(base / "closed" / "secret")
    (base / "p" / "a" / "in").symlink_to(base / "p" / "a" / "f1")
    os.link(base / "closed" / "secret", base / "p" / "a" / "hard")
    yield base
    shutil.rmtree(base)


def page(proposal: Path) -> list[Path]:
    names = [f"f{n}" for n in range(50)]
    return [proposal / "p" / folder / name for folder in ("a", "b") for name in names] + [
        proposal / "p" / "a" / name for name in ("out", "in", "hard", "missing")]


def test_a_page_walks_each_folder_once(proposal: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    walked: list[str] = []
    lookup = access._lookup
    monkeypatch.setattr(access, "_lookup", lambda path, caller: walked.append(path) or lookup(path, caller))
    walks = FolderWalks(MEMBER)
    for path in page(proposal)[:100]:
        walks.may_read(path)
    assert sorted(walked) == [f"{proposal}/p/a/.", f"{proposal}/p/b/."]
    assert walks.walks() == 2


def test_every_answer_is_may_reads_links_out_and_hard_links_included(proposal: Path) -> None:
    walks = FolderWalks(MEMBER)
    expected = [may_read(path, MEMBER) for path in page(proposal)]
    assert [walks.may_read(path) for path in page(proposal)] == expected
    assert expected[:50] == [n % 7 != 0 for n in range(50)] and not any(expected[50:100])
    assert expected[100:] == [False, True, True, False]  # a hard link: its inode's own mode, as ever


def test_a_folder_closed_on_the_way_refuses_every_file_below_it(proposal: Path) -> None:
    (proposal / "p").chmod(0o700)
    walks = FolderWalks(MEMBER)
    assert not any(walks.may_read(path) for path in page(proposal))
