"""Session test helpers: start sessions, find their processes, run code in a kernel through the proxy."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from helpers.processes import parent_pid, proc_environ
from helpers.waiting import wait_for

IMAGE = Path("/opt/beamhub/images/default")


def kernel_message(msg_type: str, content: dict[str, Any], channel: str = "shell") -> dict[str, Any]:
    """A Jupyter message in the JSON websocket format (protocol 5.3, no subprotocol)."""
    return {
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": uuid.uuid4().hex,
                   "username": "test", "date": datetime.now(UTC).isoformat(), "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": content, "channel": channel, "buffers": [],
    }


async def execute_over_websocket(url: str, token: str, code: str, timeout: float = 30) -> str:
    """Run `code` in the kernel behind a channels websocket URL; return what it printed on stdout."""
    request = kernel_message("execute_request", {"code": code, "silent": False, "store_history": False,
                                                 "user_expressions": {}, "allow_stdin": False,
                                                 "stop_on_error": True})
    msg_id = request["header"]["msg_id"]
    output: list[str] = []
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  open_timeout=10) as ws:
        await ws.send(json.dumps(request))
        async with asyncio.timeout(timeout):
            async for raw in ws:
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = message["header"]["msg_type"]
                if kind == "stream" and message["content"]["name"] == "stdout":
                    output.append(message["content"]["text"])
                elif kind == "error":
                    raise AssertionError(f"kernel error: {message['content']}")
                elif kind == "status" and message["content"]["execution_state"] == "idle":
                    return "".join(output)
    raise AssertionError("kernel websocket closed before the cell finished")


class SessionKit:
    """Session operations against one real beamhub server."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def create(self, token: str, **body: Any) -> httpx.Response:
        with self.server.client(token) as client:
            return client.post("/api/v1/sessions", json=body)

    def start(self, token: str, **body: Any) -> dict[str, Any]:
        response = self.create(token, **body)
        assert response.status_code == 201, response.text
        return response.json()

    def running(self, token: str, **body: Any) -> dict[str, Any]:
        """A session started and waited for until it runs."""
        session = self.start(token, **body)
        return self.server.wait_for_state(session["id"], {"running"}, timeout=60)

    def stop(self, session_id: str) -> dict[str, Any]:
        response = self.server.admin.delete(f"/api/v1/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def handle(self, session_id: str) -> dict[str, Any]:
        """The local backend's handle file of a session: pid (= process group), start_time, cgroups."""
        return json.loads((self.server.state_dir / "local" / f"{session_id}.json").read_text())

    def pids(self, session_id: str) -> set[int]:
        """Every process of the session, as its cgroups list them."""
        pids: set[int] = set()
        for directory in self.handle(session_id)["cgroups"]:
            procs = Path(directory) / "cgroup.procs"
            if procs.exists():
                pids.update(int(p) for p in procs.read_text().split())
        return pids

    def program_pid(self, session_id: str) -> int:
        """The PID of the session's program (jupyter-lab, the command): the child of its agent."""
        agent = self.handle(session_id)["pid"]

        def find() -> int | None:
            return next((pid for pid in self.pids(session_id) if parent_pid(pid) == agent), None)

        return wait_for(find, 10, f"the program of session {session_id}")

    def program_env(self, session_id: str) -> dict[str, str]:
        return proc_environ(self.program_pid(session_id))

    def private_token(self, session_id: str) -> str:
        """The token the session's program trusts, read from its environment."""
        env = self.program_env(session_id)
        return env.get("JUPYTER_TOKEN") or env["BEAMHUB_SESSION_TOKEN"]

    def start_kernel(self, session_id: str, token: str) -> str:
        with self.server.client(token) as client:
            response = client.post(f"/s/{session_id}/api/kernels", json={"name": "python3"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def channels_url(self, session_id: str, kernel_id: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}/s/{session_id}/api/kernels/{kernel_id}/channels"

    def execute(self, session_id: str, token: str, code: str) -> str:
        """Start a kernel in a JupyterLab session and run one cell in it through the proxy."""
        kernel_id = self.start_kernel(session_id, token)
        return asyncio.run(execute_over_websocket(self.channels_url(session_id, kernel_id), token, code))


@pytest.fixture
def make_hub(beamhub_factory: Any) -> Callable[..., Any]:
    """make_hub(**env): a beamhub server with these BEAMHUB_* settings."""

    def make(**env: str) -> Any:
        return beamhub_factory(env=env)

    return make


@pytest.fixture(scope="session")
def kit() -> Callable[[Any], SessionKit]:
    """kit(server): session helpers for any server."""
    return SessionKit


def _require_image() -> None:
    if not (IMAGE / "bin" / "jupyter-lab").exists():
        pytest.skip(f"no JupyterLab image at {IMAGE}: run scripts/install.sh")


@pytest.fixture(scope="module")
def make_module_hub(module_beamhub_factory: Any) -> Callable[..., Any]:
    """make_module_hub(**env): a server the tests of a module share."""

    def make(**env: str) -> Any:
        return module_beamhub_factory(env=env)

    return make


@pytest.fixture(scope="module")
def hub(make_module_hub: Callable[..., Any]) -> Any:
    """The default server, shared by the tests of a module."""
    return make_module_hub()


@pytest.fixture(scope="module")
def hub_sessions(hub: Any) -> SessionKit:
    return SessionKit(hub)


@pytest.fixture(scope="module")
def owner(hub: Any) -> tuple[str, str]:
    """A user of the shared server: (username, token)."""
    return hub.create_user()


@pytest.fixture(scope="module")
def lab(hub_sessions: SessionKit, owner: tuple[str, str]) -> Iterator[dict[str, Any]]:
    """A running JupyterLab session of `owner` on the shared server, for tests that only use it."""
    _require_image()
    session = hub_sessions.running(owner[1], kind="jupyter", memory="512Mi")
    yield session
    hub_sessions.stop(session["id"])
