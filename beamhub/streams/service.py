"""Who may publish a proposal's live frames and who may watch them."""

from __future__ import annotations

from beamhub.data.proposals.service import DataService
from beamhub.errors import Forbidden
from beamhub.identity.accounts.models import Role
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.principal import SYSTEM, Principal


class StreamService:
    """The rules of the relay: the DAQ's publish token, and the data domain's read rule for subscribers."""

    def __init__(self, identity: IdentityService, data: DataService) -> None:
        self.identity = identity
        self.data = data

    def publisher(self, token: str, proposal_id: str, address: str = "") -> Principal:
        """The principal of a publish token, if it may publish the proposal's frames: as for registering data, a
        `data:ingest` token of the DAQ's service account (or an administrator); the proposal must exist."""
        principal = self.identity.authenticate(token, address)
        principal.require_scope("data:ingest")
        if not (principal.is_admin or Role.service.value in principal.roles):
            raise Forbidden("only the DAQ (a service account with a data:ingest token) and administrators publish")
        self.data.get(SYSTEM, proposal_id)
        return principal

    def check_subscriber(self, principal: Principal, proposal_id: str) -> None:
        """Refuse anyone who may not read the proposal's data (NotFound, as for its files)."""
        principal.require_scope("data:read")
        self.data.get(principal, proposal_id)
