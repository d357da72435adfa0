"""What every proposal route takes: the reader's scope, the proposal's id, a page's size."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query

from beamhub.data.proposals.schemas import PROPOSAL_PATTERN
from beamhub.deps import scoped
from beamhub.identity.principal import Principal

Reader = Annotated[Principal, Depends(scoped("data:read"))]
ProposalId = Annotated[str, Path(pattern=PROPOSAL_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=1000)]
