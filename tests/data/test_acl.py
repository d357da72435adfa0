"""Proposal ACLs: what getfacl and the kernel see after set_tree_acl, and what it leaves alone."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from beamhub.data.access import Caller, may_read
from beamhub.data.acl import AccessList, read_access, set_path_acl, set_tree_acl
from beamhub.errors import Invalid, NotFound

DAQ, DAQ_GROUP = 61100, 62100
ALICE, BOB, MALLORY = 61000, 61001, 61005
STAFF, EVERYONE = 62050, 62099
MEMBERS = AccessList(users=frozenset({ALICE, BOB}), groups=frozenset({STAFF}))


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory every UID can search, under /tmp."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it sets ACLs on others' files and reads them under other UIDs")
    if shutil.which("getfacl") is None:
        pytest.skip("getfacl not installed: apt-get install acl")
    path = Path(tempfile.mkdtemp(prefix="beamhub-acl-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def proposal(base: Path) -> Path:
    """A proposal tree the DAQ wrote, with a symlink to a file and one to a directory outside it."""
    outside = base / "outside"
    outside.mkdir(mode=0o755)
    (outside / "secret").write_bytes(b"not for members")
    root = base / "p1"
    tree = {"raw": 0o750, "raw/sub": 0o755, "processed": 0o700}
    files = {"raw/scan1.h5": 0o640, "raw/sub/frame.tif": 0o600, "processed/notes.txt": 0o644,
             "processed/run.sh": 0o750}
    root.mkdir(mode=0o750)
    for name, mode in tree.items():
        (root / name).mkdir(mode=mode)
    for name, mode in files.items():
        (root / name).write_bytes(b"data")
        (root / name).chmod(mode)
    (root / "raw" / "escape").symlink_to("../../outside/secret")
    (root / "outdir").symlink_to(outside)
    for path in [root, *root.rglob("*")]:
        os.chown(path, DAQ, DAQ_GROUP, follow_symlinks=False)
    return root


def getfacl(path: Path) -> set[str]:
    result = subprocess.run(["getfacl", "--omit-header", "--numeric", "--absolute-names", "--no-effective",
                             str(path)], check=True, capture_output=True, text=True)
    return {line for line in result.stdout.splitlines() if line}


def kernel_reads(path: Path, uid: int, *gids: int) -> bool:
    """Whether `cat path` succeeds in a real process under uid and gids."""
    groups = list(gids) or [uid + 1000]
    result = subprocess.run(["cat", str(path)], user=uid, group=groups[0], extra_groups=groups,
                            capture_output=True)
    return result.returncode == 0


def expected_acl(owner: str, reader: str, named: AccessList = MEMBERS) -> set[str]:
    lines = {f"user::{owner}", "group::---", "other::---"}
    lines |= {f"user:{uid}:{reader}" for uid in named.users} | {f"group:{gid}:{reader}" for gid in named.groups}
    return lines | ({f"mask::{reader}"} if named.users or named.groups else set())


def test_files_get_an_access_acl_and_directories_a_default_one_too(proposal: Path) -> None:
    count = set_tree_acl(proposal, MEMBERS)

    assert count == 8  # the root, 3 directories and 4 files: the two symlinks are not counted
    assert getfacl(proposal / "raw" / "scan1.h5") == expected_acl("rw-", "r--")
    assert getfacl(proposal / "processed" / "run.sh") == expected_acl("rwx", "r--")
    directory = expected_acl("rwx", "r-x")
    for path in (proposal, proposal / "raw" / "sub"):
        assert getfacl(path) == directory | {f"default:{line}" for line in directory}
    assert kernel_reads(proposal / "raw" / "sub" / "frame.tif", ALICE)
    assert kernel_reads(proposal / "processed" / "notes.txt", MALLORY + 1, STAFF)
    assert not kernel_reads(proposal / "raw" / "scan1.h5", MALLORY, DAQ_GROUP)


def test_a_file_the_daq_writes_later_inherits_the_readers(proposal: Path) -> None:
    set_tree_acl(proposal, MEMBERS)
    new = proposal / "raw" / "scan2.h5"
    subprocess.run(["sh", "-c", f"umask 022; echo frames > {new}"], user=DAQ, group=DAQ_GROUP, check=True)

    # The directory's r-x entries are inherited as they are; the mask, from the create mode, takes x away.
    assert getfacl(new) == expected_acl("rw-", "r-x") - {"mask::r-x"} | {"mask::r--"}
    assert kernel_reads(new, BOB)
    assert not kernel_reads(new, MALLORY)


def test_replacing_the_list_removes_a_former_member_everywhere(proposal: Path) -> None:
    scan = proposal / "raw" / "scan1.h5"
    set_tree_acl(proposal, MEMBERS)
    assert kernel_reads(scan, ALICE)

    at_first_progress: list[bool] = []

    def check_alice(done: int) -> None:
        if not at_first_progress:
            at_first_progress.append(kernel_reads(scan, ALICE))

    set_tree_acl(proposal, AccessList(users=frozenset({BOB}), groups=frozenset({STAFF})), progress=check_alice)

    assert at_first_progress == [False]  # shut out by the root's ACL before any file was reached
    assert not kernel_reads(scan, ALICE)
    assert kernel_reads(scan, BOB)
    for path in [proposal, *proposal.rglob("*")]:
        if not path.is_symlink():
            assert not any(f":{ALICE}:" in line for line in getfacl(path)), path


def test_symlinks_are_skipped_and_what_they_point_at_is_untouched(proposal: Path, base: Path) -> None:
    before = {path: getfacl(path) for path in (base / "outside", base / "outside" / "secret")}

    set_tree_acl(proposal, MEMBERS)

    assert {path: getfacl(path) for path in before} == before
    (base / "outside" / "secret").chmod(0o600)
    assert not kernel_reads(proposal / "raw" / "escape", ALICE)
    with pytest.raises(Invalid):
        set_path_acl(proposal / "raw" / "escape", MEMBERS)
    with pytest.raises(Invalid):
        set_tree_acl(proposal / "outdir", MEMBERS)


def test_progress_counts_up_to_the_total_over_many_batches(proposal: Path) -> None:
    many = proposal / "raw" / "many"
    many.mkdir()
    for index in range(700):
        (many / f"frame{index:04}.tif").write_bytes(b"")
    seen: list[int] = []

    count = set_tree_acl(proposal, MEMBERS, progress=seen.append, workers=3)

    real = [p for p in [proposal, *proposal.rglob("*")] if not p.is_symlink()]
    assert count == len(real) == 8 + 1 + 700
    assert seen == sorted(seen) and seen[-1] == count
    assert all(f"user:{ALICE}:r--" in getfacl(p) for p in many.iterdir())


def test_read_access_reports_the_named_readers(proposal: Path) -> None:
    set_tree_acl(proposal, MEMBERS)
    assert read_access(proposal / "raw" / "scan1.h5") == MEMBERS
    assert read_access(proposal / "raw") == MEMBERS
    set_tree_acl(proposal, AccessList(frozenset(), frozenset()))
    assert read_access(proposal / "raw" / "scan1.h5") == AccessList(frozenset(), frozenset())
    assert stat.S_IMODE((proposal / "raw" / "scan1.h5").stat().st_mode) == 0o600


def test_after_the_embargo_the_everyone_group_reads_through_the_acl(proposal: Path) -> None:
    scan = proposal / "raw" / "scan1.h5"
    anyone = Caller(MALLORY, frozenset({MALLORY + 1000, EVERYONE}))
    set_tree_acl(proposal, MEMBERS)
    assert not kernel_reads(scan, MALLORY, *anyone.gids) and not may_read(scan, anyone)

    set_tree_acl(proposal, AccessList(MEMBERS.users, MEMBERS.groups | {EVERYONE}))

    assert kernel_reads(scan, MALLORY, *anyone.gids) and may_read(scan, anyone)


def test_a_missing_root_is_not_found(base: Path) -> None:
    with pytest.raises(NotFound):
        set_tree_acl(base / "missing", MEMBERS)
    with pytest.raises(NotFound):
        set_path_acl(base / "missing", MEMBERS)


def test_the_owner_sets_the_acl_of_a_file_its_own_bits_keep_it_from_reading(base: Path) -> None:
    """Registration run as the DAQ account, not root: a write-only file cannot be opened, its ACL is set by name."""
    folder = base / "daq"
    folder.mkdir(mode=0o755)
    written = folder / "frame.raw"
    written.write_bytes(b"data")
    written.chmod(0o200)
    for path in (folder, written):
        os.chown(path, DAQ, DAQ_GROUP)
    code = ("import sys\nfrom pathlib import Path\nfrom beamhub.data.acl import AccessList, set_path_acl\n"
            f"set_path_acl(Path(sys.argv[1]), AccessList(users=frozenset({{{ALICE}}}), groups=frozenset()))")
    subprocess.run([sys.executable, "-c", code, str(written)], check=True, user=DAQ, group=DAQ_GROUP,
                   extra_groups=[], cwd="/")
    assert read_access(written).users == {ALICE}
    assert stat.S_IMODE(written.stat().st_mode) & 0o700 == 0o200
