"""Registration of a proposal's data: all of it or a folder or file on one tier, or the paths the watcher saw."""

from __future__ import annotations

import os
from pathlib import Path

from beamhub.data.models import Proposal
from beamhub.data.paths import resolve_inside
from beamhub.data.proposals.service import DataService
from beamhub.data.registration.ingest import Progress, RegisterResult, Target, register_paths, register_tree
from beamhub.errors import Forbidden, Invalid, NotFound
from beamhub.identity.accounts.models import Role
from beamhub.identity.principal import Principal


class RegistrationService:
    """The DAQ's and the command line's registration: ACLs from the member list, files catalogued with their SHA-256."""

    def __init__(self, data: DataService) -> None:
        self.data = data
        self.db = data.db
        self.settings = data.settings
        self.audit = data.audit

    def register(self, principal: Principal, proposal_id: str, relative: str = "", tier: str | None = None,
                 progress: Progress | None = None) -> RegisterResult:
        """Register a proposal's data (all of it, or the folder or file `relative` names) on one tier."""
        self._check_registrar(principal)
        proposal = self.data.load(proposal_id)
        root = self.data.proposal_dir(proposal, self.data.check_tier(tier or proposal.tier))
        if not root.is_dir():
            raise NotFound("proposal %(proposal)s has no folder on tier %(tier)s",
                           proposal=proposal_id, tier=tier or proposal.tier)
        return self._register(principal, proposal, Target(proposal.id, root, resolve_inside(root, relative),
                                                          tier or proposal.tier), progress)

    def register_path(self, principal: Principal, proposal_id: str, path: Path,
                      progress: Progress | None = None) -> RegisterResult:
        """Register a folder or file given by its path on the data file system (the command line's way)."""
        target = self.locate(proposal_id, path)
        return self.register(principal, proposal_id, target.relative(target.start), target.tier, progress)

    def locate(self, proposal_id: str, path: Path | None = None) -> Target:
        """The tier folder of the proposal that holds `path` (default: its folder on its own tier), real paths."""
        proposal = self.data.load(proposal_id)
        real = Path(os.path.realpath(path if path is not None else self.data.proposal_dir(proposal)))
        for tier in self.settings.storage_tiers:
            root = Path(os.path.realpath(self.data.proposal_dir(proposal, tier)))
            if real == root or root in real.parents:
                return Target(proposal.id, root, real, tier)
        folders = f"{self.settings.storage_root}/<tier>/{proposal.beamline}/{proposal.id}"
        raise Invalid("%(path)s is not inside a folder of proposal %(proposal)s (%(folders)s)", path=path,
                      proposal=proposal_id, folders=folders)

    def register_files(self, principal: Principal, proposal_id: str, tier: str, paths: list[Path]) -> RegisterResult:
        """Set the ACLs of these folders and files of the proposal and catalogue the files (the watcher's way)."""
        self._check_registrar(principal)
        proposal = self.data.load(proposal_id)
        root = Path(os.path.realpath(self.data.proposal_dir(proposal, self.data.check_tier(tier))))
        outside = [str(p) for p in paths if root not in p.parents]
        if outside:
            raise Invalid("not inside %(root)s: %(outside)s", root=root, outside=', '.join(outside[:3]))
        with self.data.acl_lock(proposal.id):
            access = self.data.access_list(proposal)
            return register_paths(self.db, Target(proposal.id, root, root, tier), paths, access)

    @staticmethod
    def _check_registrar(principal: Principal) -> None:
        if not (principal.is_admin or Role.service.value in principal.roles):
            raise Forbidden("only the DAQ (a service account) and administrators register data")

    def _register(self, principal: Principal, proposal: Proposal, target: Target,
                  progress: Progress | None) -> RegisterResult:
        with self.data.acl_lock(proposal.id):
            result = register_tree(self.db, target, self.data.access_list(proposal), progress,
                                   self.settings.ingest_workers)
        self.audit.record_as(principal, "data.register", proposal.id, path=target.relative(target.start),
                             tier=target.tier, added=result.added, updated=result.updated, removed=result.removed,
                             refused=len(result.refused))
        return result
