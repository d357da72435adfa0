"""Which proposals' data a session's user may read: the session's agent links them into ~/proposals, as the user."""

from __future__ import annotations

import json
from pathlib import Path

from beamhub.agent import PROPOSALS_ENV
from beamhub.data.access import may_access
from beamhub.data.browsing.service import FOLDER
from beamhub.data.current import current_path
from beamhub.data.models import Proposal
from beamhub.data.proposals.service import DataService
from beamhub.identity.accounts.models import User

MAX_LINKS = 1000
"""Links one session gets at most (the list travels in one environment variable, which may hold 128 KiB)."""
PAGE = 500
MAX_EXAMINED = 10 * PAGE
"""Proposals examined at most: an administrator knows every proposal, but their UID reads few of them."""


def readable_proposals(data: DataService, user: User) -> dict[str, str]:
    """Proposal id -> its data folder, for each proposal the user may know whose folder their UID and groups may
    list and enter, decided as the kernel (and a download) decides it."""
    principal = data.identity.principal_of(user)
    caller = data.caller(principal)
    found: dict[str, str] = {}
    after = None
    for _ in range(MAX_EXAMINED // PAGE):
        page = data.list(principal, after, PAGE)
        for proposal in page:
            folder = data_folder(data, proposal)
            if caller is not None and len(found) < MAX_LINKS and may_access(folder, caller, FOLDER):
                found[proposal.id] = str(folder)
        if len(page) < PAGE or len(found) >= MAX_LINKS:
            break
        after = page[-1].id
    return found


def data_folder(data: DataService, proposal: Proposal) -> Path:
    """The proposal's stable path where it has one (a migration re-points it under open sessions), else its folder."""
    stable = current_path(data.settings.storage_root, proposal.beamline, proposal.id)
    return stable if stable.is_symlink() else data.proposal_dir(proposal)


def session_env(data: DataService, user: User) -> dict[str, str]:
    """The environment that tells a session's agent which proposals to link."""
    return {PROPOSALS_ENV: json.dumps(readable_proposals(data, user), separators=(",", ":"))}
