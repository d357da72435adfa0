"""/api/v1/users/{username}/windows, /api/v1/windows/sid/{sid}: Windows SIDs of users and groups."""

from __future__ import annotations

from fastapi import APIRouter

from beamhub.deps import CurrentPrincipal, Windows
from beamhub.identity.windows.schemas import SidOwnerOut, WindowsUserOut

router = APIRouter(prefix="/api/v1", tags=["windows"])


@router.get("/users/{username}/windows", response_model=WindowsUserOut)
def user_sids(username: str, principal: CurrentPrincipal, windows: Windows) -> object:
    """A user's SID, primary group SID and group SIDs (oneself, or anyone for an administrator)."""
    return windows.describe(username, by=principal)


@router.get("/windows/sid/{sid}", response_model=SidOwnerOut)
def sid_owner(sid: str, principal: CurrentPrincipal, windows: Windows) -> object:
    """The user or group a SID of the configured domain maps to (administrators)."""
    return windows.owner(sid, by=principal)
