"""Rendering console pages: one Jinja2 environment per language, the common context, safe headers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from beamhub.deps import SESSION_COOKIE, current_principal, get_services, read_cookie
from beamhub.errors import BeamhubError, Unauthenticated
from beamhub.identity.principal import Principal
from beamhub.web import stored_text
from beamhub.web.i18n import LOCALES, Formatter, request_locale, translations

TEMPLATES_DIR = Path(__file__).with_name("templates")
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


@functools.cache
def environment(locale: str) -> Environment:
    """The template environment of one language: autoescaped, with gettext/ngettext of its catalogue and the
    `translated` filter for text a service stored in English (a session's reason, an event's message)."""
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["translated"] = functools.partial(stored_text.translated, locale=locale)  # a service's stored text
    return env


def translator(request: Request) -> Callable[[str], str]:
    """The request language's gettext, to bind as `_` (so that Babel finds the messages)."""
    return translations(request_locale(request)).gettext


def message_of(error: BeamhubError, request: Request) -> str:
    """A service's refusal in the page's language: its message's translation, filled with the error's values (a
    value that is itself an error, such as the reason of "key 2 of 3: ...", in the page's language too); a message
    without values is also looked up as text a template made (see stored_text)."""
    if not error.fields:  # a message made elsewhere may still be a template's: found by the values in it
        return stored_text.translated(error.template, request_locale(request))
    translated = translator(request)(error.template)
    return translated % {name: message_of(value, request) if isinstance(value, BeamhubError) else value
                         for name, value in error.fields.items()}


def formatter(request: Request) -> Formatter:
    return Formatter(request_locale(request), get_services(request).settings.console_timezone)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page in the request's language; `principal` (if given) fills the navigation and the logout form."""
    locale = request_locale(request)
    common = {"request": request, "locale": locale, "html_lang": locale.replace("_", "-"), "locales": LOCALES,
              "fmt": formatter(request), "here": _here(request), "principal": None,
              "csrf_token": getattr(request.state, "login_csrf", None)}
    page = environment(locale).get_template(template).render(common | context)
    return HTMLResponse(page, status_code=status_code, headers=PAGE_HEADERS)


def _here(request: Request) -> str:
    """Where the language switch and the login page send the browser back to: this page, or home after a post."""
    if request.method != "GET":
        return "/"
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


class LoginRequired(Exception):
    """A page needs a login: the browser goes to the login page, and comes back after."""

    def __init__(self, next_path: str, expired: bool) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


def login_redirect(exc: LoginRequired) -> RedirectResponse:
    target = f"/login?next={quote(exc.next_path, safe='/')}" + ("&expired=1" if exc.expired else "")
    return RedirectResponse(target, status_code=303)


async def page_principal(request: Request) -> Principal:
    """The logged-in user of a page, by the login cookie (CSRF-checked on posts), exactly as the API checks it."""
    if read_cookie(request, SESSION_COOKIE) is None:
        raise LoginRequired(_here(request), expired=False)
    try:
        return await current_principal(request)
    except Unauthenticated:
        raise LoginRequired(_here(request), expired=True) from None
