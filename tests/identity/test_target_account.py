"""The host account a job is submitted as (IdentityService.target_account) is exactly the one the user's ORM row
gives (account()): UID, primary GID, supplementary GIDs in order, home; whether it comes from the credential's own
read or from one statement for a user an administrator names. The rules are resolve_target's."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from beamhub.errors import Forbidden, Invalid, NotFound
from beamhub.identity.principal import SYSTEM, Principal
from beamhub.services import Services, build_services
from helpers.settings import without_accounts

BASE = 3_600_000 + 10_000 * secrets.randbelow(100)  # numeric ids no account on this host has


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """alice in groups team and beta (GIDs in the opposite order of their names), bob in none."""
    built = build_services(without_accounts(tmp_path, BASE))
    built.identity.create_user("alice", by=SYSTEM)
    built.identity.create_user("bob", by=SYSTEM)
    for group in ("team", "beta"):
        built.groups.create(group, by=SYSTEM)
        built.groups.set_member(group, "alice", member=True, by=SYSTEM)
    yield built
    built.db.dispose()


def _token_principal(services: Services, username: str) -> Principal:
    token, _ = services.identity.issue_token(username, "laptop", by=SYSTEM)
    return services.identity.authenticate(token)


def _expected(services: Services, username: str) -> tuple[int, object]:
    user = services.identity.get_user(username, by=SYSTEM)
    return user.id, services.identity.account(user)


def test_ones_own_account_from_a_token_is_the_rows(services: Services) -> None:
    alice = _token_principal(services, "alice")
    user_id, account = services.identity.target_account(alice, None)
    assert (user_id, account) == _expected(services, "alice")
    assert len(account.groups) == 2
    assert services.identity.target_account(alice, "alice") == (user_id, account)


def test_ones_own_account_from_principal_of_is_the_rows(services: Services) -> None:
    alice = services.identity.principal_of(services.identity.get_user("alice", by=SYSTEM))
    assert services.identity.target_account(alice, None) == _expected(services, "alice")


def test_a_principal_without_the_primary_gid_reads_the_row(services: Services) -> None:
    alice = replace(_token_principal(services, "alice"), gid=None, supplementary_gids=())
    assert services.identity.target_account(alice, None) == _expected(services, "alice")


def test_a_new_credential_carries_a_group_change_at_once(services: Services) -> None:
    services.groups.set_member("beta", "alice", member=False, by=SYSTEM)
    _, account = services.identity.target_account(_token_principal(services, "alice"), None)
    assert account == _expected(services, "alice")[1]
    assert len(account.groups) == 1


def test_an_administrator_names_another_user_in_one_read(services: Services) -> None:
    assert services.identity.target_account(SYSTEM, "alice") == _expected(services, "alice")
    assert services.identity.target_account(SYSTEM, "bob") == _expected(services, "bob")
    with pytest.raises(NotFound):
        services.identity.target_account(SYSTEM, "nobody")


def test_nobody_else_names_another_user(services: Services) -> None:
    bob = _token_principal(services, "bob")
    with pytest.raises(Forbidden):
        services.identity.target_account(bob, "alice")
    with pytest.raises(Forbidden):
        services.identity.target_account(bob, "nobody")


def test_the_administrator_token_must_name_the_user(services: Services) -> None:
    with pytest.raises(Invalid):
        services.identity.target_account(SYSTEM, None)
