"""Batch jobs in the browser, against the real Slurm test cluster: a job submitted through the form is followed live on
its page as it waits, runs and completes, is listed, and its output downloads. Skipped, saying why, where the cluster
cannot start."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.conftest import PASSWORD, World
from tests.jobs import conftest as jobs_fixtures

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

slurm_cluster = jobs_fixtures.slurm_cluster
slurm_cluster_or_skip = jobs_fixtures.slurm_cluster_or_skip
"""The Slurm test cluster's fixtures, shared with tests/jobs."""
SLURM_SECONDS = 60_000
"""How long (ms) the page may take to show a state Slurm reaches."""


@pytest.fixture(scope="module")
def world(slurm_cluster_or_skip: Path, module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[World]:
    """A server that submits to the test cluster, with alice (local PASSWORD); no proposals."""
    server = module_beamhub_factory(env={**uid_range_env, "BEAMHUB_SLURM_CONF": str(slurm_cluster_or_skip),
                                         "BEAMHUB_JOB_POLL_INTERVAL": "0.5"})
    alice, _ = server.create_user(username=f"alice{secrets.token_hex(2)}")
    assert server.admin.put(f"/api/v1/users/{alice}/password", json={"password": PASSWORD}).status_code == 204
    yield World(server, {"alice": alice}, {}, {})


def test_a_job_submitted_in_the_browser_runs_completes_and_its_output_downloads(open_page: Callable[..., Page],
                                                                           shoot: Callable[[Page, str], None]) -> None:
    page = open_page("alice")
    page.click("nav.main a[href='/jobs']")
    expect(page.locator("h1")).to_have_text("Batch jobs")
    form = page.locator("form[action='/jobs']")
    form.locator("input[name=name]").fill("hello-cluster")
    form.locator("input[name=command]").fill("sleep 4; echo hello from $SLURMD_NODENAME")
    form.locator("input[name=memory]").fill("0.125")
    form.locator("button.primary").click()
    page.wait_for_url("**/jobs/*")

    job = page.locator("[data-job-page]")
    expect(job).to_have_attribute("data-live", "on")
    expect(page.locator("[data-state-label]")).to_have_text("running", timeout=SLURM_SECONDS)
    expect(page.locator("[data-reason]")).to_contain_text("running on node")
    expect(page.locator("[data-state-label]")).to_have_text("completed", timeout=SLURM_SECONDS)
    expect(page.locator("[data-events]")).to_contain_text("completed")
    expect(page.locator("[data-reason]")).to_have_text("finished without errors (exit code 0)")
    shoot(page, "job")

    page.click("nav.main a[href='/jobs']")
    row = page.locator("tr[data-job]", has_text="hello-cluster")
    expect(row).to_contain_text("completed")
    shoot(page, "jobs")
    with page.expect_download() as download:
        row.locator("a[href$='/output']").click()
    assert Path(download.value.path()).read_text().startswith("hello from node")
