"""Who a request on a session's own origin stands for: its bearer token, else the session's entry cookie, and only
from the session's own pages (other sessions' pages are same-site, so SameSite alone does not keep them out)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from beamhub.deps import (
    authenticate,
    client_address,
    get_services,
    has_bearer,
    read_cookie,
    refuse_tossed_cookie,
)
from beamhub.errors import Forbidden, NotFound
from beamhub.identity.principal import Principal

ENTRY_COOKIE = "beamhub-entry"
STATE_COOKIE = "beamhub-entry-state"
"""The browser's state for entering a session, bound to the console's one-time code."""


def from_own_pages(connection: HTTPConnection) -> bool:
    """Whether a cookie-carrying request comes from the session's own pages or is a top-level navigation:
    other sessions' pages are same-site, so SameSite alone does not keep them out."""
    origin = connection.headers.get("origin")
    if origin is not None:
        return origin.partition("://")[2].lower() == connection.headers.get("host", "").lower()
    site = connection.headers.get("sec-fetch-site")
    return site in (None, "same-origin", "none") or connection.headers.get("sec-fetch-mode") == "navigate"


def require_own_pages(connection: HTTPConnection) -> None:
    if not has_bearer(connection) and not from_own_pages(connection):
        raise Forbidden("cross-origin request refused: it does not come from this session's pages")


def own_session(connection: HTTPConnection, session_id: str) -> None:
    """A session's origin serves that session only."""
    if connection.path_params.get("session") != session_id:
        raise NotFound("session %(session)s is not served on this origin", session=session_id)


def entry_principal(connection: HTTPConnection, session_id: str) -> Principal:
    """The caller by its bearer token or the session's entry cookie, with the `sessions` scope."""
    if has_bearer(connection):
        principal = authenticate(connection)
    else:
        refuse_tossed_cookie(connection, ENTRY_COOKIE)
        cookie = read_cookie(connection, ENTRY_COOKIE)
        principal = get_services(connection).entry.principal_for_cookie(session_id, cookie)
        principal = principal.with_address(client_address(connection))
    principal.require_scope("sessions")
    return principal
