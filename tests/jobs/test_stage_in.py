"""A batch job that asks for stage-in is submitted once its proposal's data is on the fast tier, and reads it there."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers.data import write
from tests.jobs.conftest import wait_for_job


def test_a_job_with_stage_in_starts_once_its_data_is_hot_and_reads_it_there(hub: Any,
                                                                           submit: Callable[..., dict]) -> None:
    alice, token = hub.create_user()
    proposal = f"2026-{int.from_bytes(os.urandom(2), 'big') % 100000:05d}"
    created = hub.admin.post("/api/v1/proposals", json={
        "id": proposal, "title": "stage-in", "beamline": "b7", "tier": "warm",
        "beamtime_start": "2026-01-01T00:00:00Z", "beamtime_end": "2026-01-02T00:00:00Z",
        "members": [{"username": alice, "role": "pi"}]})
    assert created.status_code == 201, created.text
    data = os.urandom(500_000)
    write(Path(created.json()["path"]), "scan/a.bin", data)
    assert hub.admin.post(f"/api/v1/proposals/{proposal}/register", json={}).status_code == 200
    stable = created.json()["current_path"]
    as_alice = hub.client(token)
    assert as_alice.post("/api/v1/jobs", json={"command": "true", "stage_in": True}).status_code == 422
    job = submit(as_alice, command=f"sha256sum < {stable}/scan/a.bin; readlink -f {stable}", proposal=proposal,
                 stage_in=True)
    assert hub.admin.get(f"/api/v1/proposals/{proposal}").json()["tier"] == "hot"  # before Slurm had the job
    wait_for_job(as_alice, job["id"], {"completed"})
    digest, folder = as_alice.get(f"/api/v1/jobs/{job['id']}/output").text.split("\n")[:2]
    assert digest.split()[0] == hashlib.sha256(data).hexdigest()
    assert folder == str(Path(hub.env["BEAMHUB_STORAGE_ROOT"]).resolve() / "hot" / "b7" / proposal)
