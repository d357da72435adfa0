"""The ACL as access.py reads it: the kernel's xattr value parsed directly, read only when the answer needs it,
and never mixed with a stat of another inode or another moment."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import posix1e
import pytest

from beamhub.data import access
from beamhub.data.access import ACCESS_XATTR, GROUP, MASK, USER, Caller, FolderWalks, may_read, parse_acl
from helpers.kernel import kernel_access

MANY = 40
UID0, GID0 = 63000, 64000


@pytest.fixture
def shared(require_root: None) -> Iterator[Path]:
    """A directory every UID can search."""
    path = Path(tempfile.mkdtemp(prefix="beamhub-aclread-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def setfacl(path: Path, spec: str) -> None:
    subprocess.run(["setfacl", "-m", spec, str(path)], check=True)


def agree(paths: list[Path], callers: list[Caller]) -> None:
    """may_read and FolderWalks.may_read answer what access(2) answers, for every caller and path."""
    for caller in callers:
        kernel = kernel_access(caller, [(str(path), os.R_OK) for path in paths])
        walks = FolderWalks(caller)
        assert [may_read(path, caller) for path in paths] == kernel, caller
        assert [walks.may_read(path) for path in paths] == kernel, caller


def test_the_parser_reads_what_setfacl_wrote_with_many_named_users_and_groups(shared: Path) -> None:
    data = shared / "data"
    data.write_bytes(b"x")
    users = ",".join(f"u:{UID0 + n}:{'r' if n % 3 else '-'}{'w' if n % 5 == 0 else '-'}x" for n in range(MANY))
    groups = ",".join(f"g:{GID0 + n}:{'r' if n % 2 else '-'}--" for n in range(MANY))
    setfacl(data, f"u::rw-,{users},g::r--,{groups},m::r-x,o::---")
    entries = parse_acl(os.getxattr(data, ACCESS_XATTR))
    named = {(tag, qualifier): bits for tag, bits, qualifier in entries if tag in (USER, GROUP)}
    expected = {(USER if e.tag_type == posix1e.ACL_USER else GROUP, e.qualifier):
                e.permset.read << 2 | e.permset.write << 1 | e.permset.execute
                for e in posix1e.ACL(file=str(data)) if e.tag_type in (posix1e.ACL_USER, posix1e.ACL_GROUP)}
    assert named == expected and len(named) == 2 * MANY
    assert [bits for tag, bits, _ in entries if tag == MASK] == [0o5]
    callers = [Caller(UID0 + n, frozenset({GID0 + (n * 7) % MANY, 64999})) for n in range(0, MANY, 3)]
    agree([data], [*callers, Caller(63999, frozenset({GID0 + 1})), Caller(63999, frozenset({64999}))])


def test_a_folders_default_acl_is_not_its_access_acl(shared: Path) -> None:
    folder = shared / "folder"
    folder.mkdir(mode=0o750)
    setfacl(folder, "d:u:63001:r-x,d:g:64001:r-x,d:m::r-x")  # what new files get, not who reads the folder
    setfacl(folder, "u:63002:r-x,m::r-x")
    (folder / "inherits").write_bytes(b"x")
    agree([folder, folder / "inherits"],
          [Caller(63001, frozenset({64999})), Caller(63002, frozenset({64999})), Caller(63003, frozenset({64001}))])


def test_the_mask_caps_named_entries_and_the_owning_group(shared: Path) -> None:
    data = shared / "data"
    data.write_bytes(b"x")
    os.chown(data, 63010, 64010)
    for spec in ("u:63001:r--,g::r--,g:64001:r--,m::r--,o::---", "m::-w-", "m::---,o::r--", "g::---,m::r--"):
        setfacl(data, spec)
        agree([data], [Caller(63001, frozenset({64999})), Caller(63002, frozenset({64010})),
                       Caller(63003, frozenset({64001})), Caller(63004, frozenset({64999})),
                       Caller(63010, frozenset({64999}))])


def test_the_acl_is_not_read_where_the_mode_alone_decides(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = shared / "data"
    data.write_bytes(b"x")
    os.chown(data, 63010, 64010)
    setfacl(data, "u:63001:r--,m::r--,o::---")
    reads: list[str] = []
    real_getxattr = os.getxattr
    monkeypatch.setattr(access.os, "getxattr",  # by name: a folder's entry is read through its pinned fd
                        lambda *a, **k: reads.append(os.path.basename(a[0])) or real_getxattr(*a, **k))
    owner, named = Caller(63010, frozenset({64999})), Caller(63001, frozenset({64999}))
    assert FolderWalks(owner).may_read(data) and "data" not in reads  # the owner: the owner bits
    assert FolderWalks(named).may_read(data) and reads.count("data") == 1
    setfacl(data, "m::-w-")  # neither the mask nor other grants r: nobody but the owner reads it
    reads.clear()
    assert not FolderWalks(named).may_read(data) and "data" not in reads


def test_each_distinct_acl_of_a_page_is_evaluated_once(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(20):
        (shared / f"f{n}").write_bytes(b"x")
        setfacl(shared / f"f{n}", f"u:63001:{'r' if n % 2 else '-'}--,m::r--,o::---")
    parsed: list[bytes] = []
    real_parse = access.parse_acl
    monkeypatch.setattr(access, "parse_acl", lambda value: parsed.append(value) or real_parse(value))
    walks = FolderWalks(Caller(63001, frozenset({64999})))
    assert [walks.may_read(shared / f"f{n}") for n in range(20)] == [n % 2 == 1 for n in range(20)]
    assert len(parsed) == 2


def test_a_file_whose_acl_changes_between_stat_and_read_gets_no_stale_answer(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The named user loses read after the stat: the answer is never the old ACL's yes."""
    data = shared / "data"
    data.write_bytes(b"x")
    setfacl(data, "u:63001:r--,m::r--,o::---")
    real_getxattr = os.getxattr

    def revoke_first(path: str, *args: object, **kwargs: object) -> bytes:
        if os.path.basename(path) == "data":  # the file's own ACL read, after its stat (not a folder's)
            setfacl(data, "u:63001:---")
            monkeypatch.setattr(access.os, "getxattr", real_getxattr)
        return real_getxattr(path, *args, **kwargs)  # type: ignore[arg-type]

    member = Caller(63001, frozenset({64999}))
    assert FolderWalks(member).may_read(data)
    monkeypatch.setattr(access.os, "getxattr", revoke_first)
    assert not FolderWalks(member).may_read(data)


def test_a_file_replaced_between_stat_and_read_is_refused(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that denies, swapped for one that grants after its stat: the mix of the two is never taken."""
    data, other = shared / "data", shared / "other"
    for path, bits in ((data, "---"), (other, "r--")):
        path.write_bytes(b"x")
        setfacl(path, f"u:63001:{bits},m::r--,o::---")
    real_getxattr = os.getxattr

    def swap_first(path: str, *args: object, **kwargs: object) -> bytes:
        if os.path.basename(path) == "data":  # the file's own ACL read, after its stat (not a folder's)
            os.rename(other, data)
            monkeypatch.setattr(access.os, "getxattr", real_getxattr)
        return real_getxattr(path, *args, **kwargs)  # type: ignore[arg-type]

    member = Caller(63001, frozenset({64999}))
    monkeypatch.setattr(access.os, "getxattr", swap_first)
    assert not FolderWalks(member).may_read(data)
    assert FolderWalks(member).may_read(data)  # asked again: the file now there grants


def test_a_folder_renamed_after_it_was_walked_judges_its_own_files(shared: Path) -> None:
    """A page's folder, walked and pinned, then renamed and replaced by another whose file of the same name grants:
    the file is judged by the pinned folder's file, its stat and its ACL together."""
    folder = shared / "scan"
    folder.mkdir()
    (folder / "first").write_bytes(b"x")
    (folder / "data").write_bytes(b"x")
    setfacl(folder / "data", "u:63001:---,m::r--,o::---")
    member = Caller(63001, frozenset({64999}))
    walks = FolderWalks(member)
    assert walks.may_read(folder / "first")  # walks to the folder and pins it
    folder.rename(shared / "old")
    folder.mkdir()
    (folder / "data").write_bytes(b"x")
    setfacl(folder / "data", "u:63001:r--,m::r--,o::---")
    assert not walks.may_read(folder / "data")
    assert FolderWalks(member).may_read(folder / "data")  # a new page walks to the new folder


def test_a_symlink_in_a_page_is_walked_in_full(shared: Path) -> None:
    closed = shared / "closed"
    closed.mkdir(mode=0o700)
    (closed / "secret").write_bytes(b"x")
    setfacl(closed / "secret", "u:63001:r--,m::r--")
    (shared / "link").symlink_to(closed / "secret")
    member = Caller(63001, frozenset({64999}))
    assert not FolderWalks(member).may_read(shared / "link")
    setfacl(closed, "u:63001:--x,m::--x")
    assert FolderWalks(member).may_read(shared / "link")


@pytest.mark.parametrize("value", [b"", b"\x02\x00\x00", b"\x01\x00\x00\x00", b"\x02\x00\x00\x00\x01\x00"])
def test_a_value_that_is_no_acl_is_refused_by_the_parser(value: bytes) -> None:
    with pytest.raises(ValueError):
        parse_acl(value)
