"""The console's batch job pages: my jobs (and staff: their beamlines'), the submit form, cancel, one job's page.

Every decision is the job service's, as for the API; the pages only show it in the reader's language.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from beamhub.db import utcnow
from beamhub.deps import Jobs
from beamhub.errors import N_, BeamhubError, NotFound
from beamhub.identity.login.oidc import local_path
from beamhub.identity.principal import Principal
from beamhub.jobs.models import Job, JobState
from beamhub.jobs.service import JobService
from beamhub.units import format_size
from beamhub.web.errors import PageRoute
from beamhub.web.forms import JobForm
from beamhub.web.page_deps import PagePrincipal, refusal, see_other
from beamhub.web.pages import message_of, render, translator

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LISTED = 200
"""The newest jobs the list shows."""
NOTICES = {"cancelled": N_("The job was cancelled: Slurm ends it now.")}
"""What the list says after a change, by the `done` its address carries."""
PENDING_REASONS = {
    "Resources": N_("waiting for free nodes"),
    "Priority": N_("waiting: other jobs are ahead of it"),
    "PartitionDown": N_("waiting: its partition is not running jobs now"),
    "PartitionInactive": N_("waiting: its partition is not running jobs now"),
    "ReqNodeNotAvail": N_("waiting: the nodes it needs are not available"),
    "JobHeldUser": N_("held: it waits until it is released"),
    "JobHeldAdmin": N_("held by the administrators"),
    "Dependency": N_("waiting for the jobs it depends on"),
    "BeginTime": N_("waiting for its start time"),
}
"""Slurm's usual reasons for a waiting job, in plain words."""
SLURM_CODE = re.compile(r"\((\w+)\)$")
"""Slurm's reason code at the end of a job's recorded reason, e.g. `waiting (Resources)`."""


def plain_reason(job: Job, _: Callable[[str], str]) -> str:
    """Why a job is where it is, in the reader's language."""
    state = job.state
    if state is JobState.pending:
        code = SLURM_CODE.search(job.reason or "")
        return _(PENDING_REASONS.get(code.group(1) if code else "", N_("waiting to be scheduled")))
    sentences: dict[JobState, str] = {
        JobState.running: _("running on %(node)s"),
        JobState.completed: _("finished without errors (exit code 0)"),
        JobState.failed: _("ended with an error (exit code %(code)s)"),
        JobState.timeout: _("stopped by Slurm at its time limit of %(minutes)s minutes"),
        JobState.out_of_memory: _("stopped by Slurm: it needed more than its %(memory)s of memory"),
        JobState.node_fail: _("its node %(node)s failed or was taken out of service"),
        JobState.cancelled: _("cancelled before it finished"),
        JobState.preempted: _("stopped to make room for another job"),
        JobState.lost: _("Slurm no longer knows this job; what became of it is not known"),
    }
    sentence = sentences.get(state)
    if sentence is None:
        return job.reason or ""
    return sentence % {"node": job.node or "?", "code": job.exit_code, "minutes": job.minutes,
                       "memory": format_size(job.memory)}


def submit_form(request: Request, jobs: JobService) -> dict[str, Any]:
    """The form's context: the partitions to choose from, or why there is no form (not set up, Slurm away)."""
    try:
        return {"partitions": jobs.partitions(), "set_up": True}
    except NotFound:
        return {"partitions": [], "set_up": False}
    except BeamhubError as exc:
        return {"partitions": [], "set_up": True, "slurm_away": message_of(exc, request)}


def jobs_page(request: Request, principal: Principal, jobs: Jobs, form: JobForm, status_code: int = 200,
              **context: object) -> Response:
    """My jobs with the submit form; `context` carries a refusal."""
    _ = translator(request)
    done = request.query_params.get("done", "")
    listed = jobs.list(principal, limit=LISTED)
    return render(request, "jobs/index.html", status_code, principal=principal, jobs=listed, now=utcnow(),
                  form=form.values(), reason=lambda job: plain_reason(job, _),
                  others=any(job.user_id != principal.user_id for job in listed),
                  notice=_(NOTICES[done]) if done in NOTICES else "", **(submit_form(request, jobs) | context))


@router.get("/jobs")
def my_jobs(request: Request, principal: PagePrincipal, jobs: Jobs) -> Response:
    return jobs_page(request, principal, jobs, JobForm())


@router.post("/jobs")
def submit(request: Request, principal: PagePrincipal, jobs: Jobs, form: Annotated[JobForm, Form()]) -> Response:
    """Submit the job of the form, then follow it on its own page; a refused form comes back with why."""
    try:
        job = jobs.submit(principal, form.to_job(translator(request)))
    except BeamhubError as exc:
        return jobs_page(request, principal, jobs, form, exc.status_code, **refusal(request, exc))
    return see_other(f"/jobs/{job.id}")


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, principal: PagePrincipal, jobs: Jobs) -> Response:
    """One job: what it asked for, where it is, its events as they happen, its output and error files."""
    _ = translator(request)
    job = jobs.get(principal, job_id)
    events = jobs.events(principal, job_id)
    return render(request, "jobs/job.html", principal=principal, job=job, events=events, now=utcnow(),
                  reason=plain_reason(job, _), last_event=events[-1].id if events else 0,
                  states=[state.value for state in JobState])


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, principal: PagePrincipal, jobs: Jobs,
           next: Annotated[str, Form()] = "/jobs?done=cancelled") -> Response:  # noqa: A002
    jobs.cancel(principal, job_id)
    return see_other(local_path(next))
