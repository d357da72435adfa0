"""Who can read a path: the users the real ACL (and every directory on the way) lets in, by which entry and by which
ways in; the groups the ACL names; and a removed member drops off every way in at once."""

from __future__ import annotations

import grp
import os
import secrets
import threading
import time
from pathlib import Path

import pytest

from beamhub.config import Settings
from beamhub.data.acl import AccessList, set_path_acl, set_tree_acl
from beamhub.data.who import GroupAccess, ReadAccess, Reader, acl_groups, readers_from_users, who_can_read
from beamhub.errors import NotFound
from beamhub.identity.accounts.models import User, UserState
from beamhub.identity.principal import SYSTEM
from beamhub.services import build_services

BASE = 3_000_000 + 10_000 * secrets.randbelow(100)  # numeric ids no account on this host has
MEMBER, STAFFER, OUTSIDER, FORMER = BASE + 1, BASE + 2, BASE + 3, BASE + 4
STAFF_GID = BASE + 500
ALL = ("web", "jupyter", "smb")


def reader(name: str, uid: int, *gids: int, paths: tuple[str, ...] = ALL) -> Reader:
    return Reader(name, uid, frozenset({uid, *gids}), paths)


CANDIDATES = [reader("member", MEMBER), reader("staffer", STAFFER, STAFF_GID), reader("outsider", OUTSIDER),
              reader("former", FORMER, paths=())]


def proposal(storage: Path, users: set[int], groups: set[int]) -> Path:
    """A proposal folder with a scan file, its ACL naming users and groups."""
    folder = storage / "2024-00001"
    (folder / "scan1").mkdir(parents=True, exist_ok=True)
    (folder / "scan1" / "frame.h5").write_bytes(b"x")
    set_tree_acl(folder, AccessList(users=frozenset(users), groups=frozenset(groups)))
    return folder


def test_members_and_staff_read_and_the_answer_says_through_which_entry(storage: Path) -> None:
    folder = proposal(storage, {MEMBER, FORMER}, {STAFF_GID})
    expected = [ReadAccess("former", FORMER, f"user:{FORMER}", ()),
                ReadAccess("member", MEMBER, f"user:{MEMBER}", ALL),
                ReadAccess("staffer", STAFFER, f"group:{STAFF_GID}", ALL)]
    assert who_can_read(folder / "scan1" / "frame.h5", CANDIDATES) == expected
    assert who_can_read(folder, CANDIDATES) == expected  # a folder: reading is listing it


def test_a_named_group_is_shown_by_its_name(storage: Path) -> None:
    adm = grp.getgrnam("adm").gr_gid
    folder = proposal(storage, set(), {adm})
    staffer = reader("staffer", STAFFER, adm)
    assert who_can_read(folder / "scan1" / "frame.h5", [staffer]) == [ReadAccess("staffer", STAFFER, "group:adm", ALL)]


def test_a_folder_on_the_way_that_shuts_a_user_out_decides(storage: Path) -> None:
    folder = proposal(storage, {MEMBER, STAFFER}, set())
    frame = folder / "scan1" / "frame.h5"
    set_path_acl(folder / "scan1", AccessList(users=frozenset({MEMBER}), groups=frozenset()))
    assert [access.username for access in who_can_read(frame, CANDIDATES)] == ["member"]


def test_a_symlink_is_followed_and_the_folders_of_the_link_count_too(storage: Path) -> None:
    frame = proposal(storage, {MEMBER}, set()) / "scan1" / "frame.h5"
    for name, mode in (("shared", 0o755), ("private", 0o700)):
        (storage / name).mkdir()
        (storage / name).chmod(mode)
        (storage / name / "link").symlink_to(frame)
    assert who_can_read(storage / "shared" / "link", CANDIDATES) == [
        ReadAccess("member", MEMBER, f"user:{MEMBER}", ALL)]
    assert who_can_read(storage / "private" / "link", CANDIDATES) == []


def test_removing_a_member_takes_them_off_every_way_in_at_once(storage: Path) -> None:
    folder = proposal(storage, {MEMBER}, {STAFF_GID})
    frame = folder / "scan1" / "frame.h5"
    assert [(a.username, a.paths) for a in who_can_read(frame, CANDIDATES)] == [("member", ALL), ("staffer", ALL)]
    set_tree_acl(folder, AccessList(users=frozenset(), groups=frozenset({STAFF_GID})))
    assert [a.username for a in who_can_read(frame, CANDIDATES)] == ["staffer"]


def test_without_an_acl_the_owner_and_other_bits_answer(storage: Path) -> None:
    plain = storage / "notes.txt"
    plain.write_text("x")
    plain.chmod(0o644)
    owner = reader("owner", os.geteuid())
    assert who_can_read(plain, [owner, reader("outsider", OUTSIDER)]) == [
        ReadAccess("outsider", OUTSIDER, "other", ALL), ReadAccess("owner", os.geteuid(), "owner", ALL)]
    plain.chmod(0o640)
    assert [a.username for a in who_can_read(plain, [owner, reader("outsider", OUTSIDER)])] == ["owner"]


def test_root_reads_by_its_override_and_is_told_so(storage: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: it gives a file to another UID")
    secret = storage / "secret.txt"
    secret.write_text("x")
    secret.chmod(0o600)
    os.chown(secret, MEMBER, MEMBER)
    root = reader("root", 0)
    assert who_can_read(secret, [root, reader("outsider", OUTSIDER)]) == [ReadAccess("root", 0, "root", ALL)]


def test_the_acl_groups_are_listed_by_name_even_with_no_candidate_in_them(storage: Path) -> None:
    adm = grp.getgrnam("adm").gr_gid
    folder = proposal(storage, {MEMBER}, {adm, STAFF_GID})
    frame = folder / "scan1" / "frame.h5"
    assert acl_groups(frame) == sorted([GroupAccess("adm", adm, True), GroupAccess(str(STAFF_GID), STAFF_GID, True)],
                                       key=lambda group: group.gid)
    set_path_acl(folder / "scan1", AccessList(users=frozenset(), groups=frozenset({adm})))
    assert GroupAccess(str(STAFF_GID), STAFF_GID, False) in acl_groups(frame)  # named on the file, shut out above


def test_a_missing_path_is_not_found(storage: Path) -> None:
    with pytest.raises(NotFound):
        who_can_read(storage / "nothing", CANDIDATES)
    with pytest.raises(NotFound):
        acl_groups(storage / "nothing")


def test_a_file_replaced_again_and_again_while_it_is_asked_about_answers_and_never_fails(storage: Path) -> None:
    """A file swapped for a new one (a new inode) between the walk and the read of its ACL grants nothing that time:
    the answer lists its reader or, caught in the swap, nobody; never an error (the route's 500)."""
    target, fresh = storage / "data", storage / "fresh"
    acl = AccessList(users=frozenset({MEMBER}), groups=frozenset())
    target.write_bytes(b"x")
    set_path_acl(target, acl)
    done = threading.Event()

    def replace_again_and_again() -> None:
        while not done.is_set():
            fresh.write_bytes(b"x")
            set_path_acl(fresh, acl)
            os.rename(fresh, target)

    swapper = threading.Thread(target=replace_again_and_again)
    swapper.start()
    answers: set[tuple[str, ...]] = set()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            answers.add(tuple(a.via for a in who_can_read(target, [reader("member", MEMBER)])))
            assert acl_groups(target) == []  # the ACL names no group, whichever file it is read from
    finally:
        done.set()
        swapper.join()
    assert (f"user:{MEMBER}",) in answers
    assert answers <= {(f"user:{MEMBER}",), ()}


def test_readers_come_from_beamhubs_users_with_their_ways_in(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", manage_system_accounts=False, storage_root=tmp_path,
                        windows_domain_sid="S-1-5-21-1-2-3", idmap_range_low=BASE, idmap_range_high=BASE + 999,
                        uid_min=BASE, uid_max=BASE + 499, gid_min=BASE + 500, gid_max=BASE + 999)
    services = build_services(settings)
    try:
        identity = services.identity
        active = identity.create_user("scientist", groups=[f"bl{secrets.token_hex(3)}-staff"], by=SYSTEM)
        identity.create_user("daq", roles=["service"], by=SYSTEM)
        identity.create_user("away", by=SYSTEM)
        identity.update_user("away", state=UserState.disabled, by=SYSTEM)
        outside = identity.create_user("outside", by=SYSTEM)
        with services.db.session() as db:  # an account from before the ranges moved
            db.get(User, outside.id).uid = BASE + 5000
        readers = {r.username: r for r in readers_from_users(identity.list_users(by=SYSTEM), identity, settings)}
    finally:
        services.db.dispose()
    gids = frozenset({active.gid, *(group.gid for group in active.group_list)})
    assert len(gids) > 1
    assert readers["scientist"] == Reader("scientist", active.uid, gids, ALL)
    assert readers["daq"].paths == ("web", "smb")
    assert readers["away"].paths == ()
    assert readers["outside"].paths == ("web", "jupyter")  # no SID outside the idmap range, so no SMB
