"""Whose jobs a listing names follows resolve_target's rules, called on the service (no Slurm needed to list): one's
own, or anyone's for an administrator; nobody else names another user."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from beamhub.errors import Forbidden, Invalid, NotFound
from beamhub.identity.principal import SYSTEM, Principal
from beamhub.services import Services, build_services
from helpers.settings import without_accounts

BASE = 3_800_000 + 10_000 * secrets.randbelow(100)  # numeric ids no account on this host has


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(without_accounts(tmp_path, BASE))
    for name in ("alice", "bob"):
        built.identity.create_user(name, by=SYSTEM)
    yield built
    built.db.dispose()


def test_whose_jobs_a_listing_may_name(services: Services) -> None:
    bob = services.identity.principal_of(services.identity.get_user("bob", by=SYSTEM))
    assert services.jobs.list(bob) == []
    assert services.jobs.list(bob, "bob") == []
    with pytest.raises(Forbidden):
        services.jobs.list(bob, "alice")
    assert services.jobs.list(SYSTEM, "alice") == []
    with pytest.raises(NotFound):
        services.jobs.list(SYSTEM, "nobody")
    bootstrap = Principal(username="admin-token", user_id=None, roles=frozenset({"admin"}))
    with pytest.raises(Invalid):
        services.jobs.list(bootstrap, "admin-token")
