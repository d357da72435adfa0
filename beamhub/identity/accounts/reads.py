"""The reads on every request's path: Core selects of the columns an answer needs, a user's groups in the same
statement (no ORM objects, no second query for the groups)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, Select, String, bindparam, cast, func, select

from beamhub.errors import Forbidden, Unauthenticated
from beamhub.identity.accounts.models import ApiToken, Group, Role, User, UserState, group_members

users, groups, tokens = User.__table__, Group.__table__, ApiToken.__table__

GROUP_SEPARATOR = "\n"
"""Between a user's groups in one aggregated column, each `gid:name`: no group name, beamhub's or the host's
(/etc/group is colon- and line-separated), holds a colon or a newline."""


def groups_column(dialect: str) -> Any:
    """A user's groups as one string, `gid:name` joined by GROUP_SEPARATOR (NULL without any). The function by
    its dialect's name, so that the separator is a bound value (func.aggregate_strings renders it into the SQL
    at every execution); beamhub runs on SQLite and PostgreSQL."""
    entry = cast(groups.c.gid, String) + ":" + groups.c.name
    aggregate = func.string_agg if dialect == "postgresql" else func.group_concat
    return (select(aggregate(entry, GROUP_SEPARATOR))
            .select_from(group_members.join(groups, group_members.c.group_id == groups.c.id))
            .where(group_members.c.user_id == users.c.id)
            .scalar_subquery().label("group_entries"))


def parse_groups(value: str | None) -> list[tuple[str, int]]:
    """The (name, GID) of each group in an aggregated column, by name."""
    pairs = []
    for entry in value.split(GROUP_SEPARATOR) if value else ():
        gid, _, name = entry.partition(":")
        pairs.append((name, int(gid)))
    return sorted(pairs)


def group_names(value: str | None) -> list[str]:
    """The names of the groups in an aggregated column, sorted."""
    return sorted(entry.partition(":")[2] for entry in value.split(GROUP_SEPARATOR)) if value else []


USER_COLUMNS = (users.c.id.label("user_id"), users.c.username, users.c.uid, users.c.gid, users.c.roles,
                users.c.beamlines, users.c.state)
TOKEN_COLUMNS = (tokens.c.id, tokens.c.name, tokens.c.scopes, tokens.c.expires_at, tokens.c.revoked_at,
                 tokens.c.last_used_at)


def token_digest(token: str) -> str:
    """How a token is found: its SHA-256 (tokens are 32 random bytes: no slow hash or key is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_refusal(found: Row[Any] | None, now: datetime) -> Unauthenticated | Forbidden | None:
    """Why a token read by token_with_user does not authenticate anyone now; None if it does."""
    if found is None or found.revoked_at is not None:
        return Unauthenticated("the token is unknown or revoked")
    if found.expires_at is not None and found.expires_at <= now:
        return Unauthenticated("the token has expired")
    if found.state is not UserState.active:
        return Forbidden("user %(username)s is disabled", username=found.username)
    return None


@cache
def _token_query(dialect: str, by: str) -> Select[Any]:
    """The token with the bound `key` in column `by` (digest or id), its user's identity and groups."""
    return (select(*TOKEN_COLUMNS, *USER_COLUMNS, groups_column(dialect))
            .join_from(tokens, users, tokens.c.user_id == users.c.id).where(tokens.c[by] == bindparam("key")))


def token_with_user(db: Connection, by: str, key: str | int) -> Row[Any] | None:
    """The token whose `by` (digest or id) is `key`, with its user's identity and groups: one indexed lookup."""
    return db.execute(_token_query(db.dialect.name, by), {"key": key}).one_or_none()


@dataclass(slots=True)
class UserView:
    """A user as the API shows them (not frozen: a frozen dataclass is built a field at a time, and a 100-user
    page builds a hundred)."""

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


def _view(row: Row[Any]) -> UserView:
    """The view of a row of _user_query (its columns unpacked by position: a row's attributes are looked up by
    name each)."""
    _, username, uid, gid, roles, beamlines, state, display_name, email, created_at, group_entries = row
    return UserView(username, uid, gid, group_names(group_entries), roles, beamlines, Role.admin.value in roles,
                    state, display_name, email, created_at)


@cache
def _user_query(dialect: str, page: bool) -> Select[Any]:
    """Users with their groups: the one with the bound `username`, or a page by name (bound offset and limit)."""
    query = select(*USER_COLUMNS, users.c.display_name, users.c.email, users.c.created_at, groups_column(dialect))
    if page:
        return query.order_by(users.c.username).offset(bindparam("offset")).limit(bindparam("limit"))
    return query.where(users.c.username == bindparam("username"))


def user_view(db: Connection, username: str) -> UserView | None:
    """One user by name, with their groups, in one statement."""
    row = db.execute(_user_query(db.dialect.name, False), {"username": username}).one_or_none()
    return _view(row) if row is not None else None


def user_views(db: Connection, offset: int, limit: int) -> list[UserView]:
    """A page of users by name, with their groups, in one statement."""
    return [_view(row) for row in db.execute(_user_query(db.dialect.name, True), {"offset": offset, "limit": limit})]


@cache
def _identity_query(dialect: str) -> Select[Any]:
    """The user with the bound `username`: their identity and groups, what a host account is made of."""
    return select(*USER_COLUMNS, groups_column(dialect)).where(users.c.username == bindparam("username"))


def user_identity(db: Connection, username: str) -> Row[Any] | None:
    """One user by name as USER_COLUMNS and their groups (groups_column), in one statement."""
    return db.execute(_identity_query(db.dialect.name), {"username": username}).one_or_none()
