"""Jobs that Slurm ends (time limit, memory limit, node down) show why in their events and state."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

from tests.jobs.conftest import wait_for_job


def scontrol(hub: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLURM_CONF": hub.env["BEAMHUB_SLURM_CONF"]}
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, env=env)


def test_a_job_over_its_memory_limit_ends_out_of_memory(hub: Any, submit: Callable[..., dict]) -> None:
    _, token = hub.create_user()
    client = hub.client(token)
    job = submit(client, memory="64Mi", command="/usr/bin/python3 -c 'b = bytearray(400 * 2**20); print(len(b))'")
    ended = wait_for_job(client, job["id"], {"out_of_memory"})
    assert "memory limit of 64Mi" in ended["reason"]
    assert "event: out_of_memory" in client.get(f"/api/v1/jobs/{job['id']}/events").text


def test_a_job_on_a_node_set_down_ends_node_fail(hub: Any, submit: Callable[..., dict]) -> None:
    _, token = hub.create_user()
    client = hub.client(token)
    job = submit(client, command="sleep 300")
    node = wait_for_job(client, job["id"], {"running"})["node"]
    try:
        assert scontrol(hub, "update", f"NodeName={node}", "State=DOWN", "Reason=beamhub-test").returncode == 0
        ended = wait_for_job(client, job["id"], {"node_fail"}, timeout=30)
    finally:
        scontrol(hub, "update", f"NodeName={node}", "State=RESUME")
    assert f"node {node} failed or was set down (NodeDown)" == ended["reason"]
    events = client.get(f"/api/v1/jobs/{job['id']}/events").text
    assert "event: node_fail" in events and "NodeDown" in events


def test_a_job_past_its_time_limit_ends_timeout(hub: Any, submit: Callable[..., dict]) -> None:
    """Slurm's limits are whole minutes and it checks them every 30 s: this one takes 60-100 s."""
    _, token = hub.create_user()
    client = hub.client(token)
    job = submit(client, minutes=1, command="sleep 600")
    ended = wait_for_job(client, job["id"], {"timeout"}, timeout=150)
    assert "time limit of 1 min" in ended["reason"]
    assert 55 <= ended["elapsed_seconds"] <= 130
    assert "event: timeout" in client.get(f"/api/v1/jobs/{job['id']}/events").text
