"""What the console's page modules share: who a page is for, the answer to a form, a refusal shown on a page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, status
from fastapi.responses import RedirectResponse

from beamhub.errors import BeamhubError
from beamhub.identity.principal import Principal
from beamhub.web.errors import title_of
from beamhub.web.pages import message_of, page_principal, translator

PAGE_SIZE = 50
"""Rows of one page of a console listing."""

PagePrincipal = Annotated[Principal, Depends(page_principal)]


def page_admin(principal: PagePrincipal) -> Principal:
    """The logged-in user of an administration page; anyone else gets the 403 page, as the API refuses them."""
    principal.require_admin()
    return principal


PageAdmin = Annotated[Principal, Depends(page_admin)]


def see_other(path: str) -> RedirectResponse:
    """After a form that changed something: the browser loads `path` (a reload does not post again)."""
    return RedirectResponse(path, status_code=status.HTTP_303_SEE_OTHER)


def refusal(request: Request, error: BeamhubError) -> dict[str, Any]:
    """The template context that shows a service's refusal in the alert above a form, translated where known."""
    _ = translator(request)
    return {"error_title": _(title_of(error)), "error": message_of(error, request)}
