"""Beamline workstations: the registered IPs whose sessions replace each other."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from beamhub.db import Database
from beamhub.errors import Conflict, Forbidden, NotFound
from beamhub.identity.principal import Principal
from beamhub.sessions.models import SessionRecord, Workstation


class WorkstationService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self) -> list[Workstation]:
        with self.db.session() as db:
            return list(db.scalars(select(Workstation).order_by(Workstation.ip)))

    def register(self, principal: Principal, ip: str, beamline: str, description: str) -> Workstation:
        principal.require_admin()
        with self.db.session() as db:
            if db.scalar(select(Workstation).where(Workstation.ip == ip)):
                raise Conflict("workstation %(ip)s is already registered", ip=ip)
            workstation = Workstation(ip=ip, beamline=beamline, description=description)
            db.add(workstation)
        return workstation

    def update(self, principal: Principal, ip: str, beamline: str | None, description: str | None) -> Workstation:
        principal.require_admin()
        with self.db.session() as db:
            workstation = db.scalar(select(Workstation).where(Workstation.ip == ip))
            if workstation is None:
                raise NotFound("no workstation registered at %(ip)s", ip=ip)
            if beamline is not None:
                workstation.beamline = beamline
            if description is not None:
                workstation.description = description
        return workstation


def check_claim(db: Session, principal: Principal, ip: str) -> None:
    """Only an admin, its beamline's staff or a caller at that address may take a registered workstation (taking it
    stops the session it holds, which may be another user's)."""
    workstation = db.scalar(select(Workstation).where(Workstation.ip == ip))
    if workstation is None or principal.is_admin or principal.address == ip:
        return
    if not principal.serves(workstation.beamline):
        raise Forbidden("%(ip)s is a registered workstation: only a session requested from it may take it", ip=ip)


def hold_workstation(db: Session, ip: str | None, session_id: str) -> None:
    """A new session of a registered workstation is the one it holds, and belongs to its beamline."""
    workstation = db.scalar(select(Workstation).where(Workstation.ip == ip)) if ip else None
    if workstation is not None:
        db.flush()
        workstation.session_id = session_id
        record = db.get(SessionRecord, session_id)
        if record is not None:
            record.beamline = workstation.beamline or None
