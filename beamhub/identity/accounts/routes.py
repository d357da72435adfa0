"""/api/v1/users, /api/v1/groups: users, their roles, groups and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import TypeAdapter

from beamhub.deps import CurrentPrincipal, Groups, Identity, read_in_thread
from beamhub.identity.accounts.models import Group
from beamhub.identity.accounts.reads import UserView
from beamhub.identity.accounts.schemas import (
    GroupCreate,
    GroupOut,
    TokenCreate,
    TokenInfo,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from beamhub.identity.fields import MAX_ID

router = APIRouter(prefix="/api/v1", tags=["users"])
JSON = "application/json"


def group_out(group: Group) -> GroupOut:
    return GroupOut(name=group.name, gid=group.gid, description=group.description,
                    members=[member.username for member in group.members])


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserOut)
def create_user(body: UserCreate, principal: CurrentPrincipal, identity: Identity) -> object:
    return identity.create_user(body.username, uid=body.uid, groups=body.groups, roles=[r.value for r in body.roles],
                                beamlines=body.beamlines, display_name=body.display_name, email=body.email,
                                by=principal)


# The two reads below answer with JSON serialized straight from the service's UserView (the fields of UserOut):
# FastAPI would copy each view into a dict and validate it into a UserOut first, half the time of a 100-user page.
USER_JSON = TypeAdapter(UserView)
USERS_JSON = TypeAdapter(list[UserView])


@router.get("/users", response_model=list[UserOut])
async def list_users(request: Request, principal: CurrentPrincipal, identity: Identity,
                     offset: int = Query(0, ge=0, le=MAX_ID), limit: int = Query(100, ge=1, le=1000)) -> Response:
    views = await read_in_thread(request, identity.profiles, offset, limit, by=principal)
    return Response(USERS_JSON.dump_json(views), media_type=JSON)


@router.get("/users/{username}", response_model=UserOut)
async def get_user(request: Request, username: str, principal: CurrentPrincipal, identity: Identity) -> Response:
    view = await read_in_thread(request, identity.profile, username, by=principal)
    return Response(USER_JSON.dump_json(view), media_type=JSON)


@router.patch("/users/{username}", response_model=UserOut)
def update_user(username: str, body: UserUpdate, principal: CurrentPrincipal, identity: Identity) -> object:
    return identity.update_user(username, roles=[r.value for r in body.roles] if body.roles is not None else None,
                                beamlines=body.beamlines, state=body.state, display_name=body.display_name,
                                email=body.email, by=principal)


@router.post("/users/{username}/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenOut)
def issue_token(username: str, body: TokenCreate, principal: CurrentPrincipal, identity: Identity) -> TokenOut:
    token, record = identity.issue_token(username, body.name, body.expires_in, body.scopes, by=principal)
    return TokenOut(token=token, **TokenInfo.model_validate(record).model_dump())


@router.get("/users/{username}/tokens", response_model=list[TokenInfo])
def list_tokens(username: str, principal: CurrentPrincipal, identity: Identity) -> object:
    return identity.list_tokens(username, by=principal)


@router.delete("/users/{username}/tokens/{token_id}", response_model=TokenInfo)
def revoke_token(username: str, token_id: int, principal: CurrentPrincipal, identity: Identity) -> object:
    return identity.revoke_token(username, token_id, by=principal)


@router.get("/groups", response_model=list[GroupOut])
def list_groups(principal: CurrentPrincipal, groups: Groups) -> list[GroupOut]:
    return [group_out(g) for g in groups.list(by=principal)]


@router.post("/groups", status_code=status.HTTP_201_CREATED, response_model=GroupOut)
def create_group(body: GroupCreate, principal: CurrentPrincipal, groups: Groups) -> GroupOut:
    return group_out(groups.create(body.name, body.description, by=principal))


@router.put("/groups/{name}/members/{username}", response_model=GroupOut)
def add_member(name: str, username: str, principal: CurrentPrincipal, groups: Groups) -> GroupOut:
    return group_out(groups.set_member(name, username, member=True, by=principal))


@router.delete("/groups/{name}/members/{username}", response_model=GroupOut)
def remove_member(name: str, username: str, principal: CurrentPrincipal, groups: Groups) -> GroupOut:
    return group_out(groups.set_member(name, username, member=False, by=principal))
