"""Long work over HTTP: plain JSON by default; with Accept: text/event-stream, its progress and then its result
or its error, and a refusal before any progress stays a plain HTTP error."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from beamhub.app import add_error_handlers
from beamhub.errors import Conflict, Forbidden
from beamhub.sse import EVENT_STREAM, Report, run_reporting

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


class Count(BaseModel):
    total: int


def counting(steps: int, fail: Exception | None = None, refuse: bool = False) -> Callable[[Report | None], Count]:
    """Work that reports `steps` times (phase "files") and then fails with `fail`, or refuses before it starts."""

    def work(report: Report | None) -> Count:
        if refuse:
            raise Forbidden("only the DAQ registers data")
        for done in range(1, steps + 1):
            if report is not None:
                report("files", done)
        if fail is not None:
            raise fail
        return Count(total=steps)

    return work


@pytest.fixture
def client() -> TestClient:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from fastapi.testclient import TestClient
    app = FastAPI()
    add_error_handlers(app)
    works: dict[str, Callable[[Report | None], Count]] = {
        "ok": counting(3), "many": counting(100_000), "refused": counting(3, refuse=True),
        "conflict": counting(2, fail=Conflict("another registration ran at the same time")),
        "bug": counting(2, fail=RuntimeError("secret internals")),
    }

    @app.post("/work/{name}", response_model=Count)
    async def run(name: str, request: Request) -> Any:
        return await run_reporting(request, works[name])

    return TestClient(app, raise_server_exceptions=False)


def events(client: TestClient, name: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of the stream of work `name`."""
    response = client.post(f"/work/{name}", headers={"Accept": EVENT_STREAM})
    assert response.status_code == 200 and response.headers["content-type"].startswith(EVENT_STREAM)
    parsed = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        parsed.append((fields["event"], json.loads(fields["data"])))
    return parsed


def test_without_the_event_stream_the_answer_is_the_result(client: TestClient) -> None:
    assert client.post("/work/ok").json() == {"total": 3}
    assert client.post("/work/conflict").status_code == 409


def test_the_stream_reports_progress_then_the_result(client: TestClient) -> None:
    received = events(client, "ok")
    assert received[0] == ("progress", {"phase": "files", "done": 1})  # the first report goes out at once
    assert received[-1] == ("result", {"total": 3})
    assert all(name == "progress" for name, _ in received[:-1])


def test_progress_is_throttled_and_only_grows(client: TestClient) -> None:
    received = events(client, "many")
    done = [data["done"] for name, data in received if name == "progress"]
    assert len(done) < 50 and done == sorted(done)
    assert received[-1] == ("result", {"total": 100_000})


def test_a_refusal_before_any_progress_is_a_plain_http_error(client: TestClient) -> None:
    response = client.post("/work/refused", headers={"Accept": EVENT_STREAM})
    assert response.status_code == 403
    assert response.json() == {"detail": "only the DAQ registers data", "code": "forbidden"}


def test_a_failure_after_progress_ends_the_stream_with_an_error_event(client: TestClient) -> None:
    received = events(client, "conflict")
    assert received[0][0] == "progress"
    assert received[-1] == ("error", {"status": 409, "detail": "another registration ran at the same time",
                                      "code": "conflict"})


def test_an_unexpected_failure_shows_no_internals(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    received = events(client, "bug")
    assert received[-1][0] == "error" and received[-1][1]["status"] == 500
    assert "secret" not in json.dumps(received)
    assert any("long-running request failed" in record.message for record in caplog.records)



def test_long_work_leaves_the_servers_shared_threads_free(client: TestClient) -> None:
    """Forty registrations in progress at once, more than the event loop's pool has threads: the server still
    answers what needs one of those threads (an event stream's database poll)."""
    app, release = client.app, threading.Event()

    def waiting(report: Report | None) -> Count:
        assert report is not None
        report("acl", 1)
        release.wait(30)
        return Count(total=1)

    @app.post("/waiting")  # type: ignore[attr-defined]
    async def run(request: Request) -> Any:
        return await run_reporting(request, waiting)

    @app.get("/quick")  # type: ignore[attr-defined]
    async def quick() -> int:
        return await asyncio.to_thread(lambda: 1)

    with client, ThreadPoolExecutor(41) as requests:
        streams = [requests.submit(client.post, "/waiting", headers={"Accept": EVENT_STREAM}) for _ in range(40)]
        try:
            time.sleep(1)
            assert requests.submit(client.get, "/quick").result(timeout=5).json() == 1
        finally:
            release.set()
        assert all(stream.result(timeout=30).text.endswith('event: result\ndata: {"total":1}\n\n')
                   for stream in streams)
