"""The audit log: who did what, when, from which address; never a secret."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from beamhub.db import Database, utcnow
from beamhub.identity.audit.models import AuditEvent
from beamhub.identity.principal import Principal

log = logging.getLogger(__name__)

SECRET_WORDS = ("token", "password", "passwd", "secret", "cookie", "authorization", "credential", "private",
                "csrf", "api_key", "apikey")
"""A detail key containing one of these is dropped: its value may be a secret."""

SYSTEM_ACTOR = "beamhub"
"""The actor of what beamhub does on its own (the reconciler, the command line)."""

SAFE_KEYS = frozenset({"token_id", "token_name"})
"""Keys that name a secret without holding it."""


def is_secret_key(key: str) -> bool:
    """Whether a detail key looks like it holds a secret."""
    lowered = key.lower()
    return lowered not in SAFE_KEYS and any(word in lowered for word in SECRET_WORDS)


def clean_detail(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail without secret-looking keys (at any depth), made JSON-safe."""
    cleaned: dict[str, Any] = {}
    for key, value in detail.items():
        if is_secret_key(str(key)):
            log.warning("audit: dropped detail %r, which looks like a secret", key)
            continue
        cleaned[str(key)] = _json_safe(value)
    return cleaned


def _json_safe(value: Any) -> Any:
    """A value JSON can hold: containers are cleaned recursively, others become strings."""
    if isinstance(value, dict):
        return clean_detail(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def who(by: Principal | None) -> tuple[str, str]:
    """The actor and address of an event done by a principal, or by beamhub itself."""
    return (by.username, by.address) if by is not None else (SYSTEM_ACTOR, "")


class AuditService:
    """Records audit events and answers queries about them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, db: Session, actor: str, action: str, target: str = "", address: str = "", success: bool = True,
            **detail: Any) -> AuditEvent:
        """Record an event in the caller's unit of work (it commits with it)."""
        event = AuditEvent(at=utcnow(), actor=(actor or "")[:64], action=action[:64], target=(target or "")[:255],
                           address=(address or "")[:64], success=success, detail=clean_detail(detail))
        db.add(event)
        return event

    def record(self, actor: str, action: str, target: str = "", address: str = "", success: bool = True,
               **detail: Any) -> AuditEvent:
        """Record an event in a unit of work of its own."""
        with self.db.session() as db:
            return self.add(db, actor, action, target, address, success, **detail)

    def add_as(self, db: Session, by: Principal | None, action: str, target: str = "", success: bool = True,
               **detail: Any) -> AuditEvent:
        """Like add, with actor and address taken from a principal (None: beamhub itself)."""
        actor, address = who(by)
        return self.add(db, actor, action, target, address, success, **detail)

    def record_as(self, by: Principal | None, action: str, target: str = "", success: bool = True,
                  **detail: Any) -> AuditEvent:
        """Like record, with actor and address taken from a principal (None: beamhub itself)."""
        actor, address = who(by)
        return self.record(actor, action, target, address, success, **detail)

    def query(self, actor: str | None = None, action: str | None = None, since: datetime | None = None,
              until: datetime | None = None, success: bool | None = None, limit: int = 100,
              before_id: int | None = None, address: str | None = None, *, by: Principal) -> list[AuditEvent]:
        """Events matching every filter given, newest first, for administrators; page on with before_id = the
        last id seen."""
        by.require_admin()
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(max(1, min(limit, 10_000)))
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        if action is not None:
            query = query.where(_action_filter(action))
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if until is not None:
            query = query.where(AuditEvent.at < until)
        if success is not None:
            query = query.where(AuditEvent.success == success)
        if before_id is not None:
            query = query.where(AuditEvent.id < before_id)
        if address is not None:
            query = query.where(AuditEvent.address == address)
        with self.db.session() as db:
            return list(db.scalars(query))

    def count_failures(self, actor: str | None = None, address: str | None = None,
                       since: datetime | None = None) -> int:
        """How many failed events of this actor and/or address happened since then (for rate limits)."""
        query = select(func.count()).select_from(AuditEvent).where(AuditEvent.success.is_(False))
        if since is not None:
            query = query.where(AuditEvent.at >= since)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        if address is not None:
            query = query.where(AuditEvent.address == address)
        with self.db.session() as db:
            return db.scalar(query) or 0


def _action_filter(action: str) -> Any:
    """An exact action, or a family: "session" or "session.*" match "session.start", "session.stop", ..."""
    family = action.removesuffix(".*")
    if action.endswith(".*") or "." not in action:
        return (AuditEvent.action == family) | AuditEvent.action.startswith(f"{family}.", autoescape=True)
    return AuditEvent.action == action
