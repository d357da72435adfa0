"""Batch jobs through the API against a real Slurm: they run as their user, and only the user reads their output."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.jobs.conftest import wait_for_job

BOB_MAY_NOT = {403, 404}


def test_job_runs_as_its_user_and_only_they_read_its_output(hub: Any, submit: Callable[..., dict]) -> None:
    alice, alice_token = hub.create_user()
    bob, bob_token = hub.create_user()
    as_alice, as_bob = hub.client(alice_token), hub.client(bob_token)
    job = submit(as_alice, name="whoami", command='id -u; id -g; echo "node=$SLURMD_NODENAME"; echo oops >&2')
    done = wait_for_job(as_alice, job["id"], {"completed"})
    account = pwd.getpwnam(alice)
    output = as_alice.get(f"/api/v1/jobs/{job['id']}/output")
    assert output.status_code == 200, output.text
    uid, gid, node = output.text.split()
    assert (int(uid), int(gid)) == (account.pw_uid, account.pw_gid)
    assert node == f"node={done['node']}" and done["node"].startswith("node")
    assert as_alice.get(f"/api/v1/jobs/{job['id']}/error").text == "oops\n"
    assert done["exit_code"] == 0 and done["elapsed_seconds"] is not None

    path = Path(done["output_path"])
    assert path.stat().st_uid == account.pw_uid and path.stat().st_mode & 0o077 == 0
    assert path.parent.stat().st_mode & 0o777 == 0o700
    by_bob = subprocess.run(["runuser", "-u", bob, "--", "cat", str(path)], capture_output=True, text=True)
    assert by_bob.returncode != 0 and "Permission denied" in by_bob.stderr
    assert as_bob.get(f"/api/v1/jobs/{job['id']}").status_code in BOB_MAY_NOT
    assert as_bob.get(f"/api/v1/jobs/{job['id']}/output").status_code in BOB_MAY_NOT
    assert all(j["id"] != job["id"] for j in as_bob.get("/api/v1/jobs").json())
    assert [j["id"] for j in as_alice.get("/api/v1/jobs").json()] == [job["id"]]

    events = as_alice.get(f"/api/v1/jobs/{job['id']}/events").text
    assert "event: pending" in events and "event: completed" in events
    audit = hub.admin.get("/api/v1/audit", params={"action": "job.submit", "actor": alice}).json()
    assert [e["target"] for e in audit] == [job["id"]]


def test_the_owner_cancels_and_another_user_cannot(hub: Any, submit: Callable[..., dict]) -> None:
    alice, alice_token = hub.create_user()
    _, bob_token = hub.create_user()
    as_alice, as_bob = hub.client(alice_token), hub.client(bob_token)
    job = submit(as_alice, command="sleep 300")
    wait_for_job(as_alice, job["id"], {"running"})
    assert as_bob.delete(f"/api/v1/jobs/{job['id']}").status_code in BOB_MAY_NOT
    assert as_alice.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "running"
    cancelled = as_alice.delete(f"/api/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200, cancelled.text
    final = wait_for_job(as_alice, job["id"], {"cancelled"}, timeout=30)
    assert final["ended_at"] is not None
    squeue = subprocess.run(["squeue", "-h", "-j", str(job["slurm_id"]), "-o", "%T"], capture_output=True, text=True,
                            env={**os.environ, "SLURM_CONF": str(hub.env["BEAMHUB_SLURM_CONF"])})
    assert squeue.stdout.strip() in ("CANCELLED", "")
    audit = hub.admin.get("/api/v1/audit", params={"action": "job.cancel"}).json()
    assert any(e["target"] == job["id"] and e["actor"] == alice for e in audit)


def test_beamline_staff_list_and_cancel_a_job_of_their_proposal(hub: Any, submit: Callable[..., dict]) -> None:
    alice, alice_token = hub.create_user()
    staff, staff_token = hub.create_user(roles=["staff"], beamlines=["b7"])
    _, other_token = hub.create_user(roles=["staff"], beamlines=["b9"])
    proposal = f"2026-{int.from_bytes(os.urandom(2), 'big') % 100000:05d}"
    created = hub.admin.post("/api/v1/proposals", json={
        "id": proposal, "title": "jobs", "beamline": "b7", "beamtime_start": "2026-01-01T00:00:00Z",
        "beamtime_end": "2026-01-02T00:00:00Z", "members": [{"username": alice}]})
    assert created.status_code == 201, created.text
    job = submit(hub.client(alice_token), command="sleep 300", proposal=proposal)
    assert job["beamline"] == "b7"
    as_staff, as_other = hub.client(staff_token), hub.client(other_token)
    wait_for_job(as_staff, job["id"], {"running"})
    assert job["id"] in [j["id"] for j in as_staff.get("/api/v1/jobs").json()]
    assert job["id"] not in [j["id"] for j in as_other.get("/api/v1/jobs").json()]
    assert as_other.delete(f"/api/v1/jobs/{job['id']}").status_code in BOB_MAY_NOT
    assert as_staff.delete(f"/api/v1/jobs/{job['id']}").status_code == 200
    assert wait_for_job(as_staff, job["id"], {"cancelled"}, timeout=30)["state"] == "cancelled"
    assert as_staff.get(f"/api/v1/jobs/{job['id']}/output").status_code == 403  # the kernel decides: not staff's


def test_a_job_reads_what_its_user_may_and_not_another_users_data(hub: Any, submit: Callable[..., dict]) -> None:
    alice, alice_token = hub.create_user()
    bob, _ = hub.create_user()
    root = Path(hub.env["BEAMHUB_STORAGE_ROOT"])
    mine, theirs = root / f"{alice}.h5", root / f"{bob}.h5"
    for path, owner in ((mine, alice), (theirs, bob)):
        path.write_text(f"data of {owner}\n")
        path.chmod(0o600)
        subprocess.run(["setfacl", "-m", f"u:{owner}:r", str(path)], check=True)
    as_alice = hub.client(alice_token)
    job = submit(as_alice, command=f"cat {mine}; cat {theirs}")
    done = wait_for_job(as_alice, job["id"], {"failed"})
    assert done["exit_code"] == 1
    assert as_alice.get(f"/api/v1/jobs/{job['id']}/output").text == f"data of {alice}\n"
    assert "Permission denied" in as_alice.get(f"/api/v1/jobs/{job['id']}/error").text


def test_bad_requests_are_refused_before_slurm(hub: Any) -> None:
    _, token = hub.create_user()
    client = hub.client(token)
    for body in ({"command": "true", "script": "#!/bin/sh\ntrue"}, {}, {"script": "echo no shebang"},
                 {"command": "a\x00b"}, {"command": "true", "ncores": 0}, {"command": "true", "ncores": 1025},
                 {"command": "true", "memory": "1M"}, {"command": "true", "minutes": 0},
                 {"command": "true", "partition": "../x"}):
        assert client.post("/api/v1/jobs", json=body).status_code == 422, body
    refused = client.post("/api/v1/jobs", json={"command": "true", "partition": "nosuch"})
    assert refused.status_code == 422 and "Slurm refused" in refused.json()["detail"]
