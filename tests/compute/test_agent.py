"""The session agent as a real process, reporting to a recording HTTP server in the test."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from beamhub.agent import SECRET_ENV, port_is_free

_spec = importlib.util.spec_from_file_location("beamhub_test_local_backend_kit",
                                              Path(__file__).with_name("local_backend_kit.py"))
assert _spec is not None and _spec.loader is not None
kit = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)
wait_for = kit.wait_for

SECRET = "s3cret-" + secrets.token_hex(8)
SESSION = "sess1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder:
    """A callback server that records each POST: (monotonic time, path, secret header, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str, str, dict[str, Any]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recorder.requests.append((time.monotonic(), self.path,
                                          self.headers.get("X-Beamhub-Agent-Secret", ""), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [body for _, _, _, body in list(self.requests) if kind is None or body["event"] == kind]

    def first(self, kind: str) -> tuple[float, str, str, dict[str, Any]]:
        return next(r for r in list(self.requests) if r[3]["event"] == kind)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    instance = Recorder()
    yield instance
    instance.server.shutdown()
    instance.server.server_close()


@pytest.fixture
def run_agent(recorder: Recorder) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `python -m beamhub.agent` in its own process group; the group is killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int, program: list[str], *, ready_path: str = "", heartbeat: float = 30.0,
              secret: str | None = SECRET) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
        env["AGENT_TEST_MARK"] = "kept"
        if secret is not None:
            env[SECRET_ENV] = secret
        argv = [sys.executable, "-m", "beamhub.agent", "--session", SESSION, "--callback", recorder.url,
                "--port", str(port), "--ready-path", ready_path, "--heartbeat", str(heartbeat), "--", *program]
        agent = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.poll() is None:
            os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()
        assert agent.stderr is not None
        agent.stderr.close()


def http_server(port: int, delay: float = 0.0) -> list[str]:
    serve = f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1"
    return ["/bin/sh", "-c", f"sleep {delay}; {serve}" if delay else serve]


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_reports_ready_once_the_program_answers_http(recorder: Recorder, run_agent: Callable[..., Any]) -> None:
    port = free_port()
    started = time.monotonic()
    run_agent(port, http_server(port, delay=0.5), ready_path="/")
    wait_for(lambda: recorder.events("ready"), what="the ready event")

    at, path, secret, body = recorder.first("ready")
    assert body == {"event": "ready", "port": port}
    assert path == f"/api/v1/sessions/{SESSION}/agent"
    assert secret == SECRET
    assert at - started >= 0.5  # not before the program could answer
    assert answers(port)


def test_reports_ready_only_once_then_activity_heartbeats(recorder: Recorder,
                                                          run_agent: Callable[..., Any]) -> None:
    port = free_port()
    run_agent(port, http_server(port), ready_path="/", heartbeat=0.1)
    wait_for(lambda: len(recorder.events("activity")) >= 2, what="two heartbeats")

    kinds = [body["event"] for body in recorder.events()]
    assert kinds[0] == "ready" and kinds.count("ready") == 1
    for beat in recorder.events("activity"):
        assert isinstance(beat["cpu_seconds"], float) and beat["cpu_seconds"] >= 0
    assert all(secret == SECRET for _, _, secret, _ in recorder.requests)


def test_reports_exit_status_when_the_program_exits_by_itself(recorder: Recorder,
                                                              run_agent: Callable[..., Any]) -> None:
    agent = run_agent(free_port(), ["/bin/sh", "-c", "sleep 0.2; exit 4"])
    assert agent.wait(timeout=10) == 4
    assert recorder.events("exited") == [{"event": "exited", "status": 4}]


def test_program_killed_by_a_signal_gives_128_plus_signal(recorder: Recorder,
                                                          run_agent: Callable[..., Any]) -> None:
    agent = run_agent(free_port(), ["/bin/sh", "-c", "kill -KILL $$"])
    assert agent.wait(timeout=10) == 128 + signal.SIGKILL
    assert recorder.events("exited") == [{"event": "exited", "status": -signal.SIGKILL}]


def test_sigterm_stops_the_program_without_an_exit_report(recorder: Recorder,
                                                          run_agent: Callable[..., Any]) -> None:
    port = free_port()
    agent = run_agent(port, http_server(port), ready_path="/")
    wait_for(lambda: recorder.events("ready"), what="the ready event")

    agent.send_signal(signal.SIGTERM)  # the agent alone, not its group: it must pass it on

    assert agent.wait(timeout=10) == 0
    wait_for(lambda: port_is_free(port), what="the program to let go of its port")
    assert recorder.events("exited") == []


def test_program_does_not_see_the_agent_secret(recorder: Recorder, run_agent: Callable[..., Any],
                                              tmp_path: Path) -> None:
    dump = tmp_path / "env.json"
    program = [sys.executable, "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))",
               str(dump)]
    agent = run_agent(free_port(), program)
    assert agent.wait(timeout=10) == 0

    env = json.loads(dump.read_text())
    assert SECRET_ENV not in env
    assert SECRET not in env.values()
    assert env["AGENT_TEST_MARK"] == "kept"


def test_refuses_to_start_without_the_secret(recorder: Recorder, run_agent: Callable[..., Any],
                                             tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    agent = run_agent(free_port(), ["touch", str(marker)], secret=None)
    assert agent.wait(timeout=10) == 2
    assert SECRET_ENV in agent.stderr.read()
    assert not marker.exists()
    assert recorder.requests == []


def test_refuses_a_port_that_is_in_use(recorder: Recorder, run_agent: Callable[..., Any],
                                       tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        agent = run_agent(holder.getsockname()[1], ["touch", str(marker)])
        assert agent.wait(timeout=10) == 3
    assert "in use" in agent.stderr.read()
    assert not marker.exists()
    assert recorder.requests == []


def test_port_in_time_wait_counts_as_free() -> None:
    """A previous session's closed connections must not block its port (servers use SO_REUSEADDR)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free(port)
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its side of the connection goes to TIME_WAIT
        client.recv(1)
        client.close()
    assert port_is_free(port)
