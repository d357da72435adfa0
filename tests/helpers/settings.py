"""Settings for services built in the test's own process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from beamhub.config import Settings


def without_accounts(state_dir: Path, base: int, **more: Any) -> Settings:
    """No system accounts made, no all-users group; UIDs base to base+499 and GIDs base+500 to base+999 (choose
    a base that no account on this host has)."""
    return Settings(state_dir=state_dir, manage_system_accounts=False, all_users_group=None, uid_min=base,
                    uid_max=base + 499, gid_min=base + 500, gid_max=base + 999, **more)
