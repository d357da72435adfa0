"""The HEPS spawner's own logic: a pod and the SSH keys sent with it are created as one unit."""

from __future__ import annotations

from beamhub.identity.keys.service import SshKeyService
from beamhub.identity.principal import Principal
from beamhub.sessions.models import SessionRecord
from beamhub.sessions.schemas import SessionSpec
from beamhub.sessions.service import SessionService


def create_pod(sessions: SessionService, keys: SshKeyService, by: Principal, username: str, spec: SessionSpec,
               sshpubkeys: str) -> SessionRecord:
    """A session and its keys, both or neither: the keys are checked first (nothing starts for a bad or refused
    key), stored once the session exists, and if storing them fails the session is stopped again."""
    new_keys = keys.validate(username, sshpubkeys, by)
    record = sessions.create(by, spec, username)
    try:
        keys.store(username, new_keys, by, skip_duplicates=True)
    except Exception:
        sessions.stop(by, record.id, reason="its SSH keys could not be stored")
        raise
    return record
