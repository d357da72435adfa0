"""/api/v1/me, /api/v1/users/{username}/password: who is logged in, and a user's local password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from beamhub.deps import CurrentPrincipal, Login
from beamhub.identity.login.schemas import PasswordSet

router = APIRouter(prefix="/api/v1", tags=["login"])


@router.get("/me")
def me(request: Request, principal: CurrentPrincipal) -> dict[str, object]:
    """Who the caller is, and the CSRF token state-changing requests of a cookie session must send."""
    return {"username": principal.username, "roles": sorted(principal.roles),
            "beamlines": sorted(principal.beamlines), "admin": principal.is_admin,
            "csrf_token": getattr(request.state, "login_csrf", None)}


@router.put("/users/{username}/password", status_code=status.HTTP_204_NO_CONTENT)
def set_password(username: str, body: PasswordSet, principal: CurrentPrincipal, login: Login) -> Response:
    """Set a user's local password: the user themself or an administrator, never through a scope-limited token."""
    login.set_password(principal, username, body.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
