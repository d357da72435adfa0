"""A refusal carries a machine code for programs and an English message for people, whose template the console
translates and fills with the same values."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from beamhub.app import add_error_handlers
from beamhub.errors import Conflict, NotFound


def test_an_error_fills_its_message_and_names_its_kind() -> None:
    error = NotFound("no session %(session)s", session="abc123")
    assert (str(error), error.code, error.status_code) == ("no session abc123", "not_found", 404)
    assert (error.template, error.fields) == ("no session %(session)s", {"session": "abc123"})
    assert str(Conflict("100% taken")) == "100% taken"  # a message without values is taken as it is


def test_the_api_answers_the_english_detail_and_the_code() -> None:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/refused")
    def refused() -> None:
        raise NotFound("no session %(session)s", session="abc123")

    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
            return await client.get("/refused")

    response = asyncio.run(ask())
    assert response.status_code == 404
    assert response.json() == {"detail": "no session abc123", "code": "not_found"}
