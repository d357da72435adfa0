"""Data tests on services built in the test process: an administrator, real users, a proposal, files in it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.identity.principal import Principal

ADMIN = Principal(username="admin-test", user_id=None, roles=frozenset({"admin"}))


def new_user(services: Any, system_users: list[str], prefix: str = "d") -> Any:
    """A beamhub user with a real system account (removed at the end through `system_users`)."""
    system_users.append(f"{prefix}{secrets.token_hex(3)}")
    return services.identity.create_user(system_users[-1], by=ADMIN)


def new_proposal(services: Any, beamline: str, *members: Any) -> Any:
    """A proposal of the beamline whose beamtime ended just now, the given users its members."""
    now = datetime.now(UTC)
    return services.data.create(ADMIN, ProposalCreate(
        id=f"2025-{secrets.randbelow(10**5):05d}", title="in situ XRD", beamline=beamline,
        beamtime_start=now - timedelta(hours=8), beamtime_end=now,
        members=[{"username": m.username, "role": "member"} for m in members]))


def write(folder: Path, relpath: str, data: bytes) -> Path:
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
