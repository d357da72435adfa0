"""Fixtures of the data tests: a storage root other UIDs can traverse, small apps served by a real uvicorn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from beamhub.config import Settings
from beamhub.services import build_services
from helpers.storage import storage_root


@pytest.fixture
def storage() -> Iterator[Path]:
    """One a test (tests/data change their storage)."""
    with storage_root() as root:
        yield root


@pytest.fixture
def env(require_root: None, tmp_path: Path, database_url: str, storage: Path,
        uid_range_env: dict[str, str]) -> dict[str, str]:
    """The configuration, as the environment a `beamhub` command gets."""
    return {"BEAMHUB_STATE_DIR": str(tmp_path / "state"), "BEAMHUB_DATABASE_URL": database_url,
            "BEAMHUB_STORAGE_ROOT": str(storage), **uid_range_env}


@pytest.fixture
def services(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """beamhub's services in this process, on the configuration of `env`."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    built = build_services(Settings())
    yield built
    built.db.dispose()


@pytest.fixture(scope="module")
def serve_app() -> Iterator[Callable[[FastAPI], str]]:
    """Serve an app with a real uvicorn on a free loopback port, in a thread; gives its HOST:PORT."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def serve(app: FastAPI) -> str:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        return f"127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    yield serve
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)
