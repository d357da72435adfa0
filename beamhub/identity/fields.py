"""Field types and limits every domain's request bodies share: names, lines without NUL, beamlines, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

USERNAME_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"
MAX_SECONDS = 10 * 365 * 86400
"""The longest duration a request may name (ten years); a site's own, shorter maximum is the services' to check."""
MAX_ID = 2**31 - 2
"""The largest UID or GID beamhub records: below uid_t's (uid_t)-1 and within a 32-bit signed database column."""
NO_NUL_PATTERN = r"^[^\x00]*$"
"""For query parameters: any text without NUL."""
MAX_ITEMS = 256
"""The longest list (groups, beamlines, scopes, members, arguments) or mapping (environment) a request may carry."""


def no_nul(value: str) -> str:
    """Refuse NUL: no C string, path, argument, environment value or PostgreSQL text can hold one."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def beamline_name(value: str) -> str:
    """A beamline as beamhub stores and compares it: lower-case, no surrounding blanks (" B7" is b7)."""
    return value.strip().lower()


def beamline_names(values: list[str]) -> list[str]:
    """Beamline names as a user's record keeps them: normalized, each once, sorted (for callers that pass no
    schema, such as the command line)."""
    return sorted({beamline_name(value) for value in values})


def _beamline_input(value: object) -> object:
    return beamline_name(value) if isinstance(value, str) else value


def utc(value: datetime) -> datetime:
    """The same instant in UTC; refused when it falls outside the years 1-9999 there."""
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the instant is out of range in UTC") from exc


Name = Annotated[str, Field(max_length=64), AfterValidator(no_nul)]
Line = Annotated[str, Field(max_length=255), AfterValidator(no_nul)]
NoNul = Annotated[str, AfterValidator(no_nul)]
Beamline = Annotated[Name, BeforeValidator(_beamline_input)]
"""A beamline name as a request gives it, normalized by beamline_name before it is checked."""
Username = Annotated[str, Field(pattern=USERNAME_PATTERN)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(utc)]
