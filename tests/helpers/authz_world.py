"""The shared server of the authorization tests: users alice and bob, and one of each resource they act on.

Each test module builds its own World with `world_of` in a module fixture.
"""

from __future__ import annotations

import random
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SESSION_BODY = {"kind": "command", "command": "sleep", "args": ["300"], "memory": "256Mi", "ncores": 0.1}


def new_name(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def public_key() -> str:
    """A fresh ed25519 public key in OpenSSH format."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " t@x"


@dataclass
class World:
    """The users and resources of the shared server."""

    server: Any
    alice: str = ""
    alice_token: str = ""
    bob: str = ""
    bob_token: str = ""
    ids: dict[str, Any] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def user(self, **fields: Any) -> tuple[str, str]:
        username = new_name("az")
        self.users.append(username)
        return self.server.create_user(username=username, **fields)

    def session(self, token: str | None = None, **changes: Any) -> dict[str, Any]:
        """A new sleeping command session, of alice unless another token is given (the admin's: for alice)."""
        client = self.server.client(token or self.alice_token) if token != "admin" else self.server.admin
        body = {**SESSION_BODY, **changes}
        if token == "admin":
            body.setdefault("user", self.alice)
        response = client.post("/api/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def token_id(self) -> int:
        response = self.server.admin.post(f"/api/v1/users/{self.alice}/tokens", json={"name": "spare"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def key_id(self) -> int:
        response = self.server.admin.post(f"/api/v1/users/{self.alice}/keys", json={"public_key": public_key()})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def pod(self) -> str:
        """A new HEPS pod of alice; its name."""
        name = new_name("pod")
        response = self.server.admin.post("/userpod/", json={"username": self.alice, "podname": name, "ncores": 0.1,
                                                             "memory": "256Mi", "single_cmd": "sleep",
                                                             "single_cmd_args": "300"})
        assert response.status_code == 201, response.text
        return name

    def proposal(self) -> str:
        """A new proposal with alice as PI and one registered file, scan1/data.h5; its id."""
        now = datetime.now(UTC).isoformat()
        response = self.server.admin.post("/api/v1/proposals", json={
            "id": f"2024-{random.randrange(10**5):05d}", "title": "matrix", "beamline": "x1", "beamtime_start": now,
            "beamtime_end": now, "members": [{"username": self.alice, "role": "pi"}]})
        assert response.status_code == 201, response.text
        data = Path(response.json()["path"]) / "scan1" / "data.h5"
        data.parent.mkdir()
        data.write_bytes(b"frame")
        pid = response.json()["id"]
        assert self.server.admin.post(f"/api/v1/proposals/{pid}/register", json={}).status_code == 200
        return pid

    def member(self) -> dict[str, Any]:
        """A new user made a member of alice's proposal: the ids that name them."""
        username, _ = self.user()
        response = self.server.admin.put(f"/api/v1/proposals/{self.ids['proposal_id']}/members/{username}")
        assert response.status_code == 200, response.text
        return {"username": username}


@contextmanager
def world_of(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[World]:
    """A server of its own with alice, bob and their resources; everything removed at the end."""
    storage = Path(tempfile.mkdtemp(prefix="beamhub-authz-"))
    storage.chmod(0o755)
    server = module_beamhub_factory(env={**uid_range_env, "BEAMHUB_STORAGE_ROOT": str(storage)})
    w = World(server)
    try:
        w.alice, w.alice_token = w.user()
        w.bob, w.bob_token = w.user()
        w.groups.append(new_name("azg"))
        assert server.admin.post("/api/v1/groups", json={"name": w.groups[0]}).status_code == 201
        w.ids = {"username": w.alice, "session_id": w.session()["id"], "token_id": w.token_id(),
                 "key_id": w.key_id(), "name": w.groups[0], "podname": w.pod(),
                 "sid": "S-1-5-21-1-2-3-4", "ip": f"198.51.100.{random.randrange(1, 250)}"}
        assert server.admin.post("/uniqueipinfo/", json={"sourceip": w.ids["ip"], "beamline": "X1"}).status_code \
            == 201
        w.ids |= {"proposal_id": w.proposal(), "path": "scan1/data.h5", "dataset": "scan1"}
        yield w
    finally:
        server.stop_all_sessions()
        for name in w.users:
            subprocess.run(["userdel", "-r", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)
        for name in w.groups:
            subprocess.run(["groupdel", name], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)


def detail(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url} -> {response.status_code}"
