"""How a proposal is shown: the response model the API and the console share."""

from __future__ import annotations

from beamhub.data.current import current_path
from beamhub.data.models import Proposal
from beamhub.data.proposals.schemas import MemberOut, ProposalOut
from beamhub.data.proposals.service import DataService


def proposal_out(data: DataService, proposal: Proposal) -> ProposalOut:
    return ProposalOut(id=proposal.id, title=proposal.title, beamline=proposal.beamline, tier=proposal.tier,
                       path=str(data.proposal_dir(proposal)),
                       current_path=str(current_path(data.settings.storage_root, proposal.beamline, proposal.id)),
                       beamtime_start=proposal.beamtime_start,
                       beamtime_end=proposal.beamtime_end, embargo_until=proposal.embargo_until,
                       public=proposal.embargo_released_at is not None,
                       members=[MemberOut(username=m.user.username, role=m.role)
                                for m in sorted(proposal.members, key=lambda m: m.user.username)])
