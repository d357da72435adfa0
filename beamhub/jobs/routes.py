"""/api/v1/jobs: submit, list, read, cancel, events, output and error files."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Header, Query, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from beamhub.broadcast import followed
from beamhub.data.browsing.download import file_response
from beamhub.db import utcnow
from beamhub.deps import CREDENTIAL_RECHECK_SECONDS, Jobs, SessionsPrincipal, credential_stands
from beamhub.identity.fields import USERNAME_PATTERN
from beamhub.jobs.broadcast import JobEventBroadcaster
from beamhub.jobs.models import Job, JobEvent, JobState
from beamhub.jobs.schemas import JobCreate, JobEventOut, JobOut
from beamhub.sse import EVENT_STREAM, SSE_HEADERS, server_sent_event

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


def job_out(job: Job) -> JobOut:
    """The public view of a job."""
    end = job.ended_at or utcnow()
    return JobOut(
        id=job.id, slurm_id=job.slurm_id, user=job.user.username, name=job.name, partition=job.partition,
        ncores=job.ncores, memory=job.memory, nodes=job.nodes, minutes=job.minutes, proposal=job.proposal,
        beamline=job.beamline, state=job.state.value, reason=job.reason, node=job.node, exit_code=job.exit_code,
        submitted_at=job.submitted_at, started_at=job.started_at, ended_at=job.ended_at,
        elapsed_seconds=(end - job.started_at).total_seconds() if job.started_at else None,
        output_path=job.output_path, error_path=job.error_path,
        output_url=f"/api/v1/jobs/{job.id}/output", error_url=f"/api/v1/jobs/{job.id}/error")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobOut)
async def submit_job(body: JobCreate, principal: SessionsPrincipal, jobs: Jobs) -> Response:
    """One thread hop for the whole submission; the answer is JobOut's JSON as it is (FastAPI would check it again
    in a second hop)."""
    job = await run_in_threadpool(jobs.submit, principal, body)
    return Response(job_out(job).model_dump_json(), status.HTTP_201_CREATED, media_type="application/json")


@router.get("", response_model=list[JobOut])
def list_jobs(principal: SessionsPrincipal, jobs: Jobs, user: str | None = Query(None, pattern=USERNAME_PATTERN),
              active: bool = False, limit: int = Query(500, ge=1, le=5000)) -> list[JobOut]:
    return [job_out(job) for job in jobs.list(principal, user, active_only=active, limit=limit)]


@router.get("/partitions", response_model=list[str])
def list_partitions(_: SessionsPrincipal, jobs: Jobs) -> list[str]:
    return jobs.partitions()


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, principal: SessionsPrincipal, jobs: Jobs) -> JobOut:
    return job_out(jobs.get(principal, job_id))


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(job_id: str, principal: SessionsPrincipal, jobs: Jobs) -> JobOut:
    return job_out(jobs.cancel(principal, job_id))


def _sse(event: JobEvent) -> str:
    return server_sent_event(event.state, JobEventOut.model_validate(event, from_attributes=True).model_dump_json(),
                             event.id)


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={200: {"content": {EVENT_STREAM: {}}}})
def job_events(request: Request, job_id: str, principal: SessionsPrincipal, jobs: Jobs,
               after: int = Query(0, ge=0), last_event_id: int | None = Header(None)) -> StreamingResponse:
    """Server-sent events of a job (named by its state), from the first (or after Last-Event-ID) until it ends."""
    jobs.get(principal, job_id)
    start = last_event_id if last_event_id is not None else after

    async def stream() -> AsyncIterator[str]:
        with _broadcaster(request).subscribe() as published:
            yield ": listening\n\n"
            # The job before its backlog: had it ended, its last event is in the backlog.
            job = await asyncio.to_thread(jobs.get, principal, job_id)
            seen = start
            for event in await asyncio.to_thread(jobs.events, principal, job_id, start):
                seen = event.id
                yield _sse(event)
            if not job.state.is_active:
                return
            stands = functools.partial(credential_stands, request)
            async for event in followed(published, stands, CREDENTIAL_RECHECK_SECONDS):
                if event.job_id == job_id and event.id > seen:
                    yield _sse(event)
                    if not JobState(event.state).is_active:
                        return

    return StreamingResponse(stream(), media_type=EVENT_STREAM, headers=SSE_HEADERS)


def _broadcaster(request: Request) -> JobEventBroadcaster:
    return request.app.state.job_events


@router.get("/{job_id}/{which}", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def job_file(request: Request, job_id: str, which: Literal["output", "error"], principal: SessionsPrincipal,
             jobs: Jobs) -> Response:
    """The job's output or error file, if the file's own permissions let the caller read it."""
    response = file_response(request, jobs.output_file(principal, job_id, which))
    response.headers["content-type"] = "text/plain; charset=utf-8"
    return response
