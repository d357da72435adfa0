"""How catalogue records are shown: the response models the API and the console share."""

from __future__ import annotations

from datetime import UTC, datetime

from beamhub.data.current import current_path
from beamhub.data.models import DataFile, Proposal
from beamhub.data.schemas import FileOut, MemberOut, ProposalOut
from beamhub.data.service import DataService


def proposal_out(data: DataService, proposal: Proposal) -> ProposalOut:
    return ProposalOut(id=proposal.id, title=proposal.title, beamline=proposal.beamline, tier=proposal.tier,
                       path=str(data.proposal_dir(proposal)),
                       current_path=str(current_path(data.settings.storage_root, proposal.beamline, proposal.id)),
                       beamtime_start=proposal.beamtime_start,
                       beamtime_end=proposal.beamtime_end, embargo_until=proposal.embargo_until,
                       public=proposal.embargo_released_at is not None,
                       members=[MemberOut(username=m.user.username, role=m.role)
                                for m in sorted(proposal.members, key=lambda m: m.user.username)])


def file_out(record: DataFile) -> FileOut:
    return FileOut(path=record.relpath, size=record.size, sha256=record.sha256, tier=record.tier,
                   mtime=datetime.fromtimestamp(record.mtime_ns / 1e9, UTC))
