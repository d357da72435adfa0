"""/api/v1/users/{username}/windows, /api/v1/windows/sid/{sid}: Windows SIDs of users and groups."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from beamhub.deps import AdminPrincipal, CurrentPrincipal, Identity, get_services
from beamhub.identity.windows import WindowsIdentity

router = APIRouter(prefix="/api/v1", tags=["windows"])


class GroupSid(BaseModel):
    name: str
    gid: int
    sid: str


class WindowsUserOut(BaseModel):
    username: str
    uid: int
    gid: int
    user_sid: str
    group_sid: str
    groups: list[GroupSid]


class SidOwnerOut(BaseModel):
    kind: Literal["user", "group"]
    id: int
    name: str


def windows_identity(request: Request) -> WindowsIdentity:
    """The SID mapping over this instance's database and settings."""
    services = get_services(request)
    return WindowsIdentity(services.db, services.settings)


Windows = Annotated[WindowsIdentity, Depends(windows_identity)]


@router.get("/users/{username}/windows", response_model=WindowsUserOut)
def user_sids(username: str, principal: CurrentPrincipal, identity: Identity, windows: Windows) -> object:
    """A user's SID, primary group SID and group SIDs (oneself, or anyone for an administrator)."""
    if username != principal.username:
        principal.require_admin()
    return windows.describe(identity.get_user(username))


@router.get("/windows/sid/{sid}", response_model=SidOwnerOut)
def sid_owner(sid: str, _: AdminPrincipal, windows: Windows) -> object:
    """The user or group a SID of the configured domain maps to."""
    return windows.owner(sid)
