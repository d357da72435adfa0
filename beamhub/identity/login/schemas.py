"""Request bodies of the login API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PasswordSet(BaseModel):
    password: str = Field(min_length=8, max_length=1024)
