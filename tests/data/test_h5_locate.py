"""locate: a path of hard links is opened at once, one through a soft link is walked, one through an external
link is never crossed (even where the other file is there to be read)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from beamhub.data.h5.service import locate
from beamhub.errors import NotFound

h5py = pytest.importorskip("h5py", reason="h5py is not installed: run scripts/install.sh")


@pytest.fixture
def scan(tmp_path: Path) -> Iterator[h5py.File]:
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["inner/secret"] = np.array([4, 2, 42])
    with h5py.File(tmp_path / "scan.h5", "w") as h5:
        h5["entry/data/line"] = np.arange(5)
        h5["entry/alias"] = h5py.SoftLink("/entry/data")
        h5["entry/out"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/inner")
    with h5py.File(tmp_path / "scan.h5", "r") as h5:
        yield h5


def test_hard_and_soft_paths_reach_what_h5py_reaches(scan: h5py.File) -> None:
    for path in ("/", "/entry", "entry/data/line", "/entry/./data//line", "/entry/alias/line"):
        found = locate(scan, path)
        assert found.id == scan[path.replace("/./", "/")].id, path


def test_a_path_through_an_external_link_is_not_crossed(scan: h5py.File) -> None:
    assert isinstance(locate(scan, "/entry/out"), h5py.ExternalLink)
    with pytest.raises(NotFound, match="external links are not followed"):
        locate(scan, "/entry/out/secret")


def test_a_missing_link_or_a_dataset_used_as_a_group_is_not_found(scan: h5py.File) -> None:
    for path in ("/entry/nope", "/entry/data/line/more", "/nope/line"):
        with pytest.raises(NotFound, match="not a valid path"):
            locate(scan, path)
