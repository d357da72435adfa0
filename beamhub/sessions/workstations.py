"""Beamline workstations: the registered IPs whose sessions replace each other."""

from __future__ import annotations

from sqlalchemy import select

from beamhub.db import Database
from beamhub.errors import Conflict, NotFound
from beamhub.identity.principal import Principal
from beamhub.sessions.models import Workstation


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
