"""Putting the console on the app: its pages, static files and browser error pages."""

from __future__ import annotations

from pathlib import Path

from babel.dates import get_timezone
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from beamhub.config import ConfigError, Settings
from beamhub.web import (
    account_pages,
    admin_accounts,
    admin_pages,
    admin_people,
    admin_proposals,
    data_pages,
    help_pages,
    jobs_pages,
)
from beamhub.web.errors import http_error
from beamhub.web.routes import router

STATIC_DIR = Path(__file__).with_name("static")


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console on the app; a console_timezone that does not exist stops the start."""
    try:
        get_timezone(settings.console_timezone)
    except LookupError:
        raise ConfigError(f"console_timezone {settings.console_timezone!r} is not a known time zone, "
                          "e.g. UTC or Asia/Shanghai") from None
    app.include_router(router)
    for pages in (data_pages, jobs_pages, account_pages, admin_pages, admin_people, admin_accounts, admin_proposals,
                  help_pages):
        app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/viewer-assets", StaticFiles(directory=settings.viewer_dir, check_dir=False), name="viewer-assets")
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
