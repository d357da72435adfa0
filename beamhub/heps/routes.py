"""The HEPS spawner API: /users/, /userpod/, /refreshuserspod/, /uniqueipinfo/."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, Request, status

from beamhub.db import utcnow
from beamhub.deps import AdminPrincipal, CurrentPrincipal, Identity, Keys, Sessions, SessionsPrincipal, Workstations
from beamhub.heps import service
from beamhub.heps.schemas import GPU_RESOURCE, PodOut, PodRequest, PodUpdate, UserRequest, WorkstationIn, WorkstationOut
from beamhub.identity.accounts.schemas import UserOut
from beamhub.identity.fields import MAX_ID, USERNAME_PATTERN
from beamhub.identity.principal import Principal
from beamhub.sessions.models import SessionRecord, Workstation
from beamhub.sessions.schemas import NAME_PATTERN
from beamhub.units import format_size

router = APIRouter(tags=["HEPS spawner API"])


def pod_out(record: SessionRecord) -> PodOut:
    end = record.ended_at or utcnow()
    return PodOut(
        username=record.user.username, podname=record.name, sessionid=record.id, status=record.state.value,
        reason=record.reason, sourceip=record.source_ip or "", description=record.description,
        userimage=record.image, ncores=record.ncores, memory=format_size(record.memory),
        extra_resource={GPU_RESOURCE: record.gpus} if record.gpus else {}, createtime=record.created_at,
        runningtime=(end - record.started_at).total_seconds() if record.started_at else 0.0,
        expireruntime=round((record.expires_at - record.created_at).total_seconds()), expiretime=record.expires_at,
        url=f"/s/{record.id}/",
    )


def workstation_out(workstation: Workstation, viewer: Principal) -> WorkstationOut:
    """A workstation as the seed shows it; which session holds it only for admins and the beamline's staff."""
    holder_visible = viewer.is_admin or viewer.serves(workstation.beamline)
    return WorkstationOut(sourceip=workstation.ip, beamline=workstation.beamline, description=workstation.description,
                          sessionid=workstation.session_id if holder_visible else None)


@router.post("/users/", status_code=status.HTTP_201_CREATED, response_model=UserOut, summary="Create User")
def create_user(body: UserRequest, principal: CurrentPrincipal, identity: Identity) -> object:
    return identity.create_user(body.username, uid=body.uid, groups=body.groups, by=principal)


@router.get("/users/", response_model=list[UserOut], summary="Read Users")
def read_users(principal: CurrentPrincipal, identity: Identity, skip: int = Query(0, ge=0, le=MAX_ID),
               limit: int = Query(100, ge=1, le=1000)) -> object:
    return identity.list_users(skip, limit, by=principal)


@router.get("/users/count", summary="Count Users")
def count_users(principal: CurrentPrincipal, identity: Identity) -> dict[str, int]:
    return {"count": identity.count_users(by=principal)}


@router.get("/users/{username}", response_model=UserOut, summary="Read Item")
def read_user(username: str, principal: CurrentPrincipal, identity: Identity) -> object:
    return identity.get_user(username, by=principal)


@router.post("/userpod/", status_code=status.HTTP_201_CREATED, response_model=PodOut,
             summary="Create Pod By User")
def create_pod(body: PodRequest, principal: SessionsPrincipal, sessions: Sessions, keys: Keys) -> PodOut:
    return pod_out(service.create_pod(sessions, keys, principal, body.username, body.to_spec(), body.sshpubkeys))


@router.delete("/userpod/", response_model=PodOut, summary="Delete Pod By User")
def delete_pod(principal: SessionsPrincipal, sessions: Sessions, username: str = Query(pattern=USERNAME_PATTERN),
               podname: str = Query("default", pattern=NAME_PATTERN)) -> PodOut:
    record = sessions.find_active(principal, username, podname)
    return pod_out(sessions.stop(principal, record.id))


@router.patch("/userpod/", response_model=PodOut, summary="Update Pod By User")
def update_pod(body: PodUpdate, principal: SessionsPrincipal, sessions: Sessions) -> PodOut:
    record = sessions.find_active(principal, body.username, body.podname)
    new_expiry = record.created_at + timedelta(seconds=body.expireruntime)
    return pod_out(sessions.extend(principal, record.id, new_expiry, None))


@router.get("/userpod/{username}", response_model=list[PodOut], summary="Get Pods By User")
def pods_of_user(username: str, principal: SessionsPrincipal, sessions: Sessions) -> list[PodOut]:
    return [pod_out(r) for r in sessions.list(principal, username, active_only=True)]


@router.get("/refreshuserspod/", response_model=list[PodOut], summary="Get Pods Sync Db")
def refresh_pods(principal: AdminPrincipal, request: Request, sessions: Sessions) -> list[PodOut]:
    request.app.state.reconciler.run_once()
    return [pod_out(r) for r in sessions.list(principal, active_only=True)]


@router.get("/uniqueipinfo/", response_model=list[WorkstationOut], summary="Get Uniqueipinfo")
def list_workstations(principal: CurrentPrincipal, workstations: Workstations) -> list[WorkstationOut]:
    return [workstation_out(w, principal) for w in workstations.list()]


@router.post("/uniqueipinfo/", status_code=status.HTTP_201_CREATED, response_model=WorkstationOut,
             summary="Create Uniqueipinfo")
def register_workstation(body: WorkstationIn, principal: AdminPrincipal,
                         workstations: Workstations) -> WorkstationOut:
    return workstation_out(workstations.register(principal, body.sourceip, body.beamline or "",
                                                 body.description or ""), principal)


@router.put("/uniqueipinfo/", response_model=WorkstationOut, summary="Update Uniqueipinfo")
def update_workstation(body: WorkstationIn, principal: AdminPrincipal, workstations: Workstations) -> WorkstationOut:
    return workstation_out(workstations.update(principal, body.sourceip, body.beamline, body.description), principal)
