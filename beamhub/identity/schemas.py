"""Request and response bodies of the users, groups and tokens API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from beamhub.identity.models import Role, UserState

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


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="POSIX user name")
    uid: int | None = Field(None, ge=1000, le=MAX_ID, description="taken from the configured range when absent")
    groups: list[Username] = Field(default_factory=list, max_length=MAX_ITEMS, description="supplementary group names")
    roles: list[Role] = Field(default_factory=lambda: [Role.user], max_length=len(Role))
    beamlines: list[Beamline] = Field(default_factory=list, max_length=MAX_ITEMS,
                                  description="beamlines a staff member serves")
    display_name: NoNul = Field("", max_length=128)
    email: Line = ""


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: list[Role] | None = Field(None, max_length=len(Role))
    beamlines: list[Beamline] | None = Field(None, max_length=MAX_ITEMS)
    state: UserState | None = None
    display_name: NoNul | None = Field(None, max_length=128)
    email: Line | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    uid: int
    gid: int
    groups: list[str]
    roles: list[str]
    beamlines: list[str]
    is_admin: bool
    state: UserState
    display_name: str
    email: str
    created_at: datetime


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Username
    description: NoNul = Field("", max_length=1024)


class GroupOut(BaseModel):
    name: str
    gid: int
    description: str
    members: list[str]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field("api", min_length=1)
    expires_in: int | None = Field(None, ge=1, le=MAX_SECONDS, description="seconds until the token stops working")
    scopes: list[Name] | None = Field(None, max_length=MAX_ITEMS,
                                      description="sessions, data:read, data:ingest, admin "
                                                  "(default: all that the user's roles can use)")


class TokenInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenOut(TokenInfo):
    token: str = Field(description="shown once; only its hash is kept")


class SshKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: NoNul = Field(min_length=1, max_length=16_384,
                            description="one line of a .pub file: 'ssh-ed25519 AAAA... comment'")


class SshKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    algorithm: str
    bits: int
    fingerprint: str = Field(description="SHA256, as ssh-keygen -lf prints it")
    comment: str
    created_at: datetime
    public_key: str


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    address: str
    success: bool
    detail: dict[str, Any]
