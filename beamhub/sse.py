"""Server-sent events: their format, and long work (registration, member changes, migration) reported as it goes."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from beamhub.errors import BeamhubError

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PROGRESS_INTERVAL = 0.25
"""Least seconds between two progress events of one stream; the first goes out at once."""
KEEPALIVE_SECONDS = 15.0
"""A comment line after this long without an event, so that proxies keep a quiet stream open."""
_QUIET = ("", -1)

Report = Callable[[str, int], None]
"""report(phase, done so far): how work tells its progress, from its own thread."""

PROGRESS_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {EVENT_STREAM: {}}, "description": (
    "JSON; or, with `Accept: text/event-stream`, `progress` events ({phase, done}) and then one `result` "
    "event (the JSON) or one `error` event ({status, detail, code})")}}


def server_sent_event(name: str, data: str, event_id: int | None = None) -> str:
    """One event: its id (if any), its name, its data on one line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {data}\n\n"


class _Work:
    """Work running in a thread of its own (it may take hours: it must not hold a thread of the loop's shared
    pool), its throttled progress passed to the event loop, then None once its outcome is settled."""

    def __init__(self, work: Callable[[Report | None], BaseModel]) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, int] | None] = asyncio.Queue()
        self.outcome: asyncio.Future[BaseModel] = self.loop.create_future()
        self.outcome.add_done_callback(_log_failure)
        self.sent_at: float | None = None
        threading.Thread(target=self._run, args=(work,), name="long-request", daemon=True).start()

    def report(self, phase: str, done: int) -> None:
        now = time.monotonic()
        if self.sent_at is None or now - self.sent_at >= PROGRESS_INTERVAL:
            self.sent_at = now
            self._to_loop(self.queue.put_nowait, (phase, done))

    def _run(self, work: Callable[[Report | None], BaseModel]) -> None:
        try:
            result = work(self.report)
        except BaseException as exc:  # settled for the stream to report, whatever it is
            self._to_loop(self._settle, None, exc)
        else:
            self._to_loop(self._settle, result, None)

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Hand a call to the event loop; once the server has stopped it, the work goes on unheard."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback, *args)

    def _settle(self, result: BaseModel | None, exc: BaseException | None) -> None:
        if exc is None:
            self.outcome.set_result(result)  # type: ignore[arg-type]
        else:
            self.outcome.set_exception(exc)
        self.queue.put_nowait(None)


async def run_reporting(request: Request, work: Callable[[Report | None], BaseModel]) -> BaseModel | StreamingResponse:
    """Run work in a thread and answer what it returns; to a client that accepts text/event-stream, stream
    its progress, then its result or its error.

    A refusal raised before the first report (who may, what exists) is a plain HTTP error either way.
    The work goes on to its end if the client goes away.
    """
    if EVENT_STREAM not in request.headers.get("accept", ""):
        return await run_in_threadpool(work, None)
    running = _Work(work)
    first = await running.queue.get()
    if first is None:
        running.outcome.result()  # a refusal raises here, before any byte of the stream
    return StreamingResponse(_events(running, first), media_type=EVENT_STREAM, headers=SSE_HEADERS)


async def _events(running: _Work, first: tuple[str, int] | None) -> AsyncIterator[str]:
    report = first
    while report is not None:
        phase, done = report
        yield server_sent_event("progress", json.dumps({"phase": phase, "done": done}))
        while (report := await _next_report(running)) is _QUIET:
            yield ": working\n\n"
    try:
        result = running.outcome.result()
    except BeamhubError as exc:
        refusal = {"status": exc.status_code, "detail": str(exc), "code": exc.code}
        yield server_sent_event("error", json.dumps(refusal))
    except Exception:  # logged by _log_failure; the client gets no traceback
        yield server_sent_event("error", json.dumps({"status": 500, "detail": "internal error; see the server log",
                                                       "code": "internal_error"}))
    else:
        yield server_sent_event("result", result.model_dump_json())


async def _next_report(running: _Work) -> tuple[str, int] | None:
    """The next report, None at the end, or _QUIET after KEEPALIVE_SECONDS without either."""
    try:
        return await asyncio.wait_for(running.queue.get(), KEEPALIVE_SECONDS)
    except TimeoutError:
        return _QUIET


def _log_failure(outcome: asyncio.Future[BaseModel]) -> None:
    """Log work that failed unexpectedly (a refusal is the client's to read, not the log's)."""
    if (exc := outcome.exception()) is not None and not isinstance(exc, BeamhubError):
        log.error("long-running request failed", exc_info=exc)
