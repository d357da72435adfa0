"""With backend = "slurm", the launch form offers the cluster's partitions (from sinfo), and a session started from
it waits or runs in the one chosen."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.jobs import conftest as jobs_fixtures
from tests.web.conftest import csrf_of

slurm_cluster = jobs_fixtures.slurm_cluster
slurm_cluster_or_skip = jobs_fixtures.slurm_cluster_or_skip


@pytest.fixture(scope="module")
def hub(slurm_cluster_or_skip: Path, module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Any:
    """A server whose sessions are Slurm jobs on the test cluster (the console's `browser` and `new_user` use it)."""
    return module_beamhub_factory(env={**uid_range_env, "BEAMHUB_BACKEND": "slurm",
                                       "BEAMHUB_SLURM_CONF": str(slurm_cluster_or_skip),
                                       "BEAMHUB_SLURM_JOB_PREFIX": f"beamhub-test-{secrets.token_hex(3)}-"})


def test_the_launch_form_offers_the_partitions_and_starts_the_session_in_the_chosen_one(
        hub: Any, browser: Any, new_user: Callable[[], str]) -> None:
    client = browser(new_user())
    page = client.get("/sessions/new?kind=command")
    assert re.search(r'<select name="partition" data-partition>\s*<option value="debug">debug</option>\s*'
                     r'<option value="hold">hold</option>', page.text), page.text
    answer = client.post("/sessions", data={"kind": "command", "command": "sleep", "args": "300", "ncores": "1",
                                            "memory": "0.25", "gpus": "0", "hours": "1", "partition": "hold",
                                            "csrf_token": csrf_of(page)})
    assert answer.status_code == 303, answer.text
    session_id = answer.headers["location"].rsplit("/", 1)[1]
    session = hub.admin.get(f"/api/v1/sessions/{session_id}").json()
    assert session["partition"] == "hold" and session["state"] in ("pending", "starting")
    hub.admin.delete(f"/api/v1/sessions/{session_id}")

