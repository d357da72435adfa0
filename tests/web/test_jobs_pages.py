"""The batch job pages: my jobs listed with their state in plain words, a job submitted through the form runs and its
output opens, an active job is cancelled from the list, a refused form says why; without Slurm the page says that
batch jobs are not set up instead of showing the form."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.jobs import conftest as jobs_fixtures
from tests.jobs.conftest import wait_for_job
from tests.web.conftest import PASSWORD, csrf_of

slurm_cluster = jobs_fixtures.slurm_cluster
slurm_cluster_or_skip = jobs_fixtures.slurm_cluster_or_skip
"""The Slurm test cluster's fixtures, shared with tests/jobs (this module's tests skip where it cannot start)."""

FORM = {"name": "from-the-form", "ncores": "1", "memory": "0.125", "nodes": "1", "minutes": "5", "partition": "debug"}


@pytest.fixture(scope="module")
def hub(slurm_cluster_or_skip: Path, module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Any:
    """A server that submits to the test cluster (the console's `browser` and `new_user` use it)."""
    return module_beamhub_factory(env={**uid_range_env, "BEAMHUB_SLURM_CONF": str(slurm_cluster_or_skip),
                                       "BEAMHUB_JOB_POLL_INTERVAL": "0.5"})


def post(client: httpx.Client, path: str, **fields: Any) -> httpx.Response:
    """A form of the jobs page, posted with the page's CSRF token."""
    return client.post(path, data={**fields, "csrf_token": csrf_of(client.get("/jobs"))})


def submitted(client: httpx.Client, **fields: str) -> str:
    """Submit the form; the new job's id, from the page it leads to."""
    answer = post(client, "/jobs", **(FORM | fields))
    assert answer.status_code == 303, answer.text
    match = re.fullmatch(r"/jobs/(\w+)", answer.headers["location"])
    assert match, answer.headers["location"]
    return match.group(1)


def test_a_job_submitted_through_the_form_runs_is_listed_and_its_output_opens(hub: Any, browser: Any,
                                                                            new_user: Callable[[], str]) -> None:
    client = browser(new_user())
    page = client.get("/jobs")
    assert "You have no batch jobs yet" in page.text and '<option value="debug"' in page.text
    assert 'href="/jobs" aria-current="page"' in page.text
    job_id = submitted(client, command="echo hello-from-the-form")
    assert "from-the-form" in client.get(f"/jobs/{job_id}").text
    done = wait_for_job(hub.admin, job_id, {"completed"})

    listing = client.get("/jobs").text
    row = re.search(rf'<tr data-job="{job_id}" data-state="completed">.*?</tr>', listing, re.S)
    assert row, listing
    assert "finished without errors (exit code 0)" in row.group(0) and done["node"] in row.group(0)
    assert client.get(f"/api/v1/jobs/{job_id}/output").text == "hello-from-the-form\n"
    page = client.get(f"/jobs/{job_id}", headers={"Accept-Language": "zh-CN"}).text
    assert "顺利完成（退出码 0）" in page and "已作为 Slurm 作业" in page  # its events in Chinese too


def test_an_active_job_is_cancelled_from_the_list(hub: Any, browser: Any, new_user: Callable[[], str]) -> None:
    client = browser(new_user())
    job_id = submitted(client, command="sleep 300")
    wait_for_job(hub.admin, job_id, {"pending", "running"})
    assert f'action="/jobs/{job_id}/cancel"' in client.get("/jobs").text
    assert client.post(f"/jobs/{job_id}/cancel", data={}).status_code == 403  # no CSRF token
    cancelled = post(client, f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 303 and cancelled.headers["location"] == "/jobs?done=cancelled"
    assert "The job was cancelled" in client.get(cancelled.headers["location"]).text
    wait_for_job(hub.admin, job_id, {"cancelled"}, timeout=30)
    assert f'action="/jobs/{job_id}/cancel"' not in client.get("/jobs").text


def test_a_refused_form_comes_back_with_why_as_it_was_typed(browser: Any, new_user: Callable[[], str]) -> None:
    client = browser(new_user())
    page = post(client, "/jobs", **FORM, script="echo no interpreter line")
    assert page.status_code == 422 and 'role="alert"' in page.text
    assert "A batch script starts with a line such as #!/bin/bash." in page.text
    assert "echo no interpreter line" in page.text
    both = post(client, "/jobs", **FORM, command="true", script="#!/bin/sh\ntrue")
    assert both.status_code == 422 and "Give either a command or a script, not both." in both.text
    client.cookies.set("beamhub-lang", "zh_CN")
    assert "核数必须是 1 到 1024 之间的整数" in post(client, "/jobs", **FORM | {"ncores": "0.5"}, command="true").text


def test_another_users_job_page_is_not_found(browser: Any, new_user: Callable[[], str]) -> None:
    job_id = submitted(browser(new_user()), command="true")
    other = browser(new_user())
    assert other.get(f"/jobs/{job_id}").status_code == 404
    assert post(other, f"/jobs/{job_id}/cancel").status_code == 404


def test_without_slurm_the_page_says_batch_jobs_are_not_set_up(module_beamhub_factory: Any, tmp_path: Path,
                                                               uid_range_env: dict[str, str]) -> None:
    server = module_beamhub_factory(env={**uid_range_env, "BEAMHUB_SLURM_CONF": str(tmp_path / "no-slurm.conf")})
    username, _ = server.create_user()
    assert server.admin.put(f"/api/v1/users/{username}/password", json={"password": PASSWORD}).status_code == 204
    with httpx.Client(base_url=server.url, headers={"Accept": "text/html"}, timeout=30) as client:
        form = client.get("/login")
        client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(form)})
        page = client.get("/jobs")
        assert page.status_code == 200 and "Batch jobs are not set up on this beamhub" in page.text
        assert 'action="/jobs"' not in page.text and "You have no batch jobs yet" in page.text
        refused = post(client, "/jobs", **FORM, command="true")
        assert refused.status_code == 404 and "Batch jobs are not set up" in refused.text
        client.cookies.set("beamhub-lang", "zh_CN")
        assert "此 beamhub 尚未设置批处理作业" in client.get("/jobs").text
