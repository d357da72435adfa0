"""/api/v1/sessions: create, list, read, extend, stop, events, log; and the agent's report endpoint."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

from fastapi import APIRouter, Header, Query, Request, status
from starlette.responses import PlainTextResponse, StreamingResponse

from beamhub.broadcast import followed
from beamhub.db import utcnow
from beamhub.deps import (
    CREDENTIAL_RECHECK_SECONDS,
    Sessions,
    SessionsPrincipal,
    credential_stands,
    read_in_thread,
)
from beamhub.identity.fields import USERNAME_PATTERN
from beamhub.sessions.broadcast import EventBroadcaster, Published
from beamhub.sessions.models import SessionEvent, SessionRecord
from beamhub.sessions.schemas import AgentReport, EventOut, SessionCreate, SessionOut, SessionUpdate
from beamhub.sse import EVENT_STREAM, SSE_HEADERS, server_sent_event

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])
LOG_TAIL = 64 * 2**10
MAX_LOG_TAIL = 10 * 2**20


def _sse(event: SessionEvent) -> str:
    """One server-sent event: its id, its kind as the event name, the event as JSON."""
    return server_sent_event(event.kind, EventOut.model_validate(event, from_attributes=True).model_dump_json(),
                             event.id)


def session_out(record: SessionRecord) -> SessionOut:
    """The public view of a session; its tokens and handle stay inside."""
    end = record.ended_at or utcnow()
    return SessionOut(
        id=record.id, user=record.user.username, name=record.name, kind=record.kind, image=record.image,
        ncores=record.ncores, memory=record.memory, gpus=record.gpus, gpu_ids=record.gpu_ids,
        state=record.state.value, reason=record.reason, url=f"/s/{record.id}/", source_ip=record.source_ip,
        description=record.description, partition=record.partition, nodes=record.nodes, proposal=record.proposal,
        host=record.host,
        placement=record.placement, created_at=record.created_at, started_at=record.started_at,
        ended_at=record.ended_at, expires_at=record.expires_at,
        running_seconds=(end - record.started_at).total_seconds() if record.started_at else None,
        last_activity=record.last_activity,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
def create_session(body: SessionCreate, principal: SessionsPrincipal, sessions: Sessions) -> SessionOut:
    return session_out(sessions.create(principal, body.to_spec(), body.user))


@router.get("", response_model=list[SessionOut])
async def list_sessions(request: Request, principal: SessionsPrincipal, sessions: Sessions,
                        user: str | None = Query(None, pattern=USERNAME_PATTERN),
                        active: bool = False) -> list[SessionOut]:
    return [session_out(r) for r in await read_in_thread(request, sessions.list, principal, user, active_only=active)]


@router.get("/events", response_class=StreamingResponse, responses={200: {"content": {EVENT_STREAM: {}}}})
def my_session_events(request: Request, principal: SessionsPrincipal, sessions: Sessions,
                      last_event_id: int | None = Header(None)) -> StreamingResponse:
    """Server-sent events of all your sessions, from now (or after Last-Event-ID), while you listen."""
    cursor = last_event_id if last_event_id is not None else sessions.latest_event_id()
    sessions.events_of_user(principal, principal.username, cursor)  # a refusal answers before streaming

    async def stream() -> AsyncIterator[str]:
        with _broadcaster(request).subscribe() as published:
            yield ": listening\n\n"
            backlog = await asyncio.to_thread(sessions.events_of_user, principal, principal.username, cursor)
            seen = cursor
            for event in backlog:
                seen = event.id
                yield _sse(event)
            async for item in _followed(request, published):
                if item.user_id == principal.user_id and item.event.id > seen:
                    yield _sse(item.event)

    return StreamingResponse(stream(), media_type=EVENT_STREAM, headers=SSE_HEADERS)


@router.get("/{session_id}", response_model=SessionOut)
def get_session(session_id: str, principal: SessionsPrincipal, sessions: Sessions) -> SessionOut:
    return session_out(sessions.get(principal, session_id))


@router.patch("/{session_id}", response_model=SessionOut)
def extend_session(session_id: str, body: SessionUpdate, principal: SessionsPrincipal,
                   sessions: Sessions) -> SessionOut:
    return session_out(sessions.extend(principal, session_id, body.expires_at, body.runtime))


@router.delete("/{session_id}", response_model=SessionOut)
def stop_session(session_id: str, principal: SessionsPrincipal, sessions: Sessions) -> SessionOut:
    return session_out(sessions.stop(principal, session_id))


@router.get("/{session_id}/log", response_class=PlainTextResponse)
def session_log(session_id: str, principal: SessionsPrincipal, sessions: Sessions,
                tail: int = Query(LOG_TAIL, ge=1, le=MAX_LOG_TAIL)) -> PlainTextResponse:
    """The last `tail` bytes of what the session's program printed (its owner and administrators)."""
    return PlainTextResponse(sessions.log(principal, session_id, tail), headers={"Cache-Control": "no-store"})


@router.get("/{session_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {EVENT_STREAM: {}}}})
def session_events(request: Request, session_id: str, principal: SessionsPrincipal, sessions: Sessions,
                   after: int = Query(0, ge=0), last_event_id: int | None = Header(None)) -> StreamingResponse:
    """Server-sent events of a session, from the first (or after Last-Event-ID) until it ends."""
    sessions.get(principal, session_id)
    start = last_event_id if last_event_id is not None else after

    async def stream() -> AsyncIterator[str]:
        with _broadcaster(request).subscribe() as published:
            backlog = await asyncio.to_thread(sessions.events, principal, session_id, start)
            record = await asyncio.to_thread(sessions.get, principal, session_id)
            seen = start
            for event in backlog:
                seen = event.id
                yield _sse(event)
            if not record.state.is_active:
                return
            async for item in _followed(request, published):
                if item.event.session_id == session_id and item.event.id > seen:
                    yield _sse(item.event)
                    if item.ends_session:
                        return

    return StreamingResponse(stream(), media_type=EVENT_STREAM, headers=SSE_HEADERS)


def _broadcaster(request: Request) -> EventBroadcaster:
    return request.app.state.events


def _followed(request: Request, published: asyncio.Queue[Published]) -> AsyncIterator[Published]:
    """The events published for the stream, while its caller's credential stands."""
    return followed(published, functools.partial(credential_stands, request), CREDENTIAL_RECHECK_SECONDS)


@router.post("/{session_id}/agent", status_code=status.HTTP_204_NO_CONTENT, include_in_schema=False)
def agent_report(session_id: str, body: AgentReport, sessions: Sessions,
                 x_beamhub_agent_secret: str = Header("")) -> None:
    """Where a session's agent reports readiness, activity and exit."""
    sessions.agent_report(session_id, x_beamhub_agent_secret, body)
