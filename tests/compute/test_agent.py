"""The session agent as a real process, reporting to a recording HTTP server in the test."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from beamhub.agent import SECRET_ENV
from helpers.waiting import wait_for

SECRET = "s3cret-" + secrets.token_hex(8)
SESSION = "sess1"


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

    def start(socket_path: Path, program: list[str], *, ready_path: str = "", heartbeat: float = 30.0,
              secret: str | None = SECRET) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
        env["AGENT_TEST_MARK"] = "kept"
        if secret is not None:
            env[SECRET_ENV] = secret
        argv = [sys.executable, "-m", "beamhub.agent", "--session", SESSION, "--callback", recorder.url,
                "--socket", str(socket_path), "--ready-path", ready_path, "--heartbeat", str(heartbeat), "--", *program]
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


UNIX_HTTP_SERVER = """
import http.server, socketserver, sys, time
path, delay, ok_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == ok_path else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

class Server(socketserver.UnixStreamServer):
    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)  # BaseHTTPRequestHandler expects a (host, port) client address

time.sleep(delay)
with Server(path, Handler) as server:
    server.serve_forever()
"""


def http_server(socket_path: Path, delay: float = 0.0, ok_path: str = "/") -> list[str]:
    """A program that serves HTTP on a Unix socket after `delay` seconds: 200 at ok_path, 404 elsewhere."""
    return [sys.executable, "-c", UNIX_HTTP_SERVER, str(socket_path), str(delay), ok_path]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path) -> None:
        super().__init__("localhost", timeout=2)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.socket_path))


def status_at(socket_path: Path, path: str = "/") -> int | None:
    """The HTTP status a GET of `path` gets on the Unix socket, None when nothing answers."""
    connection = UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    """The session's socket path, in a directory only this user may enter."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    return directory / "http.sock"


def test_reports_ready_once_the_program_answers_http(recorder: Recorder, run_agent: Callable[..., Any],
                                                     sock: Path) -> None:
    started = time.monotonic()
    run_agent(sock, http_server(sock, delay=0.5), ready_path="/")
    wait_for(lambda: recorder.events("ready"), what="the ready event")

    at, path, secret, body = recorder.first("ready")
    assert body == {"event": "ready"}
    assert path == f"/api/v1/sessions/{SESSION}/agent"
    assert secret == SECRET
    assert at - started >= 0.5  # not before the program could answer
    assert status_at(sock) == 200


def test_a_404_at_the_ready_path_is_not_ready(recorder: Recorder, run_agent: Callable[..., Any],
                                             sock: Path) -> None:
    """Something answering on the socket that does not know the session's path is not the session's program."""
    agent = run_agent(sock, http_server(sock, ok_path="/elsewhere/"), ready_path=f"/s/{SESSION}/")
    wait_for(lambda: status_at(sock, f"/s/{SESSION}/") == 404, what="the program to answer 404")
    time.sleep(1.0)  # the agent polls every few hundredths of a second

    assert agent.poll() is None
    assert recorder.events() == []


def test_a_program_that_answers_on_another_socket_is_never_ready(recorder: Recorder,
                                                                 run_agent: Callable[..., Any],
                                                                 sock: Path) -> None:
    other = sock.with_name("other.sock")
    agent = run_agent(sock, http_server(other), ready_path="/")
    wait_for(lambda: status_at(other) == 200, what="the program to answer on the other socket")
    time.sleep(1.0)

    assert agent.poll() is None
    assert status_at(sock) is None
    assert recorder.events() == []


def test_reports_ready_only_once_then_activity_heartbeats(recorder: Recorder, run_agent: Callable[..., Any],
                                                          sock: Path) -> None:
    run_agent(sock, http_server(sock), ready_path="/", heartbeat=0.1)
    wait_for(lambda: len(recorder.events("activity")) >= 2, what="two heartbeats")

    kinds = [body["event"] for body in recorder.events()]
    assert kinds[0] == "ready" and kinds.count("ready") == 1
    for beat in recorder.events("activity"):
        assert isinstance(beat["cpu_seconds"], float) and beat["cpu_seconds"] >= 0
    assert all(secret == SECRET for _, _, secret, _ in recorder.requests)


def test_reports_exit_status_when_the_program_exits_by_itself(recorder: Recorder, run_agent: Callable[..., Any],
                                                              sock: Path) -> None:
    agent = run_agent(sock, ["/bin/sh", "-c", "sleep 0.2; exit 4"])
    assert agent.wait(timeout=10) == 4
    assert recorder.events("exited") == [{"event": "exited", "status": 4}]


def test_program_killed_by_a_signal_gives_128_plus_signal(recorder: Recorder, run_agent: Callable[..., Any],
                                                          sock: Path) -> None:
    agent = run_agent(sock, ["/bin/sh", "-c", "kill -KILL $$"])
    assert agent.wait(timeout=10) == 128 + signal.SIGKILL
    assert recorder.events("exited") == [{"event": "exited", "status": -signal.SIGKILL}]


def test_sigterm_stops_the_program_without_an_exit_report(recorder: Recorder, run_agent: Callable[..., Any],
                                                          sock: Path) -> None:
    agent = run_agent(sock, http_server(sock), ready_path="/")
    wait_for(lambda: recorder.events("ready"), what="the ready event")

    agent.send_signal(signal.SIGTERM)  # the agent alone, not its group: it must pass it on

    assert agent.wait(timeout=10) == 0
    wait_for(lambda: status_at(sock) is None, what="the program to stop answering on its socket")
    assert recorder.events("exited") == []


def test_program_does_not_see_the_agent_secret(recorder: Recorder, run_agent: Callable[..., Any],
                                              tmp_path: Path, sock: Path) -> None:
    dump = tmp_path / "env.json"
    program = [sys.executable, "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))",
               str(dump)]
    agent = run_agent(sock, program)
    assert agent.wait(timeout=10) == 0

    env = json.loads(dump.read_text())
    assert SECRET_ENV not in env
    assert SECRET not in env.values()
    assert env["AGENT_TEST_MARK"] == "kept"


def test_refuses_to_start_without_the_secret(recorder: Recorder, run_agent: Callable[..., Any],
                                             tmp_path: Path, sock: Path) -> None:
    marker = tmp_path / "ran"
    agent = run_agent(sock, ["touch", str(marker)], secret=None)
    assert agent.wait(timeout=10) == 2
    assert SECRET_ENV in agent.stderr.read()
    assert not marker.exists()
    assert recorder.requests == []
