"""Identity's services decide who may act, called directly (no HTTP): an ordinary user, bob, is refused every act on
another user, alice, and every administrator's act, and what he tried leaves nothing behind."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from beamhub.errors import Forbidden, Unauthenticated
from beamhub.identity.accounts.models import UserState
from beamhub.identity.principal import SYSTEM, Principal
from beamhub.identity.windows.service import sid_for_uid
from beamhub.services import Services, build_services
from helpers.settings import without_accounts

BASE = 3_500_000 + 10_000 * secrets.randbelow(100)  # numeric ids no account on this host has


@dataclass(frozen=True)
class World:
    services: Services
    alice: Principal
    bob: Principal
    alice_token: int


@contextlib.contextmanager
def world_in(state: Path) -> Iterator[World]:
    """alice (with a token, in group team) and bob, on services of a fresh SQLite database."""
    services = build_services(without_accounts(state, BASE, windows_domain_sid="S-1-5-21-1-2-3",
                                               idmap_range_low=BASE, idmap_range_high=BASE + 999))
    alice = services.identity.create_user("alice", by=SYSTEM)
    bob = services.identity.create_user("bob", by=SYSTEM)
    services.groups.create("team", by=SYSTEM)
    services.groups.set_member("team", "alice", member=True, by=SYSTEM)
    _, token = services.identity.issue_token("alice", "laptop", by=SYSTEM)
    yield World(services, services.identity.principal_of(alice), services.identity.principal_of(bob), token.id)
    services.db.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for the refusals, which change nothing."""
    with world_in(tmp_path_factory.mktemp("state")) as built:
        yield built


Act = Callable[[World, Principal], object]

ON_ALICE: dict[str, Act] = {
    "read alice's user": lambda w, by: w.services.identity.get_user("alice", by=by),
    "issue alice a token": lambda w, by: w.services.identity.issue_token("alice", "mine-now", by=by),
    "list alice's tokens": lambda w, by: w.services.identity.list_tokens("alice", by=by),
    "revoke alice's token": lambda w, by: w.services.identity.revoke_token("alice", w.alice_token, by=by),
    "set alice's password": lambda w, by: w.services.login.set_password(by, "alice", "correct horse battery"),
    "list alice's SSH keys": lambda w, by: w.services.keys.list_keys("alice", by=by),
    "read alice's Windows SIDs": lambda w, by: w.services.windows.describe("alice", by=by),
}
"""What a user may do about themself (alice as herself passes), and no other user may."""

ADMIN_ONLY: dict[str, Act] = {
    "list users": lambda w, by: w.services.identity.list_users(by=by),
    "count users": lambda w, by: w.services.identity.count_users(by=by),
    "create a user": lambda w, by: w.services.identity.create_user("mallory", by=by),
    "make himself an administrator": lambda w, by: w.services.identity.update_user("bob", roles=["admin"], by=by),
    "disable alice": lambda w, by: w.services.identity.update_user("alice", state=UserState.disabled, by=by),
    "list groups": lambda w, by: w.services.groups.list(by=by),
    "read a group": lambda w, by: w.services.groups.get("team", by=by),
    "create a group": lambda w, by: w.services.groups.create("bobs", by=by),
    "add himself to a group": lambda w, by: w.services.groups.set_member("team", "bob", member=True, by=by),
    "take alice out of a group": lambda w, by: w.services.groups.set_member("team", "alice", member=False, by=by),
    "find whose a SID is": lambda w, by: w.services.windows.owner(
        sid_for_uid(w.services.settings, w.services.identity.get_user("alice", by=SYSTEM).uid), by=by),
    "read the audit log": lambda w, by: w.services.audit.query(by=by),
}


@pytest.mark.parametrize("act", [*ON_ALICE.values(), *ADMIN_ONLY.values()], ids=[*ON_ALICE, *ADMIN_ONLY])
def test_bob_is_refused(world: World, act: Act) -> None:
    with pytest.raises(Forbidden):
        act(world, world.bob)


@pytest.mark.parametrize("act", list(ADMIN_ONLY.values()), ids=list(ADMIN_ONLY))
def test_a_token_without_the_admin_scope_is_no_administrator(world: World, act: Act) -> None:
    boss = Principal(username="boss", user_id=None, roles=frozenset({"admin"}), scopes=frozenset({"sessions"}))
    with pytest.raises(Forbidden):
        act(world, boss)


def test_bobs_refused_attempts_leave_nothing_behind(world: World) -> None:
    for act in [*ON_ALICE.values(), *ADMIN_ONLY.values()]:
        with pytest.raises(Forbidden):
            act(world, world.bob)
    identity, groups = world.services.identity, world.services.groups
    assert [u.username for u in identity.list_users(by=SYSTEM)] == ["alice", "bob"]
    assert identity.get_user("bob", by=SYSTEM).roles == ["user"]
    assert identity.get_user("alice", by=SYSTEM).state is UserState.active
    assert [(t.name, t.revoked_at) for t in identity.list_tokens("alice", by=SYSTEM)] == [("laptop", None)]
    assert [(g.name, [m.username for m in g.members]) for g in groups.list(by=SYSTEM)] == [("team", ["alice"])]


def test_alice_does_all_of_it_herself(tmp_path: Path) -> None:
    with world_in(tmp_path) as own:
        for act in ON_ALICE.values():
            act(own, own.alice)


def test_a_token_is_refused_from_the_second_its_lifetime_is_over(tmp_path: Path) -> None:
    with world_in(tmp_path) as own, time_machine.travel(datetime.now(UTC), tick=False) as clock:
        plain, _ = own.services.identity.issue_token("alice", "an hour", expires_in=3600, by=own.alice)
        clock.shift(timedelta(seconds=3599))
        assert own.services.identity.authenticate(plain).username == "alice"
        clock.shift(timedelta(seconds=1))
        with pytest.raises(Unauthenticated, match="the token has expired"):
            own.services.identity.authenticate(plain)
