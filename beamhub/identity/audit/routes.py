"""/api/v1/audit: the audit log, for administrators."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query

from beamhub.deps import Audit, CurrentPrincipal
from beamhub.errors import Invalid
from beamhub.identity.audit.schemas import AuditEventOut
from beamhub.identity.fields import MAX_ID, NO_NUL_PATTERN

router = APIRouter(prefix="/api/v1", tags=["audit"])


def _aware(value: datetime | None, name: str) -> datetime | None:
    """A timestamp with a timezone, as the log stores them."""
    if value is not None and value.tzinfo is None:
        raise Invalid("%(name)s needs a timezone, e.g. 2026-01-01T12:00:00Z", name=name)
    return value


@router.get("/audit", response_model=list[AuditEventOut])
def audit_events(principal: CurrentPrincipal, audit: Audit,
                 actor: str | None = Query(None, max_length=255, pattern=NO_NUL_PATTERN),
                 action: str | None = Query(None, max_length=255, pattern=NO_NUL_PATTERN,
                                            description='exact, or a family such as "session" or "token.*"'),
                 address: str | None = Query(None, max_length=64, pattern=NO_NUL_PATTERN),
                 since: datetime | None = None, until: datetime | None = None,
                 success: bool | None = None, limit: int = Query(100, ge=1, le=1000),
                 before_id: int | None = Query(None, ge=1, le=MAX_ID,
                                               description="the id of the last event of the previous page")) -> object:
    """Audit events matching every filter given, newest first."""
    return audit.query(actor=actor, action=action, since=_aware(since, "since"), until=_aware(until, "until"),
                       success=success, limit=limit, before_id=before_id, address=address, by=principal)
