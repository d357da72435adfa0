"""Fixtures of the batch job tests: a real Slurm cluster on this machine and a beamhub that submits to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "slurm-cluster.sh"
SLURM_DIR = Path(os.environ.get("BEAMHUB_SLURM_DIR", "/var/lib/beamhub-slurm"))
SLURM_CONF = SLURM_DIR / "slurm.conf"
FINAL = {"completed", "failed", "timeout", "out_of_memory", "node_fail", "cancelled", "preempted", "lost"}


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """munge, slurmctld and node[1-3] from scripts/slurm-cluster.sh; started if absent, stopped if started here."""
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(b) is None
               and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        pytest.skip(f"Slurm is not installed (no {', '.join(missing)}): run scripts/install.sh")
    if os.geteuid() != 0:
        pytest.skip("the Slurm cluster and its users' jobs need root")
    env = {**os.environ, "BEAMHUB_SLURM_DIR": str(SLURM_DIR)}
    running = subprocess.run([str(CLUSTER), "status"], env=env, capture_output=True).returncode == 0
    started = subprocess.run([str(CLUSTER), "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"the Slurm cluster did not start:\n{started.stdout}{started.stderr}")
    yield SLURM_CONF
    if not running:
        subprocess.run([str(CLUSTER), "stop"], env=env, capture_output=True)


@pytest.fixture(scope="session")
def slurm_cluster_or_skip(request: pytest.FixtureRequest) -> Path:
    """The cluster for tests outside tests/jobs (console pages, the browser), which import this fixture and
    slurm_cluster: where it cannot start, they are skipped, saying why, instead of failing."""
    try:
        return request.getfixturevalue("slurm_cluster")
    except pytest.fail.Exception as exc:
        print(f"skipped: the Slurm test cluster cannot start: {exc}")
        pytest.skip(f"the Slurm test cluster cannot start: {exc}")


@pytest.fixture(scope="module")
def hub(slurm_cluster: Path, module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[Any]:
    """A beamhub server on SQLite that submits to the test cluster, its storage root traversable by all."""
    storage = Path(tempfile.mkdtemp(prefix="beamhub-jobs-data-"))
    storage.chmod(0o755)
    yield module_beamhub_factory({"BEAMHUB_SLURM_CONF": str(slurm_cluster), "BEAMHUB_JOB_POLL_INTERVAL": "0.5",
                                  "BEAMHUB_STORAGE_ROOT": str(storage), **uid_range_env})
    shutil.rmtree(storage, ignore_errors=True)


def wait_for_job(client: Any, job_id: str, states: set[str], timeout: float = 60) -> dict:
    """Poll the API until the job is in one of `states`; fail with what it last was."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        if time.monotonic() > deadline or job["state"] in FINAL:
            raise AssertionError(f"job stayed {job['state']} (waited for {states}): {job}")
        time.sleep(0.2)


@pytest.fixture
def submit(hub: Any) -> Callable[..., dict]:
    """Submit a job as the client's user; it answers the job as the API returned it."""

    def run(client: Any, **body: Any) -> dict:
        response = client.post("/api/v1/jobs", json={"ncores": 1, "memory": "128M", **body})
        assert response.status_code == 201, response.text
        return response.json()

    return run
