"""Each proposal's stable path, <storage_root>/current/<beamline>/<proposal>: a symbolic link to its folder on the
tier the catalogue names.

Sessions and jobs open a proposal's data through this path, so a migration (or a prefetch) moves the bytes under a
reader without stopping it: the link is replaced, by renaming a new link over it (atomic), after the catalogue has
switched and before anything is removed from the old tier. A name opened before the switch resolves on the old tier,
which holds every file until then; one opened after it resolves on the new tier, which holds every file from then; a
file already open stays readable after its old name is removed. The link is relative, so it leads to the same place
on every host that mounts the storage root, wherever it is mounted.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

CURRENT = "current"
"""The folder under storage_root that holds the links; no tier may have this name."""


def current_path(storage_root: Path, beamline: str, proposal_id: str) -> Path:
    """Where the proposal's stable link lies."""
    return storage_root / CURRENT / beamline / proposal_id


def point_current(storage_root: Path, beamline: str, proposal_id: str, tier: str) -> bool:
    """Make the proposal's stable link lead to its folder on `tier` (replaced at once if it led elsewhere); whether
    it had to be made or changed."""
    link = current_path(storage_root, beamline, proposal_id)
    target = os.path.join("..", "..", tier, beamline, proposal_id)
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    partial = link.with_name(f".{proposal_id}.{secrets.token_hex(8)}")
    os.symlink(target, partial)
    os.rename(partial, link)
    return True
