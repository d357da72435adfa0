"""Fixtures of the local backend's tests: a throwaway system user, and a LocalBackend that cleans up after itself."""

from __future__ import annotations

import json
import pwd
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from beamhub.compute import cgroups
from beamhub.compute.backend import Account
from beamhub.compute.local import LocalBackend
from beamhub.config import Settings

EXTRA_GROUPS = (31001, 31002)
"""The supplementary groups of the test user's sessions."""


@pytest.fixture
def account(require_root: None) -> Iterator[Account]:
    """A throwaway system user with its own group and home."""
    name = f"lb{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name],
                   check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        yield Account(username=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=EXTRA_GROUPS,
                      home=Path(entry.pw_dir))
    finally:
        done = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
        assert done.returncode == 0, f"userdel {name}: {done.stderr}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state", runtime_dir=tmp_path / "run", stop_grace=2.0)


@pytest.fixture
def backend(settings: Settings, account: Account) -> Iterator[LocalBackend]:
    """A LocalBackend; whatever a test leaves (dead or alive) is stopped before its user is deleted."""
    instance = LocalBackend(settings)
    yield instance
    for path in instance.handles_dir.glob("*.json"):
        instance.stop(json.loads(path.read_text()))


@pytest.fixture
def with_cgroups(backend: LocalBackend) -> cgroups.Cgroups:
    if backend.cgroups is None:
        pytest.skip("no usable cgroup v1 or v2 cpu+memory controllers on this host")
    return backend.cgroups
