"""FastAPI dependencies shared by every domain's routes: services and the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from beamhub.compute.backend import Backend
from beamhub.config import Settings
from beamhub.db import Database
from beamhub.identity.service import IdentityService, Principal
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
    sessions: SessionService
    workstations: WorkstationService


def get_services(connection: HTTPConnection) -> Services:
    return connection.app.state.services


def bearer_token(connection: HTTPConnection) -> str | None:
    """The caller's token from `Authorization: Bearer`, else from beamhub's cookie."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    return connection.cookies.get(TOKEN_COOKIE)


def current_principal(connection: HTTPConnection) -> Principal:
    return get_services(connection).identity.authenticate(bearer_token(connection))


def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    principal.require_admin()
    return principal


def identity_service(request: Request) -> IdentityService:
    return get_services(request).identity


def session_service(request: Request) -> SessionService:
    return get_services(request).sessions


def workstation_service(request: Request) -> WorkstationService:
    return get_services(request).workstations


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
Identity = Annotated[IdentityService, Depends(identity_service)]
Sessions = Annotated[SessionService, Depends(session_service)]
Workstations = Annotated[WorkstationService, Depends(workstation_service)]
