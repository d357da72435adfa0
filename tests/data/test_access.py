"""may_access (and FolderWalks, a page's shared walks, and open_readable, the descriptor walk to a file) answer what
the kernel's access(2) answers, for random ACLs, owners and callers."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import posix1e
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beamhub.data.access import Caller, FolderWalks, may_access, may_read
from beamhub.data.paths import open_readable
from beamhub.errors import NotFound
from helpers.kernel import kernel_access

UIDS = [61000, 61001, 61002, 61003]
GIDS = [62000, 62001, 62002, 62003]
MODES = [os.R_OK, os.W_OK, os.X_OK, os.F_OK]
MIN_COMPARISONS = 5000


@dataclass(frozen=True)
class Node:
    """One directory or file of a random chain: owner, group and the access ACL it gets."""

    uid: int
    gid: int
    user_obj: int
    group_obj: int
    other: int
    users: dict[int, int]
    groups: dict[int, int]
    mask: int | None


@st.composite
def nodes(draw: st.DrawFn) -> Node:
    users = draw(st.dictionaries(st.sampled_from(UIDS), st.integers(0, 7), max_size=3))
    groups = draw(st.dictionaries(st.sampled_from(GIDS), st.integers(0, 7), max_size=3))
    named = bool(users or groups)
    mask = draw(st.integers(0, 7) if named else st.none() | st.integers(0, 7))
    return Node(draw(st.sampled_from(UIDS)), draw(st.sampled_from(GIDS)), draw(st.integers(0, 7)),
                draw(st.integers(0, 7)), draw(st.integers(0, 7)), users, groups, mask)


callers = st.builds(Caller, st.sampled_from([*UIDS, 61009, 0]),
                    st.frozensets(st.sampled_from([*GIDS, 62009]), min_size=1, max_size=3))


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A directory every UID can search, under /tmp."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it gives files to other UIDs and runs access(2) under their UIDs")
    path = Path(tempfile.mkdtemp(prefix="beamhub-access-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def apply_node(path: Path, node: Node) -> None:
    os.chown(path, node.uid, node.gid)
    acl = posix1e.ACL()
    add_entry(acl, posix1e.ACL_USER_OBJ, node.user_obj)
    for uid, bits in node.users.items():
        add_entry(acl, posix1e.ACL_USER, bits, uid)
    add_entry(acl, posix1e.ACL_GROUP_OBJ, node.group_obj)
    for gid, bits in node.groups.items():
        add_entry(acl, posix1e.ACL_GROUP, bits, gid)
    if node.mask is not None:
        add_entry(acl, posix1e.ACL_MASK, node.mask)
    add_entry(acl, posix1e.ACL_OTHER, node.other)
    acl.applyto(str(path))


def add_entry(acl: posix1e.ACL, tag: int, bits: int, qualifier: int | None = None) -> None:
    entry = acl.append()
    entry.tag_type = tag
    if qualifier is not None:
        entry.qualifier = qualifier
    entry.permset.read, entry.permset.write, entry.permset.execute = bool(bits & 4), bool(bits & 2), bool(bits & 1)


def build_chain(root: Path, chain: list[Node], leaf_is_dir: bool) -> list[str]:
    """Create root/d0/d1/.../leaf with the nodes' owners and ACLs; return the paths worth asking about."""
    root.mkdir(mode=0o755)
    paths, current = [], root
    for depth in range(len(chain)):
        current = current / f"n{depth}"
        if depth < len(chain) - 1 or leaf_is_dir:
            current.mkdir()
        else:
            current.write_bytes(b"data")
        paths.append(str(current))
    # Links the walk must follow: absolute to the leaf, and '..' from inside the first directory.
    (root / "abs").symlink_to(current)
    (root / "n0" / "up").symlink_to("..")
    paths += [str(root / "abs"), str(root / "n0" / "up" / current.relative_to(root))]
    for path, node in zip(paths, chain, strict=False):  # the links added last have no node
        apply_node(Path(path), node)
    return paths


def opens(base: Path, path: str, caller: Caller) -> bool:
    """Whether open_readable gives caller the file at `path` (asked relative to base): that very inode."""
    try:
        fd = open_readable(base, os.path.relpath(path, base), caller)
    except NotFound:
        return False
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    finally:
        os.close(fd)


def test_may_access_agrees_with_the_kernel_on_random_acls(base: Path) -> None:
    compared = [0]

    @settings(max_examples=160, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(chain=st.lists(nodes(), min_size=2, max_size=4), leaf_is_dir=st.booleans(),
           people=st.lists(callers, min_size=3, max_size=4))
    def agrees(chain: list[Node], leaf_is_dir: bool, people: list[Caller]) -> None:
        root = base / f"case{compared[0]}"
        try:
            paths = build_chain(root, chain, leaf_is_dir)
            queries = [(path, mode) for path in paths for mode in MODES]
            for caller in people:
                kernel = kernel_access(caller, queries)
                ours = [may_access(Path(path), caller, mode) for path, mode in queries]
                disagreements = [(q, k) for q, k, o in zip(queries, kernel, ours, strict=True) if k != o]
                assert not disagreements, f"{caller}: (path, mode), kernel says: {disagreements}"
                walks = FolderWalks(caller)
                reads = [(path, k) for (path, mode), k in zip(queries, kernel, strict=True) if mode == os.R_OK]
                assert [walks.may_read(Path(path)) for path, _ in reads] == [k for _, k in reads], (caller, reads)
                files = [k and os.path.isfile(path) for path, k in reads]
                assert [opens(base, path, caller) for path, _ in reads] == files, (caller, reads)
                compared[0] += len(queries)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    agrees()
    print(f"may_access agreed with access(2) in {compared[0]} cases")
    assert compared[0] >= MIN_COMPARISONS


@pytest.fixture
def shared(base: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(dir=base))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_an_empty_mask_falls_back_to_the_mode_bits_as_in_the_kernel(shared: Path) -> None:
    """A named user whose entry the mask blanks out still reads through 'other', because Linux does."""
    data = shared / "data"
    data.write_bytes(b"x")
    subprocess.run(["setfacl", "-m", "u::rw-,u:61000:r--,g::---,m::---,o::r--", str(data)], check=True)
    assert may_read(data, Caller(61000, frozenset({62000})))
    subprocess.run(["setfacl", "-m", "m::--x", str(data)], check=True)
    assert not may_read(data, Caller(61000, frozenset({62000})))
    assert may_read(data, Caller(61001, frozenset({62000})))


def test_a_symlink_is_judged_by_its_target_and_the_directories_on_the_way(shared: Path) -> None:
    closed = shared / "closed"
    closed.mkdir(mode=0o700)
    (closed / "secret").write_bytes(b"x")
    (closed / "secret").chmod(0o644)
    link = shared / "link"
    link.symlink_to(closed / "secret")
    someone = Caller(61000, frozenset({62000}))
    assert not may_read(link, someone)
    closed.chmod(0o711)
    assert may_read(link, someone)


def test_a_missing_path_or_a_file_used_as_a_directory_is_refused(shared: Path) -> None:
    (shared / "file").write_bytes(b"x")
    (shared / "file").chmod(0o644)
    anyone = Caller(61000, frozenset({62000}))
    assert may_read(shared / "file", anyone)
    assert not may_read(shared / "missing", anyone)
    assert not may_read(shared / "file" / "below", anyone)
    assert not may_access(f"{shared / 'file'}/", anyone, os.F_OK)  # type: ignore[arg-type]


def test_root_reads_anything_but_executes_only_what_has_an_x_bit(shared: Path) -> None:
    data = shared / "data"
    data.write_bytes(b"x")
    data.chmod(0o000)
    root = Caller(0, frozenset({0}))
    assert may_read(data, root) and may_access(data, root, os.W_OK)
    assert not may_access(data, root, os.X_OK)
    data.chmod(0o001)
    assert may_access(data, root, os.X_OK)


def test_a_directory_is_read_with_r_and_entered_with_x(shared: Path) -> None:
    folder = shared / "folder"
    folder.mkdir(mode=0o704)
    someone = Caller(61000, frozenset({62000}))
    assert may_read(folder, someone) and not may_access(folder, someone, os.X_OK)
    folder.chmod(0o701)
    assert not may_read(folder, someone) and may_access(folder, someone, os.X_OK)


def test_a_mode_outside_rwx_is_a_programming_error(shared: Path) -> None:
    with pytest.raises(ValueError):
        may_access(shared, Caller(0, frozenset()), 0o10)


def test_the_owner_is_judged_by_the_owner_bits_alone(shared: Path) -> None:
    data = shared / "data"
    data.write_bytes(b"x")
    os.chown(data, 61000, 62000)
    data.chmod(0o077)
    assert not may_read(data, Caller(61000, frozenset({62000})))
    assert may_read(data, Caller(61001, frozenset({62000})))
    assert stat.S_IMODE(data.stat().st_mode) == 0o077


def test_nobody_writes_an_immutable_file_not_even_root(shared: Path) -> None:
    data = shared / "data"
    data.write_bytes(b"x")
    data.chmod(0o666)
    if subprocess.run(["chattr", "+i", str(data)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        callers = [Caller(0, frozenset({0})), Caller(61000, frozenset({62000}))]
        queries = [(str(data), os.W_OK), (str(data), os.R_OK)]
        for caller in callers:
            assert [may_access(data, caller, mode) for _, mode in queries] == kernel_access(caller, queries)
        assert not may_access(data, callers[0], os.W_OK)
    finally:
        subprocess.run(["chattr", "-i", str(data)], check=True)
