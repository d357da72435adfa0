"""The catalogue: proposals are known only to their members, their beamline's staff and (after the embargo) everyone;
members are managed by admins, staff and the PI; file listings page by path, stay inside their folder and show only
what the file's real ACL lets the caller read."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from beamhub.config import Settings
from beamhub.data.acl import AccessList, read_access, set_path_acl
from beamhub.data.browsing import service as browse
from beamhub.data.models import MemberRole
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.errors import Forbidden, Invalid, NotFound
from beamhub.identity.principal import Principal
from beamhub.services import build_services

ADMIN = Principal(username="admin-test", user_id=None, roles=frozenset({"admin"}))
NOW = datetime.now(UTC)


def proposal_body(beamline: str, *members: tuple[str, str], embargo: datetime | None = None) -> ProposalCreate:
    return ProposalCreate(id=f"2024-{secrets.randbelow(10**5):05d}", title="Operando battery CT", beamline=beamline,
                          beamtime_start=NOW - timedelta(days=2), beamtime_end=NOW - timedelta(days=1),
                          embargo_until=embargo, members=[{"username": u, "role": r} for u, r in members])



@pytest.fixture
def services(require_root: None, tmp_path: Path, database_url: str, storage: Path,
             uid_range_env: dict[str, str]) -> Iterator[Any]:
    settings = Settings(state_dir=tmp_path / "state", database_url=database_url, storage_root=storage,
                        uid_min=int(uid_range_env["BEAMHUB_UID_MIN"]), uid_max=int(uid_range_env["BEAMHUB_UID_MAX"]))
    built = build_services(settings)
    yield built
    built.db.dispose()


@pytest.fixture
def beamline() -> str:
    return f"bl{secrets.token_hex(3)}"


def new_user(services: Any, system_users: list[str], **fields: Any) -> Principal:
    username = f"dc{secrets.token_hex(3)}"
    system_users.append(username)
    return services.identity.principal_of(services.identity.create_user(username, **fields, by=ADMIN))


def write(folder: Path, relpath: str, data: bytes = b"x") -> Path:
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_proposal_ids_beamlines_and_beamtimes_are_validated() -> None:
    good = proposal_body("b7")
    for change in ({"id": "2024-123"}, {"id": "../etc"}, {"beamline": "B7/../x"}, {"beamline": ""},
                   {"beamtime_end": NOW - timedelta(days=30)}, {"beamtime_start": datetime(2024, 1, 1)}):
        with pytest.raises(ValidationError):
            ProposalCreate(**{**good.model_dump(), **change})


def test_a_member_knows_their_proposal_and_a_stranger_does_not(services: Any, system_users: list[str],
                                                                 beamline: str) -> None:
    alice, bob = new_user(services, system_users), new_user(services, system_users)
    proposal = services.data.create(ADMIN, proposal_body(beamline, (alice.username, "pi")))
    assert [p.id for p in services.data.list(alice, None, 100)] == [proposal.id]
    assert services.data.get(alice, proposal.id).members[0].role is MemberRole.pi
    assert proposal.id not in {p.id for p in services.data.list(bob, None, 100)}
    with pytest.raises(NotFound):
        services.data.get(bob, proposal.id)
    with pytest.raises(NotFound):
        services.browse.files(bob, proposal.id, "", None, 10)


def test_staff_create_and_manage_the_proposals_of_their_beamline_only(services: Any, system_users: list[str],
                                                                      beamline: str) -> None:
    staff = new_user(services, system_users, roles=["staff"], beamlines=[beamline.upper()])
    member = new_user(services, system_users)
    proposal = services.data.create(staff, proposal_body(beamline))
    services.data.set_member(staff, proposal.id, member.username, MemberRole.pi)
    assert proposal.id in {p.id for p in services.data.list(staff, None, 100)}
    with pytest.raises(Forbidden):
        services.data.create(staff, proposal_body(f"{beamline}x"))
    other = services.data.create(ADMIN, proposal_body(f"{beamline}x"))
    with pytest.raises(NotFound):
        services.data.set_member(staff, other.id, member.username, MemberRole.member)


def test_a_pi_adds_and_removes_members_but_not_pis(services: Any, system_users: list[str], beamline: str) -> None:
    pi, other_pi, carol = (new_user(services, system_users) for _ in range(3))
    proposal = services.data.create(ADMIN, proposal_body(beamline, (pi.username, "pi"), (other_pi.username, "pi")))
    services.data.set_member(pi, proposal.id, carol.username, MemberRole.member)
    assert services.data.get(carol, proposal.id).id == proposal.id
    with pytest.raises(Forbidden):
        services.data.set_member(pi, proposal.id, carol.username, MemberRole.pi)
    with pytest.raises(Forbidden):
        services.data.remove_member(pi, proposal.id, other_pi.username)
    with pytest.raises(Forbidden):
        services.data.set_member(carol, proposal.id, carol.username, MemberRole.pi)
    services.data.remove_member(pi, proposal.id, carol.username)
    with pytest.raises(NotFound):
        services.data.get(carol, proposal.id)


def test_file_pages_follow_path_order_and_stay_inside_their_folder(services: Any, system_users: list[str],
                                                                   beamline: str) -> None:
    alice = new_user(services, system_users)
    proposal = services.data.create(ADMIN, proposal_body(beamline, (alice.username, "member")))
    folder = services.data.proposal_dir(proposal)
    names = [f"a/{i:02d}.h5" for i in range(12)] + ["a/b/deep.h5", "a-b/x.h5", "a0/y.h5", "ab/z.h5", "top.h5"]
    for name in names:
        write(folder, name)
    services.registration.register(ADMIN, proposal.id)
    seen, after = [], None
    while True:
        page, after = services.browse.files(alice, proposal.id, "", after, 5)
        seen += [f.relpath for f in page]
        if after is None:
            break
    assert seen == sorted(names)
    inside, cursor = services.browse.files(alice, proposal.id, "a", None, 100)
    assert [f.relpath for f in inside] == sorted(n for n in names if n.startswith("a/")) and cursor is None
    assert [f.relpath for f in services.browse.files(alice, proposal.id, "a/b/", None, 100)[0]] == ["a/b/deep.h5"]


def test_listings_show_only_what_the_real_acl_lets_the_caller_read(services: Any, system_users: list[str],
                                                                   beamline: str) -> None:
    alice = new_user(services, system_users)
    proposal = services.data.create(ADMIN, proposal_body(beamline, (alice.username, "member")))
    folder = services.data.proposal_dir(proposal)
    write(folder, "scan1/open.h5")
    hidden = write(folder, "scan1/withheld.h5")
    write(folder, "private/only-staff.h5")
    services.registration.register(ADMIN, proposal.id)
    set_path_acl(hidden, AccessList(users=frozenset(), groups=frozenset()))
    set_path_acl(folder / "private", AccessList(users=frozenset(), groups=frozenset()))
    assert [f.relpath for f in services.browse.files(alice, proposal.id, "", None, 100)[0]] == ["scan1/open.h5"]
    assert [d.name for d in services.browse.datasets(alice, proposal.id, None, 100)] == ["scan1"]
    assert len(services.browse.files(ADMIN, proposal.id, "", None, 100)[0]) == 3
    with pytest.raises(NotFound):
        services.browse.readable_file(alice, proposal.id, "scan1/withheld.h5")
    with pytest.raises(NotFound):
        services.browse.folder_entries(alice, proposal.id, "private")


def all_pages(services: Any, who: Principal, proposal_id: str, limit: int) -> tuple[list[str], list[str]]:
    """Every file the listing gives, page by page, and the cursors it handed out."""
    seen: list[str] = []
    cursors: list[str] = []
    after = None
    while True:
        page, after = services.browse.files(who, proposal_id, "", after, limit)
        seen += [f.relpath for f in page]
        if after is None:
            return seen, cursors
        cursors.append(after)


def test_a_cursor_never_names_a_file_the_caller_may_not_read(services: Any, system_users: list[str],
                                                             beamline: str, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = new_user(services, system_users)
    proposal = services.data.create(ADMIN, proposal_body(beamline, (alice.username, "member")))
    folder = services.data.proposal_dir(proposal)
    names = [f"scan1/f{i:02d}.h5" for i in range(20)]
    for name in names:
        write(folder, name)
    services.registration.register(ADMIN, proposal.id)
    hidden = {"scan1/f02.h5", *names[8:15]}  # the last row of the first 3, and a run longer than a page's scan
    for name in hidden:
        set_path_acl(folder / name, AccessList(users=frozenset(), groups=frozenset()))
    visible = [n for n in names if n not in hidden]
    page, cursor = services.browse.files(alice, proposal.id, "", None, 3)
    assert [f.relpath for f in page] == ["scan1/f00.h5", "scan1/f01.h5", "scan1/f03.h5"] and cursor == "scan1/f03.h5"
    monkeypatch.setattr(browse, "SCAN_ROWS", 4)
    monkeypatch.setattr(browse, "CHUNK", 1)
    for limit in (1, 2, 3, 5, 100):
        seen, cursors = all_pages(services, alice, proposal.id, limit)
        assert seen == visible, limit
        assert not [c for c in cursors if any(name in c or name.rsplit("/", 1)[1] in c for name in hidden)], cursors
    assert any(c.startswith("/") for c in all_pages(services, alice, proposal.id, 1)[1])  # a run of hidden rows
    assert all_pages(services, ADMIN, proposal.id, 3)[0] == names
    with pytest.raises(Invalid):
        services.browse.files(alice, proposal.id, "", "/x/", 3)


def test_after_the_embargo_every_user_reads_through_the_public_group(services: Any, system_users: list[str],
                                                                     beamline: str, system_groups: list[str]) -> None:
    public = services.data.public_group
    if public not in {g.name for g in services.groups.list(by=ADMIN)}:
        existed = subprocess.run(["getent", "group", public], capture_output=True).returncode == 0
        services.groups.create(public, by=ADMIN)
        if not existed:
            system_groups.append(public)
    alice, reader = new_user(services, system_users), new_user(services, system_users, groups=[public])
    proposal = services.data.create(ADMIN, proposal_body(beamline, (alice.username, "pi"),
                                                         embargo=NOW + timedelta(days=365)))
    data = write(services.data.proposal_dir(proposal), "scan1/result.h5")
    services.registration.register(ADMIN, proposal.id)
    assert services.data.release_embargoes() == []
    with pytest.raises(NotFound):
        services.data.get(reader, proposal.id)
    assert services.data.release_embargoes(NOW + timedelta(days=366)) == [proposal.id]
    assert services.data.get(reader, proposal.id).embargo_released_at is not None
    assert services.groups.get(public, by=ADMIN).gid in read_access(data).groups
    assert services.browse.readable_file(reader, proposal.id, "scan1/result.h5") == data
