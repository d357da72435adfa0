"""Response bodies of the Windows SID API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class GroupSid(BaseModel):
    name: str
    gid: int
    sid: str


class WindowsUserOut(BaseModel):
    username: str
    uid: int
    gid: int
    user_sid: str
    group_sid: str
    groups: list[GroupSid]


class SidOwnerOut(BaseModel):
    kind: Literal["user", "group"]
    id: int
    name: str
