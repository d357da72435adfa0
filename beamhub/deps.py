"""FastAPI dependencies shared by every domain's routes: services and the caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from beamhub.compute.backend import Backend
from beamhub.config import Settings
from beamhub.db import Database
from beamhub.identity.groups import GroupService
from beamhub.identity.principal import Principal
from beamhub.identity.service import IdentityService
from beamhub.sessions.service import SessionService
from beamhub.sessions.workstations import WorkstationService

TOKEN_COOKIE = "beamhub-token"


@dataclass
class Services:
    """Everything a request may need, built once by the app factory."""

    settings: Settings
    db: Database
    backend: Backend
    identity: IdentityService
    groups: GroupService
    sessions: SessionService
    workstations: WorkstationService


def get_services(connection: HTTPConnection) -> Services:
    return connection.app.state.services


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else ""


def bearer_token(connection: HTTPConnection) -> str | None:
    """The caller's token from `Authorization: Bearer`, else from beamhub's token cookie."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return connection.cookies.get(TOKEN_COOKIE)


def current_principal(connection: HTTPConnection) -> Principal:
    principal = get_services(connection).identity.authenticate(bearer_token(connection))
    return principal.with_address(client_address(connection))


def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    principal.require_admin()
    return principal


def scoped(scope: str) -> Callable[[Principal], Principal]:
    """A dependency: the caller, if their credential carries `scope`."""

    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        principal.require_scope(scope)
        return principal

    return check


def identity_service(request: Request) -> IdentityService:
    return get_services(request).identity


def group_service(request: Request) -> GroupService:
    return get_services(request).groups


def session_service(request: Request) -> SessionService:
    return get_services(request).sessions


def workstation_service(request: Request) -> WorkstationService:
    return get_services(request).workstations


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
SessionsPrincipal = Annotated[Principal, Depends(scoped("sessions"))]
Identity = Annotated[IdentityService, Depends(identity_service)]
Groups = Annotated[GroupService, Depends(group_service)]
Sessions = Annotated[SessionService, Depends(session_service)]
Workstations = Annotated[WorkstationService, Depends(workstation_service)]
