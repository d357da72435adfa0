"""/api/v1/users: administrators create and read users and issue their tokens."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from beamhub.deps import AdminPrincipal, CurrentPrincipal, Identity
from beamhub.errors import Forbidden
from beamhub.identity.schemas import TokenCreate, TokenOut, UserCreate, UserOut

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def create_user(body: UserCreate, _: AdminPrincipal, identity: Identity) -> object:
    return identity.create_user(body.username, uid=body.uid, groups=body.groups, is_admin=body.is_admin)


@router.get("", response_model=list[UserOut])
def list_users(_: AdminPrincipal, identity: Identity, offset: int = Query(0, ge=0),
               limit: int = Query(100, ge=1, le=1000)) -> object:
    return identity.list_users(offset, limit)


@router.get("/{username}", response_model=UserOut)
def get_user(username: str, principal: CurrentPrincipal, identity: Identity) -> object:
    if username != principal.username:
        principal.require_admin()
    return identity.get_user(username)


@router.post("/{username}/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenOut)
def issue_token(username: str, body: TokenCreate, principal: CurrentPrincipal, identity: Identity) -> TokenOut:
    if username != principal.username and not principal.is_admin:
        raise Forbidden("you may only issue tokens for yourself")
    token, record = identity.issue_token(username, body.name, body.expires_in)
    return TokenOut(name=record.name, token=token, expires_at=record.expires_at)
