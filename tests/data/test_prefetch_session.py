"""Prefetch under a real session: a member's beamhub session reads its proposal through ~/proposals, file after file,
while the proposal moves from warm to hot; it never fails a read, sees the same bytes on both tiers, and the hot copy
has the warm one's checksums and ACLs."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import posix1e
import pytest

from helpers.storage import storage_root

IMAGE = Path("/opt/beamhub/images/default")
FILES = {"scan1/big.h5": 24 * 2**20, **{f"scan1/frames/f{i:02d}.tif": 5000 + 131 * i for i in range(30)}}

READER = """
import hashlib, json, os, sys, time
folder = os.path.join(os.path.expanduser("~"), "proposals", sys.argv[1])
expected, stop = json.loads(sys.argv[2]), os.path.expanduser("~/stop-reading")
tiers, reads, errors = set(), 0, []
print("reading", flush=True)
while not os.path.exists(stop):
    for relpath, digest in expected.items():
        try:
            with open(os.path.join(folder, relpath), "rb") as f:
                real = os.path.realpath(f"/proc/self/fd/{f.fileno()}")
                got = hashlib.sha256()
                while chunk := f.read(1 << 20):
                    got.update(chunk)
            tiers.add(real.split(os.sep)[-4 - relpath.count("/")])
            if got.hexdigest() != digest:
                errors.append(relpath + ": other bytes")
        except OSError as exc:
            errors.append(f"{relpath}: {exc}")
        reads += 1
print(json.dumps({"reads": reads, "tiers": sorted(tiers), "errors": errors[:10]}), flush=True)
"""
"""A session's program: reads every file of the proposal through ~/proposals/<id> again and again, checking each
file's SHA-256 and noting the tier it was opened on, until ~/stop-reading appears."""


@pytest.fixture(scope="module")
def storage() -> Iterator[Path]:
    """Module-scoped here: the module shares one server."""
    with storage_root() as root:
        yield root


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, uid_range_env: dict[str, str], storage: Path) -> Any:
    if not (IMAGE / "bin" / "python").exists():
        pytest.skip(f"no default image at {IMAGE}: run scripts/install.sh")
    return module_beamhub_factory({**uid_range_env, "BEAMHUB_STORAGE_ROOT": str(storage)})


def snapshot(folder: Path) -> dict[str, tuple[str, str, str]]:
    """relpath -> (SHA-256, access ACL, its folder's default ACL) of every file below `folder`."""
    return {str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(),
                                            posix1e.ACL(file=str(path)).to_any_text(),
                                            posix1e.ACL(filedef=str(path.parent)).to_any_text())
            for path in sorted(folder.rglob("*")) if path.is_file()}


def log_of(client: Any, session_id: str) -> str:
    return str(client.get(f"/api/v1/sessions/{session_id}/log").text)


def test_prefetch_moves_a_warm_proposal_to_hot_while_a_session_reads_it(server: Any, storage: Path) -> None:
    member, token = server.create_user()
    now = datetime.now(UTC)
    proposal = f"2025-{secrets.randbelow(10**5):05d}"
    created = server.admin.post("/api/v1/proposals", json={
        "id": proposal, "title": "prefetch under a session", "beamline": "b7", "tier": "warm",
        "beamtime_start": (now - timedelta(days=3)).isoformat(), "beamtime_end": (now - timedelta(days=2)).isoformat(),
        "members": [{"username": member, "role": "pi"}]})
    assert created.status_code == 201, created.text
    warm = Path(created.json()["path"])
    for relpath, size in FILES.items():
        (warm / relpath).parent.mkdir(parents=True, exist_ok=True)
        (warm / relpath).write_bytes(os.urandom(size))
    assert server.admin.post(f"/api/v1/proposals/{proposal}/register", json={}).status_code == 200
    before = snapshot(warm)
    client = server.client(token)
    started = client.post("/api/v1/sessions", json={
        "kind": "command", "command": "python", "memory": "512Mi",
        "args": ["-c", READER, proposal, json.dumps({path: digest for path, (digest, _, _) in before.items()})]})
    assert started.status_code == 201, started.text
    session = started.json()["id"]
    deadline = time.monotonic() + 60
    while "reading" not in log_of(client, session):
        assert time.monotonic() < deadline, server.admin.get(f"/api/v1/sessions/{session}").json()
        time.sleep(0.2)
    time.sleep(1.0)

    moved = client.post(f"/api/v1/proposals/{proposal}/prefetch")
    time.sleep(1.0)
    home = Path(pwd.getpwnam(member).pw_dir)
    (home / "stop-reading").touch()
    ended = server.wait_for_state(session, {"completed", "failed", "stopped"}, timeout=120)
    read = json.loads(log_of(client, session).strip().splitlines()[-1])

    assert moved.status_code == 200 and moved.json()["from_tier"] == "warm", moved.text
    assert ended["state"] == "completed", ended
    assert read["errors"] == [] and read["tiers"] == ["hot", "warm"], read
    hot = storage / "hot" / "b7" / proposal
    assert snapshot(hot) == before and not warm.exists()
    assert client.get(f"/api/v1/proposals/{proposal}").json()["tier"] == "hot"
    assert os.path.realpath(home / "proposals" / proposal) == str(hot)


def test_a_session_started_for_a_proposal_brings_its_data_to_the_fast_tier(server: Any) -> None:
    member, token = server.create_user()
    _, stranger_token = server.create_user()
    now = datetime.now(UTC)
    proposal = f"2025-{secrets.randbelow(10**5):05d}"
    created = server.admin.post("/api/v1/proposals", json={
        "id": proposal, "title": "a session's proposal", "beamline": "b7", "tier": "warm",
        "beamtime_start": (now - timedelta(days=3)).isoformat(), "beamtime_end": (now - timedelta(days=2)).isoformat(),
        "members": [{"username": member, "role": "pi"}]})
    assert created.status_code == 201, created.text
    (Path(created.json()["path"]) / "scan.h5").write_bytes(os.urandom(4096))
    assert server.admin.post(f"/api/v1/proposals/{proposal}/register", json={}).status_code == 200
    body = {"kind": "command", "command": "sh", "args": ["-c", 'echo "proposal=$BEAMHUB_PROPOSAL"; sleep 60'],
            "memory": "64Mi", "ncores": 0.1, "proposal": proposal}
    with server.client(stranger_token) as stranger:
        refused = stranger.post("/api/v1/sessions", json=body)
    assert refused.status_code == 404, refused.text  # a proposal the user may not know: no session, nothing moved
    client = server.client(token)
    limited = client.post(f"/api/v1/users/{member}/tokens", json={"name": "sessions only", "scopes": ["sessions"]})
    with server.client(limited.json()["token"]) as sessions_only:
        assert sessions_only.post("/api/v1/sessions", json=body).status_code == 403  # naming data needs data:read
    started = client.post("/api/v1/sessions", json=body)
    assert started.status_code == 201, started.text
    session = started.json()
    assert session["proposal"] == proposal

    def hot() -> bool:
        return client.get(f"/api/v1/proposals/{proposal}").json()["tier"] == "hot"

    deadline = time.monotonic() + 60
    while not (hot() and f"proposal={proposal}" in log_of(client, session["id"])):
        assert time.monotonic() < deadline, (log_of(client, session["id"]), hot())
        time.sleep(0.2)
    assert client.delete(f"/api/v1/sessions/{session['id']}").status_code == 200
