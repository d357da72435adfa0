"""A hard link made into one proposal's folder to a file of another proposal: registering it, changing members or
watching never re-ACLs that inode (its own members keep it, the other proposal's do not get it), the link is
refused and reported, and nobody downloads it through the proposal it was linked into. Hard links that stay
inside one proposal are registered as any file."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from beamhub.data.acl import read_access
from beamhub.data.models import DataFile, MemberRole
from beamhub.errors import NotFound
from helpers.accounts import read_as
from helpers.data import ADMIN, new_proposal, new_user, write

BIN = Path(sys.executable).parent


@dataclass
class Two:
    """Alice's proposal P1 holding a registered secret, and Bob's proposal P2 beside it."""

    alice: Any
    bob: Any
    p1: Any
    p2: Any
    secret: Path
    folder2: Path


@pytest.fixture
def two(services: Any, system_users: list[str]) -> Iterator[Two]:
    beamline = f"bl{secrets.token_hex(3)}"
    group = services.groups.create(f"{beamline}-staff", by=ADMIN)
    alice, bob = (new_user(services, system_users) for _ in range(2))
    p1, p2 = new_proposal(services, beamline, alice), new_proposal(services, beamline, bob)
    secret = write(services.data.proposal_dir(p1), "scan1/secret.h5", b"alice's frames")
    services.registration.register(ADMIN, p1.id)
    yield Two(alice, bob, p1, p2, secret, services.data.proposal_dir(p2))
    subprocess.run(["groupdel", group.name], capture_output=True)


def getfacl(path: Path) -> str:
    return subprocess.run(["getfacl", "-cn", str(path)], capture_output=True, text=True, check=True).stdout


def catalogued(services: Any, proposal_id: str) -> set[str]:
    with services.db.session() as db:
        return set(db.scalars(select(DataFile.relpath).where(DataFile.proposal_id == proposal_id)))


def assert_untouched(two: Two, before: str) -> None:
    """P1's file keeps its ACL: Alice reads it, Bob does not, through either name."""
    assert getfacl(two.secret) == before and read_access(two.secret).users == {two.alice.uid}
    assert read_as(two.alice.username, two.secret) == "alice's frames"
    assert read_as(two.bob.username, two.secret) == "PermissionError"
    assert read_as(two.bob.username, two.folder2 / "scan1/stolen.h5") == "PermissionError"


def test_registering_a_link_to_another_proposals_file_refuses_it_and_leaves_its_acl(services: Any, two: Two) -> None:
    before = getfacl(two.secret)
    write(two.folder2, "scan1/own.h5", b"bob's frames")
    os.link(two.secret, two.folder2 / "scan1/stolen.h5")
    result = services.registration.register(ADMIN, two.p2.id)
    assert result.refused == ["scan1/stolen.h5"] and (result.files, result.added) == (1, 1)
    assert catalogued(services, two.p2.id) == {"scan1/own.h5"}
    assert_untouched(two, before)
    bob = services.identity.principal_of(two.bob)
    with pytest.raises(NotFound):
        services.browse.readable_file(bob, two.p2.id, "scan1/stolen.h5")
    assert [f.relpath for f in services.browse.files(bob, two.p2.id, "", None, 100)[0]] == ["scan1/own.h5"]
    for relative in ("scan1", "scan1/stolen.h5"):  # a folder, the file itself: still refused
        assert services.registration.register(ADMIN, two.p2.id, relative).refused == ["scan1/stolen.h5"]
    assert_untouched(two, before)


def test_a_member_change_does_not_re_acl_a_linked_file(services: Any, two: Two, system_users: list[str]) -> None:
    before = getfacl(two.secret)
    (two.folder2 / "scan1").mkdir()
    os.link(two.secret, two.folder2 / "scan1/stolen.h5")
    carol = new_user(services, system_users)
    services.data.set_member(ADMIN, two.p2.id, carol.username, MemberRole.member)
    services.data.remove_member(ADMIN, two.p1.id, two.alice.username)
    services.data.set_member(ADMIN, two.p1.id, two.alice.username, MemberRole.member)
    assert_untouched(two, before)
    assert read_as(carol.username, two.folder2 / "scan1/stolen.h5") == "PermissionError"


def test_a_record_made_before_the_link_is_dropped(services: Any, two: Two) -> None:
    """A file registered in P2, then replaced by a link to P1's file: its old record goes, nobody lists it."""
    write(two.folder2, "scan1/stolen.h5", b"bob's old frames")
    services.registration.register(ADMIN, two.p2.id)
    (two.folder2 / "scan1/stolen.h5").unlink()
    os.link(two.secret, two.folder2 / "scan1/stolen.h5")
    result = services.registration.register(ADMIN, two.p2.id)
    assert result.refused == ["scan1/stolen.h5"] and result.removed == 1
    assert catalogued(services, two.p2.id) == set()


def test_the_watchers_way_refuses_the_link_too(services: Any, two: Two) -> None:
    before = getfacl(two.secret)
    (two.folder2 / "scan1").mkdir()
    os.link(two.secret, two.folder2 / "scan1/stolen.h5")
    result = services.registration.register_files(ADMIN, two.p2.id, two.p2.tier, [two.folder2 / "scan1/stolen.h5"])
    assert result.refused == ["scan1/stolen.h5"] and result.added == 0
    assert_untouched(two, before)


def test_hard_links_inside_one_proposal_are_registered(services: Any, two: Two) -> None:
    first = write(two.folder2, "scan1/f.h5", b"bob's frames")
    (two.folder2 / "scan2").mkdir()
    os.link(first, two.folder2 / "scan2/f-again.h5")
    whole = services.registration.register(ADMIN, two.p2.id)
    assert (whole.refused, whole.added) == ([], 2)
    assert read_as(two.bob.username, two.folder2 / "scan2/f-again.h5") == "bob's frames"
    assert catalogued(services, two.p2.id) == {"scan1/f.h5", "scan2/f-again.h5"}
    again = services.registration.register(ADMIN, two.p2.id, "scan2")  # the other name is outside the folder registered
    assert (again.refused, again.unchanged) == ([], 1)
    one = services.registration.register_files(ADMIN, two.p2.id, two.p2.tier, [first])
    assert (one.refused, one.unchanged) == ([], 1)


def test_the_command_names_what_it_refused(services: Any, two: Two, env: dict[str, str]) -> None:
    os.link(two.secret, write(two.folder2, "scan1/own.h5", b"x").with_name("stolen.h5"))
    run = subprocess.run([str(BIN / "beamhub"), "data", "register", str(two.folder2), "-p", two.p2.id],
                         env={**os.environ, **env, "COLUMNS": "200"}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "refused 1 hard-linked" in run.stderr and "scan1/stolen.h5" in run.stderr
    assert "scan1/stolen.h5" not in catalogued(services, two.p2.id)
