"""The console's administration pages of people: users (state, roles) and groups (members).

Each page needs an administrator (anyone else gets the 403 page) and calls the same services as the API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from beamhub.deps import Groups, Identity
from beamhub.errors import N_, BeamhubError, Invalid
from beamhub.identity.accounts.models import Role, UserState
from beamhub.identity.accounts.schemas import GroupCreate
from beamhub.identity.principal import Principal
from beamhub.web.errors import PageRoute
from beamhub.web.page_deps import PAGE_SIZE, PageAdmin, refusal, see_other
from beamhub.web.pages import render, translator

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NOTICES = {
    "disabled": N_("The user is disabled: their sessions were stopped and they can no longer sign in."),
    "active": N_("The user is active again and can sign in."),
    "roles": N_("The user's roles were changed."),
    "created": N_("The user was created with their system account. Give them their user name and password."),
    "password": N_("The password was set: the user signs in with it from now on."),
}
"""What the users page says after a change, by the `done` its address carries."""

EXTRA_ROLES = [role.value for role in Role if role is not Role.user]
"""The roles an administrator gives or takes; every user has the role user."""


def users_page(request: Request, principal: Principal, identity: Identity, status_code: int = 200, offset: int = 0,
               **context: Any) -> Response:
    """A page of users with the forms that change them and make new ones; `context` carries a refusal."""
    start = max(offset, 0)
    done = request.query_params.get("done", "")
    form = {"username": "", "display_name": "", "roles": []} | context.pop("form", {})
    return render(request, "admin/users.html", status_code, principal=principal, admin_page="users",
                  users=identity.list_users(start, PAGE_SIZE, by=principal), offset=start,
                  total=identity.count_users(by=principal), page_size=PAGE_SIZE, extra_roles=EXTRA_ROLES, form=form,
                  notice=translator(request)(NOTICES[done]) if done in NOTICES else "", **context)


@router.get("/admin/users")
def list_users(request: Request, principal: PageAdmin, identity: Identity, offset: int = 0) -> Response:
    """Every user with roles, state and groups, a page at a time, with the forms that change them."""
    return users_page(request, principal, identity, offset=offset)


@router.post("/admin/users/{username}/state")
def set_state(principal: PageAdmin, identity: Identity, username: str, state: Annotated[UserState, Form()],
              offset: Annotated[int, Form(ge=0)] = 0) -> Response:
    """Disable a user (their sessions stop at once) or enable them again."""
    identity.update_user(username, state=state, by=principal)
    return see_other(f"/admin/users?offset={offset}&done={state.value}")


@router.post("/admin/users/{username}/roles")
def set_roles(principal: PageAdmin, identity: Identity, username: str,
              roles: Annotated[list[Role] | None, Form()] = None, offset: Annotated[int, Form(ge=0)] = 0) -> Response:
    """Give a user exactly the roles ticked (and user, which everyone has)."""
    identity.update_user(username, roles=[role.value for role in roles or []], by=principal)
    return see_other(f"/admin/users?offset={offset}&done=roles")


def groups_page(request: Request, principal: Principal, groups: Groups, status_code: int = 200,
                **context: Any) -> Response:
    """Every group and its members, with the forms that change them; `context` carries a refusal."""
    form = {"name": "", "description": ""} | context.pop("form", {})
    return render(request, "admin/groups.html", status_code, principal=principal, admin_page="groups",
                  groups=groups.list(by=principal), form=form, **context)


@router.get("/admin/groups")
def list_groups(request: Request, principal: PageAdmin, groups: Groups) -> Response:
    return groups_page(request, principal, groups)


def checked_group(name: str, description: str, request: Request) -> GroupCreate:
    """A new group as the API takes it; Invalid with a translated reason for a name a group cannot have."""
    _ = translator(request)
    try:
        return GroupCreate(name=name.strip(), description=description.strip())
    except ValidationError:
        raise Invalid(_("A group name has lowercase letters, digits, _ and -, starts with a letter or _, and is at "
                        "most 32 characters long.")) from None


@router.post("/admin/groups")
def create_group(request: Request, principal: PageAdmin, groups: Groups,
                 name: Annotated[str, Form(max_length=64)] = "",
                 description: Annotated[str, Form(max_length=1024)] = "") -> Response:
    try:
        body = checked_group(name, description, request)
        groups.create(body.name, body.description, by=principal)
    except BeamhubError as exc:
        return groups_page(request, principal, groups, exc.status_code, form={"name": name, "description": description},
                           **refusal(request, exc))
    return see_other(f"/admin/groups#group-{body.name}")


@router.post("/admin/groups/{name}/members")
def add_member(request: Request, principal: PageAdmin, groups: Groups, name: str,
               username: Annotated[str, Form(max_length=64)] = "") -> Response:
    """Put a user into a group (and its system group); an unknown user comes back as a message on the page."""
    try:
        groups.set_member(name, username.strip(), member=True, by=principal)
    except BeamhubError as exc:
        return groups_page(request, principal, groups, exc.status_code, **refusal(request, exc))
    return see_other(f"/admin/groups#group-{name}")


@router.post("/admin/groups/{name}/members/{username}/remove")
def remove_member(request: Request, principal: PageAdmin, groups: Groups, name: str, username: str) -> Response:
    try:
        groups.set_member(name, username, member=False, by=principal)
    except BeamhubError as exc:
        return groups_page(request, principal, groups, exc.status_code, **refusal(request, exc))
    return see_other(f"/admin/groups#group-{name}")
