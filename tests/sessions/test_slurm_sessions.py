"""Sessions on a real Slurm cluster (backend = "slurm"): a session is a job of its user on a node, its agent serves it
over TLS on a port its node chose, and the proxy reaches it there with the session's own certificate pinned."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.waiting import wait_for
from tests.jobs import conftest as jobs_fixtures

slurm_cluster = jobs_fixtures.slurm_cluster
IMAGE = Path("/opt/beamhub/images/default")

WHOAMI = textwrap.dedent("""
    import json, os, socket, socketserver
    from http.server import BaseHTTPRequestHandler
    class Who(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"uid": os.getuid(), "job": os.environ.get("SLURM_JOB_ID"),
                               "node": os.environ.get("SLURMD_NODENAME"), "path": self.path,
                               "authorization": self.headers.get("Authorization", "")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        def get_request(self):
            conn, _ = super().get_request()
            return conn, ("session", 0)
    Server(os.environ["BEAMHUB_SOCKET"], Who).serve_forever()
""")


def slurm(*argv: str, check: bool = True) -> str:
    """A Slurm command against the test cluster, as root; its output."""
    env = {**os.environ, "SLURM_CONF": str(jobs_fixtures.SLURM_CONF)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=check).stdout


def job_field(job_id: int, name: str) -> str:
    """One field of `scontrol show job` (JobState, TimeLimit, UserId, NodeList...)."""
    for word in slurm("scontrol", "show", "job", str(job_id)).split():
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    raise AssertionError(f"no {name} in scontrol's answer for job {job_id}")


def messages(hub: Any, session_id: str) -> str:
    """The messages of a session's events recorded until now, one a line (its stream, read until it pauses)."""
    found: list[str] = []
    try:
        with hub.admin.stream("GET", f"/api/v1/sessions/{session_id}/events", timeout=1) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    found.append(json.loads(line[6:])["message"])
    except httpx.ReadTimeout:
        pass
    return "\n".join(found)


def job_id_of(hub: Any, session_id: str) -> int:
    """The Slurm job of a session, found by its name."""
    name = f"{hub.env['BEAMHUB_SLURM_JOB_PREFIX']}{session_id}"
    return int(slurm("squeue", "--noheader", "--states=all", f"--name={name}", "--format=%i").split()[0])


def slurm_env(conf: Path, uid_range_env: dict[str, str]) -> dict[str, str]:
    """A server on the test cluster whose jobs are named apart from every other server's (each cancels the jobs of
    its own name that no session of its owns)."""
    return {"BEAMHUB_BACKEND": "slurm", "BEAMHUB_SLURM_CONF": str(conf), "BEAMHUB_START_TIMEOUT": "120",
            "BEAMHUB_SLURM_JOB_PREFIX": f"beamhub-test-{secrets.token_hex(3)}-", **uid_range_env}


@pytest.fixture(scope="module")
def hub(slurm_cluster: Path, module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Any:
    return module_beamhub_factory(slurm_env(slurm_cluster, uid_range_env))


@pytest.fixture(scope="module")
def people(hub: Any) -> dict[str, tuple[str, str]]:
    return {"alice": hub.create_user(), "bob": hub.create_user()}


def start_whoami(hub: Any, token: str, **body: Any) -> dict[str, Any]:
    """A running command session that answers who and where it runs; waited for until it answers."""
    with hub.client(token) as client:
        response = client.post("/api/v1/sessions", json={"kind": "command", "command": sys.executable,
                                                         "args": ["-c", WHOAMI], "memory": "256Mi", **body})
        assert response.status_code == 201, response.text
        session = hub.wait_for_state(response.json()["id"], {"running"}, timeout=90)
        wait_for(lambda: client.get(f"/s/{session['id']}/who").status_code == 200, 30, "the session to answer")
    return session


@pytest.fixture(scope="module")
def alices(hub: Any, people: dict[str, tuple[str, str]]) -> Iterator[dict[str, Any]]:
    session = start_whoami(hub, people["alice"][1])
    yield session
    hub.admin.delete(f"/api/v1/sessions/{session['id']}")


def test_a_session_runs_as_its_user_in_a_slurm_job_and_answers_its_owner_through_the_proxy(
        hub: Any, people: dict[str, tuple[str, str]], alices: dict[str, Any]) -> None:
    alice = pwd.getpwnam(people["alice"][0])
    with hub.client(people["alice"][1]) as client:
        who = client.get(f"/s/{alices['id']}/who").json()
    job = job_id_of(hub, alices["id"])
    assert who["uid"] == alice.pw_uid and who["job"] == str(job) and who["node"] in ("node1", "node2", "node3")
    assert job_field(job, "UserId") == f"{alice.pw_name}({alice.pw_uid})"
    assert who["authorization"].startswith("token ") and people["alice"][1] not in who["authorization"]
    assert alices["host"] == "127.0.0.1"
    placement = wait_for(lambda: hub.admin.get(f"/api/v1/sessions/{alices['id']}").json()["placement"]
                         if "running on" in (hub.admin.get(f"/api/v1/sessions/{alices['id']}").json()["placement"]
                                             or "") else None, 10, "the placement")
    assert placement == f"running on {who['node']} as Slurm job {job}"
    events = messages(hub, alices["id"])
    assert f"as Slurm job {job}" in events and "TLS, the session's own certificate" in events


def test_only_the_owner_enters_a_slurm_session(hub: Any, people: dict[str, tuple[str, str]],
                                               alices: dict[str, Any]) -> None:
    with hub.client(people["bob"][1]) as bob:
        assert bob.get(f"/s/{alices['id']}/who").status_code == 403
    assert hub.admin.get(f"/s/{alices['id']}/who").status_code == 403


def impostor(owner: str, port_file: Path, seen_file: Path) -> subprocess.Popen[bytes]:
    """A TLS server of another user on a port of this node, with a certificate of its own that names the session's
    subject; it writes its port, then any bytes a client sends it after a handshake."""
    program = textwrap.dedent(f"""
        import socket, ssl, subprocess, tempfile, os
        d = tempfile.mkdtemp()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", d + "/k", "-out", d + "/c", "-subj", "/CN=beamhub-session-x", "-days", "1"],
                       check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d + "/c", d + "/k")
        server = socket.create_server(("127.0.0.1", 0))
        open({str(port_file)!r}, "w").write(str(server.getsockname()[1]))
        while True:
            conn, _ = server.accept()
            try:
                tls = ctx.wrap_socket(conn, server_side=True)
                open({str(seen_file)!r}, "ab").write(tls.recv(65536))
            except (OSError, ssl.SSLError):
                pass
    """)
    return subprocess.Popen(["setpriv", f"--reuid={owner}", f"--regid={owner}", "--clear-groups", "--",
                             sys.executable, "-c", program], cwd="/", stdout=subprocess.DEVNULL)


def test_another_users_process_on_the_sessions_port_gets_no_traffic(
        hub: Any, people: dict[str, tuple[str, str]]) -> None:
    """As if bob's process held the port the session's agent answered on: the proxy completes no handshake with it
    (it has not the session's key), so no request, token or cookie reaches it; the owner gets a 502."""
    session = start_whoami(hub, people["alice"][1])
    shared = Path(tempfile.mkdtemp(prefix="beamhub-impostor-"))
    shared.chmod(0o777)
    port_file, seen = shared / "port", shared / "seen"
    bob = impostor(people["bob"][0], port_file, seen)
    try:
        port = int(wait_for(lambda: port_file.exists() and port_file.read_text(), 20, "the impostor to listen"))
        with sqlite3.connect(hub.state_dir / "beamhub.db") as db:
            db.execute("UPDATE sessions SET port = ? WHERE id = ?", (port, session["id"]))
        time.sleep(2.5)  # the proxy's admissions of the last seconds still name the agent's port
        with hub.client(people["alice"][1]) as client:
            response = client.get(f"/s/{session['id']}/who")
        assert response.status_code == 502
        assert not seen.exists() or seen.read_bytes() == b""
    finally:
        bob.kill()
        bob.wait()
        shutil.rmtree(shared)
        hub.admin.delete(f"/api/v1/sessions/{session['id']}")


def test_a_session_in_a_partition_that_is_down_shows_why_it_waits(hub: Any, people: dict[str, tuple[str, str]]
                                                                   ) -> None:
    with hub.client(people["alice"][1]) as client:
        response = client.post("/api/v1/sessions", json={"kind": "command", "command": "sleep", "args": ["600"],
                                                         "memory": "128Mi", "partition": "hold"})
        assert response.status_code == 201, response.text
        session = response.json()

        def waiting() -> str | None:
            events = messages(hub, session["id"])
            return events if "its partition is down (PartitionDown)" in events else None

        events = wait_for(waiting, 30, "the queued reason")
        assert client.get(f"/api/v1/sessions/{session['id']}").json()["state"] == "starting"
        assert "queued as Slurm job" in events
        assert client.post("/api/v1/sessions", json={"kind": "command", "command": "sleep",
                                                     "partition": "nowhere"}).status_code == 422
    hub.admin.delete(f"/api/v1/sessions/{session['id']}")
    assert job_field(job_id_of(hub, session["id"]), "JobState") == "CANCELLED"


def test_extending_a_session_extends_its_jobs_time_limit(hub: Any, people: dict[str, tuple[str, str]],
                                                         alices: dict[str, Any]) -> None:
    job = job_id_of(hub, alices["id"])
    with hub.client(people["alice"][1]) as client:
        response = client.patch(f"/api/v1/sessions/{alices['id']}", json={"runtime": 3 * 3600})
    assert response.status_code == 200, response.text
    assert job_field(job, "TimeLimit") == "03:01:00"


def test_expiry_cancels_the_job(hub: Any, people: dict[str, tuple[str, str]]) -> None:
    session = start_whoami(hub, people["alice"][1], runtime=8)
    job = job_id_of(hub, session["id"])
    assert job_field(job, "TimeLimit") == "00:02:00"
    ended = hub.wait_for_state(session["id"], {"expired"}, timeout=30)
    assert ended["reason"] == "its time ran out"
    wait_for(lambda: job_field(job, "JobState") == "CANCELLED", 20, "the job to be cancelled")


def test_a_node_set_down_ends_the_session_with_the_reason(hub: Any, people: dict[str, tuple[str, str]]) -> None:
    session = start_whoami(hub, people["alice"][1])
    node = job_field(job_id_of(hub, session["id"]), "NodeList")
    try:
        slurm("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=beamhub-test")
        ended = hub.wait_for_state(session["id"], {"failed"}, timeout=30)
    finally:
        slurm("scontrol", "update", f"NodeName={node}", "State=RESUME", check=False)
    assert ended["reason"] == f"node {node} failed or was set down (NodeDown)"
    assert f"node {node} failed or was set down (NodeDown)" in messages(hub, session["id"])


def test_beamhub_killed_and_started_again_finds_its_session_on_slurm(
        slurm_cluster: Path, beamhub_factory: Any, uid_range_env: dict[str, str]) -> None:
    server = beamhub_factory(slurm_env(slurm_cluster, uid_range_env))
    _, token = server.create_user()
    session = start_whoami(server, token)
    server.kill()
    server.start()
    time.sleep(2)  # reconciler rounds of the new process
    with server.client(token) as client:
        assert client.get(f"/s/{session['id']}/who").status_code == 200
        assert client.get(f"/api/v1/sessions/{session['id']}").json()["state"] == "running"
    assert job_field(job_id_of(server, session["id"]), "JobState") == "RUNNING"


def test_a_job_slurm_ends_at_its_time_limit_fails_the_session_saying_so(
        hub: Any, people: dict[str, tuple[str, str]]) -> None:
    """Slurm's limits are whole minutes, checked every 30 s: this one takes 60-100 s."""
    session = start_whoami(hub, people["alice"][1])
    slurm("scontrol", "update", f"JobId={job_id_of(hub, session['id'])}", "TimeLimit=1")
    ended = hub.wait_for_state(session["id"], {"failed"}, timeout=150)
    assert ended["reason"] == "Slurm ended the job at its time limit of 1 min (TimeLimit)"
    assert "Slurm ended the job at its time limit" in messages(hub, session["id"])


def test_jupyterlab_runs_on_a_node_as_its_user_and_its_kernel_answers_through_the_proxy(
        hub: Any, people: dict[str, tuple[str, str]], kit: Any) -> None:
    """The default image's JupyterLab as a Slurm job: HTTP and the kernel's websocket go over the agent's TLS
    endpoint, and the code runs as the session's user on the node Slurm chose."""
    if not (IMAGE / "bin" / "jupyter-lab").exists():
        pytest.skip(f"no JupyterLab image at {IMAGE}: run scripts/install.sh")
    username, token = people["alice"]
    session = kit(hub).running(token, kind="jupyter", memory="1Gi")
    try:
        code = "import os; print(os.getuid(), os.environ['SLURM_JOB_ID'])"
        uid, job = kit(hub).execute(session["id"], token, code).split()
        assert int(uid) == pwd.getpwnam(username).pw_uid and int(job) == job_id_of(hub, session["id"])
    finally:
        hub.admin.delete(f"/api/v1/sessions/{session['id']}")


SEED_IMAGE = "dockerhub.ihep.ac.cn/opendata/cumopy:db61750"


def seed_payload(username: str, **changes: object) -> dict[str, object]:
    """The seed's example request to /userpod/ (its image name mapped to the default image here)."""
    return {"username": username, "sourceip": "192.0.2.10", "description": "HEPSCT_jupyter_B7", "podname": "default",
            "userimage": SEED_IMAGE, "ncores": 48, "memory": "200G", "sshpubkeys": "",
            "extra_resource": {"nvidia.com/gpu": 1}, "single_cmd": "start.sh",
            "single_cmd_args": "jupyterhub-singleuser; --ip=0.0.0.0; --port=8888", "scriptenv": "",
            "expireruntime": 86400, **changes}


def test_the_seeds_example_payload_starts_jupyterlab_as_a_slurm_job_of_its_user(
        slurm_cluster: Path, beamhub_factory: Any, uid_range_env: dict[str, str], kit: Any) -> None:
    """As written it asks for more than a node of the test cluster has (48 cores, 200G, a GPU): Slurm refuses the
    job and the session fails saying so; sized to the cluster, it runs JupyterLab as its user on a node."""
    if not (IMAGE / "bin" / "jupyter-lab").exists():
        pytest.skip(f"no JupyterLab image at {IMAGE}: run scripts/install.sh")
    images = json.dumps({"default": str(IMAGE), SEED_IMAGE: str(IMAGE)})
    server = beamhub_factory({**slurm_env(slurm_cluster, uid_range_env), "BEAMHUB_IMAGES": images})
    username, token = server.create_user()
    refused = server.admin.post("/userpod/", json=seed_payload(username))
    assert refused.status_code == 201, refused.text
    failed = server.wait_for_state(refused.json()["sessionid"], {"failed"}, timeout=30)
    assert failed["reason"].startswith("Slurm refused the session's job")
    pod = server.admin.post("/userpod/", json=seed_payload(username, podname="small", ncores=1, memory="1G",
                                                            extra_resource={}))
    assert pod.status_code == 201, pod.text
    session = server.wait_for_state(pod.json()["sessionid"], {"running"}, timeout=90)
    uid, job = kit(server).execute(session["id"], token, "import os; print(os.getuid(), os.environ['SLURM_JOB_ID'])"
                                   ).split()
    assert int(uid) == pwd.getpwnam(username).pw_uid and int(job) == job_id_of(server, session["id"])
