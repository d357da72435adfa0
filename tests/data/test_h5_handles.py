"""HDF5 files kept open between requests: one inode and version, one open file; a changed file is opened anew
and its writer is never locked out; a file its writer holds locked is refused; nothing is closed under a
request; idle files are closed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from beamhub.data.h5.handles import OpenFiles
from beamhub.errors import Conflict, Invalid

h5py = pytest.importorskip("h5py", reason="h5py is not installed: run scripts/install.sh")


def write(path: Path, values: list[int]) -> None:
    with h5py.File(path, "w") as h5:
        h5["values"] = np.array(values)


def fd(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def read(files: OpenFiles, path: Path) -> list[int]:
    with files.use(fd(path), path.name) as h5:
        return list(h5["values"][()])


def test_the_same_file_is_opened_once(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    write(path, [1, 2])
    files = OpenFiles()
    with files.use(fd(path), "a.h5") as first, files.use(fd(path), "a.h5") as second:
        assert first is second
    with files.use(fd(path), "a.h5") as third:
        assert third is first and files.kept() == 1


def daq(path: Path, values: list[int], hold: bool = False) -> subprocess.Popen[str]:
    """Another process writing `values` into the file (HDF5's file lock on, as h5py's default); with `hold` it
    keeps the file open until its stdin closes."""
    code = ("import sys, h5py\nwith h5py.File(sys.argv[1], 'w') as h5:\n    h5['values'] = eval(sys.argv[2])\n"
            "    print('open', flush=True)\n    sys.stdin.read() if sys.argv[3] == '1' else None\n")
    return subprocess.Popen([sys.executable, "-c", code, str(path), repr(values), "1" if hold else "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_a_kept_file_never_stops_its_writer_and_is_read_anew_once_written(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    write(path, [1, 2])
    files = OpenFiles()
    assert read(files, path) == [1, 2] and files.kept() == 1
    writer = daq(path, [3, 4, 5])  # the same inode, truncated and written while it is kept
    assert writer.wait(timeout=60) == 0
    assert read(files, path) == [3, 4, 5]
    write(tmp_path / "b.h5", [6])
    os.replace(tmp_path / "b.h5", path)  # another inode under the same name
    assert read(files, path) == [6]


def test_idle_files_are_closed_but_never_under_a_request(tmp_path: Path) -> None:
    write(tmp_path / "a.h5", [1])
    write(tmp_path / "b.h5", [2])
    files = OpenFiles(keep_seconds=0.05)
    with files.use(fd(tmp_path / "a.h5"), "a.h5") as busy:
        with files.use(fd(tmp_path / "b.h5"), "b.h5") as idle:
            pass
        time.sleep(0.3)
        assert busy.id.valid and not idle.id.valid
        assert list(busy["values"][()]) == [1]
    time.sleep(0.3)
    assert not busy.id.valid and files.kept() == 0


def test_no_more_than_most_are_kept(tmp_path: Path) -> None:
    files = OpenFiles(most=2)
    opened = []
    for name in ("a", "b", "c"):
        write(tmp_path / f"{name}.h5", [1])
        with files.use(fd(tmp_path / f"{name}.h5"), name) as h5:
            opened.append(h5)
    assert files.kept() == 2 and not opened[0].id.valid and opened[2].id.valid


def test_a_file_that_is_no_hdf5_is_invalid_and_its_descriptor_closed(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("not HDF5")
    descriptor = fd(tmp_path / "plain.txt")
    with pytest.raises(Invalid, match="not an HDF5 file"), OpenFiles().use(descriptor, "plain.txt"):
        pass
    with pytest.raises(OSError):
        os.fstat(descriptor)


def test_a_file_whose_writer_holds_its_lock_is_refused_for_now(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    files = OpenFiles()
    writer = daq(path, [7], hold=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "open\n"
        with pytest.raises(Conflict, match="being written"), files.use(fd(path), "a.h5"):
            pass
    finally:
        writer.communicate("", timeout=60)
    assert read(files, path) == [7]


def test_an_older_version_still_read_is_closed_by_its_last_request_and_the_newer_not_kept(tmp_path: Path) -> None:
    """HDF5 hands a second open of an inode the first one's state: so nothing is kept until the older is closed."""
    path = tmp_path / "a.h5"
    write(path, [1, 2])
    files = OpenFiles()
    with files.use(fd(path), "a.h5") as older:
        assert daq(path, [3, 4, 5]).wait(timeout=60) == 0
        with files.use(fd(path), "a.h5") as newer:
            assert newer is not older and older.id.valid and files.kept() == 0
        assert older.id.valid
    assert not older.id.valid and not newer.id.valid
    assert read(files, path) == [3, 4, 5] and files.kept() == 1


def test_with_no_keeping_every_request_opens_and_closes(tmp_path: Path) -> None:
    write(tmp_path / "a.h5", [1])
    files = OpenFiles(keep_seconds=0)
    with files.use(fd(tmp_path / "a.h5"), "a.h5") as first:
        pass
    with files.use(fd(tmp_path / "a.h5"), "a.h5") as second:
        assert second is not first and not first.id.valid
    assert not second.id.valid and files.kept() == 0
