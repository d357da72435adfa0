"""/api/v1/users/{username}/keys: a user's SSH public keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from beamhub.deps import CurrentPrincipal, Keys
from beamhub.identity.keys.schemas import SshKeyCreate, SshKeyOut

router = APIRouter(prefix="/api/v1/users/{username}/keys", tags=["ssh keys"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SshKeyOut)
def add_key(username: str, body: SshKeyCreate, principal: CurrentPrincipal, keys: Keys) -> object:
    return keys.add_key(username, body.public_key, by=principal)


@router.get("", response_model=list[SshKeyOut])
def list_keys(username: str, principal: CurrentPrincipal, keys: Keys) -> object:
    return keys.list_keys(username, by=principal)


@router.delete("/{key_id}", response_model=SshKeyOut)
def delete_key(username: str, key_id: int, principal: CurrentPrincipal, keys: Keys) -> object:
    return keys.delete_key(username, key_id, by=principal)
