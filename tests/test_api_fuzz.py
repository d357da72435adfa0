"""Property-based fuzzing of the whole HTTP API from its own OpenAPI document (schemathesis), on a real server:
whatever an administrator, an ordinary user or an anonymous caller sends, the answer is never a 5xx."""

from __future__ import annotations

import grp
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

EXAMPLES = 25
"""Cases per operation, per generation mode (valid and invalid input), per caller: ~20 s per caller and database."""
EXCLUDED = {("GET", "/api/v1/sessions/events")}
"""An endless server-sent event stream (tests/test_sse.py covers it): a request would never end."""
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
"""Reproducible (derandomized), and every 5xx is collected rather than shrunk, so one run lists them all."""


@pytest.fixture(scope="module")
def server(module_beamhub_factory: Any, module_database_url: str, uid_range_env: dict[str, str]) -> Iterator[Any]:
    """A server (on SQLite, then on PostgreSQL) whose sessions, data and homes stay in temporary folders; the
    accounts and groups the fuzz made (and only those: new since the start, and known to this server) are removed
    at the end."""
    storage = Path(tempfile.mkdtemp(prefix="beamhub-fuzz-data-"))
    homes = Path(tempfile.mkdtemp(prefix="beamhub-fuzz-home-"))
    storage.chmod(0o755)
    homes.chmod(0o755)
    users_before = {entry.pw_name for entry in pwd.getpwall()}
    groups_before = {entry.gr_name for entry in grp.getgrall()}
    try:
        server = module_beamhub_factory({"BEAMHUB_STORAGE_ROOT": str(storage), "BEAMHUB_HOME_ROOT": str(homes),
                                         "BEAMHUB_NODE_CPUS": "2", "BEAMHUB_NODE_MEMORY": "4Gi",
                                         "BEAMHUB_DATABASE_URL": module_database_url, **uid_range_env})
        yield server
        users = {user["username"] for user in server.admin.get("/api/v1/users", params={"limit": 1000}).json()}
        groups = {group["name"] for group in server.admin.get("/api/v1/groups").json()}
        server.accounts.extend(sorted(users - users_before))
        server.shut_down()
        for name in sorted(groups - groups_before - users):
            subprocess.run(["groupdel", name], capture_output=True)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(homes, ignore_errors=True)


def token_of(server: Any, caller: str) -> str | None:
    if caller == "admin":
        return server.admin_token
    if caller == "user":
        return server.create_user()[1]
    return None


@pytest.mark.timeout(600)
@pytest.mark.parametrize("caller", ["admin", "user", "anonymous"])
def test_no_server_errors(server: Any, caller: str) -> None:
    """Every operation, with valid and invalid input, as this caller: no answer is a 5xx."""
    token = token_of(server, caller)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    errors: list[str] = []
    started = time.monotonic()
    with requests.Session() as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            if (operation.method.upper(), operation.path) in EXCLUDED:
                continue
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

                @FUZZ_SETTINGS
                @given(case=operation.as_strategy(generation_mode=mode))
                def call(case: schemathesis.Case) -> None:
                    response = case.call(base_url=server.url, session=http, headers=headers, timeout=30)
                    try:
                        case.validate_response(response, checks=[not_a_server_error], headers=headers)
                    except FailureGroup as failure:
                        errors.append(f"{case.operation.label}: {failure}")

                try:
                    call()
                except Unsatisfiable:
                    pass  # no invalid input exists for an operation without parameters
    print(f"fuzzed as {caller} in {time.monotonic() - started:.0f} s")
    assert not errors, "\n".join(errors) + "\n" + server.log()
