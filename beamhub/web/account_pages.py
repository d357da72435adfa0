"""The console's page of my SSH keys and API tokens: add, see, delete and revoke; a new token is shown once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from beamhub.deps import Identity, Keys, clear_cookie, cookie_name, set_cookie
from beamhub.errors import N_, BeamhubError, Invalid
from beamhub.identity.principal import SCOPES, Principal
from beamhub.web.errors import PageRoute
from beamhub.web.page_deps import PagePrincipal, refusal, see_other
from beamhub.web.pages import render, translator

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NOTICES = {
    "key-added": N_("The key was added: SSH logins and new sessions accept it from now on."),
    "key-deleted": N_("The key was deleted: it no longer opens anything."),
    "token-revoked": N_("The token was revoked: programs that use it are refused from now on."),
}
"""What the page says after a change, by the `done` its address carries."""

NEW_TOKEN_PATH = "/keys/tokens/new"
NEW_TOKEN_COOKIE = "beamhub-new-token"
NEW_TOKEN_SECONDS = 120
DEFAULT_SCOPES = ("sessions", "data:read")
MAX_TOKEN_DAYS = 3650


def offered_scopes(principal: Principal) -> list[str]:
    """The scopes the form offers: admin only to administrators, data:ingest to them and to service accounts."""
    if principal.is_admin:
        return sorted(SCOPES)
    return sorted(SCOPES - {"admin"} - (set() if "service" in principal.roles else {"data:ingest"}))


def keys_page(request: Request, principal: Principal, keys: Keys, identity: Identity, status_code: int = 200,
              **context: object) -> Response:
    """My keys and tokens with the forms to add them; `context` carries a refusal and what was typed."""
    _ = translator(request)
    done = request.query_params.get("done", "")
    context = {"public_key": "", "token_name": "", "token_days": "", "token_scopes": DEFAULT_SCOPES} | context
    return render(request, "keys/index.html", status_code, principal=principal,
                  keys=keys.list_keys(principal.username, by=principal),
                  tokens=identity.list_tokens(principal.username, by=principal),
                  scopes=offered_scopes(principal), notice=_(NOTICES[done]) if done in NOTICES else "", **context)


@router.get("/keys")
def my_keys(request: Request, principal: PagePrincipal, keys: Keys, identity: Identity) -> Response:
    return keys_page(request, principal, keys, identity)


@router.post("/keys/ssh")
def add_key(request: Request, principal: PagePrincipal, keys: Keys, identity: Identity,
            public_key: Annotated[str, Form(max_length=16_384)] = "") -> Response:
    """Add the key pasted into the form; a refused key comes back with why, as it was pasted."""
    try:
        keys.add_key(principal.username, public_key, by=principal)
    except BeamhubError as exc:
        return keys_page(request, principal, keys, identity, exc.status_code, public_key=public_key,
                         **refusal(request, exc))
    return see_other("/keys?done=key-added")


@router.post("/keys/ssh/{key_id}/delete")
def delete_key(principal: PagePrincipal, keys: Keys, key_id: int) -> Response:
    keys.delete_key(principal.username, key_id, by=principal)
    return see_other("/keys?done=key-deleted")


def expiry_seconds(days: str, _: Callable[[str], str]) -> int | None:
    """The token's lifetime from the form's days (empty: it never expires); Invalid with a translated reason."""
    if not days.strip():
        return None
    try:
        number = int(days.strip())
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_TOKEN_DAYS:
        raise Invalid(_("The expiry is a whole number of days from 1 to %(max)s, or empty for a token that does "
                        "not expire.") % {"max": MAX_TOKEN_DAYS})
    return number * 86400


def checked_token_form(name: str, scopes: list[str], _: Callable[[str], str]) -> str:
    """The token's name, if the form names it and picks at least one scope; Invalid with a translated reason."""
    if not name.strip():
        raise Invalid(_("Give the token a name that says where it is used, such as laptop-scripts."))
    if not scopes:
        raise Invalid(_("Choose at least one thing the token may do."))
    return name.strip()


@router.post("/keys/tokens")
def issue_token(request: Request, principal: PagePrincipal, keys: Keys, identity: Identity,
                name: Annotated[str, Form(max_length=64)] = "", days: Annotated[str, Form(max_length=16)] = "",
                scopes: Annotated[list[str] | None, Form()] = None) -> Response:
    """A new token, shown on the answer to this form and never again; a refused form comes back with why."""
    _ = translator(request)
    chosen = scopes or []
    try:
        expires_in = expiry_seconds(days, _)
        token, record = identity.issue_token(principal.username, checked_token_form(name, chosen, _), expires_in,
                                             chosen, by=principal)
    except BeamhubError as exc:
        return keys_page(request, principal, keys, identity, exc.status_code, token_name=name, token_days=days,
                         token_scopes=chosen, **refusal(request, exc))
    # Post/redirect/get: the token goes to the page that shows it in a short-lived cookie that page reads once, so
    # that reloading the page cannot post the form again and make another token.
    answer = see_other(f"{NEW_TOKEN_PATH}?id={record.id}")
    set_cookie(request, answer, NEW_TOKEN_COOKIE, f"{record.id}:{token}", max_age=NEW_TOKEN_SECONDS)
    return answer


@router.get(NEW_TOKEN_PATH)
def new_token(request: Request, principal: PagePrincipal, identity: Identity, id: int = 0) -> Response:  # noqa: A002
    """The token just made, shown once: the cookie that carried it is dropped; a second look says it is gone."""
    token_id, _, token = request.cookies.get(cookie_name(request, NEW_TOKEN_COOKIE), "").partition(":")
    record = next((r for r in identity.list_tokens(principal.username, by=principal) if r.id == id), None)
    shown = token if record is not None and token_id == str(id) else ""
    answer = render(request, "keys/token_created.html", principal=principal, token=shown, record=record,
                    api_url=str(request.base_url).rstrip("/"))
    clear_cookie(request, answer, NEW_TOKEN_COOKIE)
    return answer


@router.post("/keys/tokens/{token_id}/revoke")
def revoke_token(principal: PagePrincipal, identity: Identity, token_id: int) -> Response:
    identity.revoke_token(principal.username, token_id, by=principal)
    return see_other("/keys?done=token-revoked")
