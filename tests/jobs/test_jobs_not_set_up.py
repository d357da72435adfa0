"""A beamhub without a Slurm configuration says so with a 404, never a 5xx, and follows no jobs."""

from __future__ import annotations

from typing import Any


def test_batch_jobs_are_not_offered_without_slurm(beamhub_factory: Any, tmp_path: Any) -> None:
    hub = beamhub_factory(env={"BEAMHUB_SLURM_CONF": str(tmp_path / "no-slurm.conf")})
    _, token = hub.create_user()
    with hub.client(token) as client:
        partitions = client.get("/api/v1/jobs/partitions")
        submitted = client.post("/api/v1/jobs", json={"command": "hostname", "minutes": 1})
    for answer in (partitions, submitted):
        assert answer.status_code == 404, answer.text
        assert "not set up" in answer.json()["detail"]
    assert "cannot read job states" not in hub.log()
