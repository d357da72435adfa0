"""The Slurm cases of bench/spawn.py: beamhub's Slurm backend (d) and JupyterHub's batchspawner SlurmSpawner (e),
both on the test cluster of scripts/slurm-cluster.sh, both starting the image's JupyterLab as the same resources
(2 cores, 2 GiB) in the partition `debug`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SLURM_CONF = Path(os.environ.get("BEAMHUB_SLURM_DIR", "/var/lib/beamhub-slurm")) / "slurm.conf"
CLUSTER = "start the test cluster: scripts/slurm-cluster.sh start (as root)"


def cluster_answers(conf: Path) -> bool:
    """Whether slurmctld answers with the test cluster's configuration."""
    done = subprocess.run(["sinfo", "--noheader"], env={**os.environ, "SLURM_CONF": str(conf)}, capture_output=True)
    return done.returncode == 0


NEEDS = [(SLURM_CONF, cluster_answers, CLUSTER)]
"""What both Slurm cases need, as spawn.check_prereqs lists it."""


def slurm_env() -> dict[str, str]:
    return {"SLURM_CONF": str(SLURM_CONF)}


def beamhub_env() -> dict[str, str]:
    """beamhub with backend = slurm on the test cluster; its jobs named apart from any other beamhub's."""
    return {**slurm_env(), "BEAMHUB_BACKEND": "slurm", "BEAMHUB_SLURM_CONF": str(SLURM_CONF),
            "BEAMHUB_SLURM_PARTITION": "debug", "BEAMHUB_SLURM_JOB_PREFIX": "bench-spawn-"}


SLURM_SPAWNER = """
# (e): batchspawner's SlurmSpawner, stock batch script (srun inside the job), as the user through runuser (no sudo
# here); the hub polls squeue every 0.5 s while the job starts, as it does by default
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.SlurmSpawner.exec_prefix = "runuser -u {{username}} --"
c.SlurmSpawner.req_partition = "debug"
c.SlurmSpawner.req_nprocs = "2"
c.SlurmSpawner.req_memory = "2G"
c.SlurmSpawner.req_runtime = "00:30:00"
c.Spawner.environment = {{"SLURM_CONF": "{slurm_conf}"}}  # sbatch runs with the spawner's environment
# the job's environment is the user's login one (--get-user-env=L): both commands by their full path in the image
c.SlurmSpawner.batchspawner_singleuser_cmd = "{image}/bin/batchspawner-singleuser"
# the test cluster's node names (node1-3) are not in DNS; every node's NodeAddr is 127.0.0.1 (a site's names resolve)
c.SlurmSpawner.state_exechost_exp = "127.0.0.1"
c.Spawner.ip = "0.0.0.0"
c.Spawner.cmd = ["{image}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
""".replace("{slurm_conf}", str(SLURM_CONF))
