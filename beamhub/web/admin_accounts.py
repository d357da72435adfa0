"""The console's forms that make accounts: an administrator creates a user (with a first password) and sets a
user's password, through the same services as the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from beamhub.deps import Identity, Login
from beamhub.errors import BeamhubError, Invalid
from beamhub.identity.accounts.models import Role
from beamhub.identity.accounts.schemas import UserCreate
from beamhub.identity.login.service import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from beamhub.web.admin_people import users_page
from beamhub.web.errors import PageRoute
from beamhub.web.page_deps import PageAdmin, refusal, see_other
from beamhub.web.pages import translator

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def checked_user(request: Request, username: str, display_name: str, roles: list[Role]) -> UserCreate:
    """A new user as the API takes it; Invalid with a translated reason for a name an account cannot have."""
    _ = translator(request)
    try:
        return UserCreate(username=username.strip(), display_name=display_name.strip(),
                          roles=[Role.user, *roles])
    except ValidationError:
        raise Invalid(_("A user name has lowercase letters, digits, _ and -, starts with a letter or _, and is at "
                        "most 32 characters long.")) from None


@router.post("/admin/users")
def create_user(request: Request, principal: PageAdmin, identity: Identity, login: Login,
                username: Annotated[str, Form(max_length=64)] = "",
                display_name: Annotated[str, Form(max_length=128)] = "",
                password: Annotated[str, Form(max_length=1024)] = "",
                roles: Annotated[list[Role] | None, Form()] = None) -> Response:
    """A new user and their system account; with a password they can sign in at once."""
    try:
        body = checked_user(request, username, display_name, roles or [])
        if password and not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            raise Invalid("a password needs %(minimum)s to %(maximum)s characters", minimum=MIN_PASSWORD_LENGTH,
                          maximum=MAX_PASSWORD_LENGTH)
        identity.create_user(body.username, roles=[role.value for role in body.roles],
                             display_name=body.display_name, by=principal)
        if password:
            login.set_password(principal, body.username, password)
    except BeamhubError as exc:
        return users_page(request, principal, identity, exc.status_code, form={"username": username,
                          "display_name": display_name, "roles": [role.value for role in roles or []]},
                          **refusal(request, exc))
    return see_other(f"/admin/users?done=created#user-{body.username}")


@router.post("/admin/users/{username}/password")
def set_password(request: Request, principal: PageAdmin, identity: Identity, login: Login, username: str,
                 password: Annotated[str, Form(max_length=1024)] = "",
                 offset: Annotated[int, Form(ge=0)] = 0) -> Response:
    """Set a user's beamhub password (the one they sign in with when login_methods has password)."""
    try:
        login.set_password(principal, username, password)
    except BeamhubError as exc:
        return users_page(request, principal, identity, exc.status_code, offset=offset, **refusal(request, exc))
    return see_other(f"/admin/users?offset={offset}&done=password#user-{username}")
