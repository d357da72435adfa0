"""The console's help page: what each page is for and how to begin, in the reader's language, signed in or not."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from beamhub.deps import principal_if_valid
from beamhub.web.errors import PageRoute
from beamhub.web.pages import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/help")
async def help_page(request: Request) -> Response:
    """Help for every page (the menu shows when someone is signed in; no login is needed)."""
    return render(request, "help.html", principal=await principal_if_valid(request))
