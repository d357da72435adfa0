"""`beamhub serve` with two worker processes on one address: whichever process answers, a revoked credential is
refused at once, new users get distinct UIDs, single sign-on and failed logins are shared (test_replicas.py), and
/metrics adds up every process's counters."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

METRICS_TOKEN = "scrape-all-workers"
REQUESTS = 40
"""Requests each on a new connection: the kernel hands new connections to either process."""


@pytest.fixture
def hub(beamhub_factory, uid_range_env):  # type: ignore[no-untyped-def]
    return beamhub_factory(env={**uid_range_env, "BEAMHUB_WORKERS": "2", "BEAMHUB_MANAGE_SYSTEM_ACCOUNTS": "false",
                                "BEAMHUB_METRICS_TOKEN": METRICS_TOKEN})


def workers_of(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def statuses(url: str, path: str, token: str) -> list[int]:
    """The status of REQUESTS requests, each on its own connection, several at once."""
    def one(_: int) -> int:
        return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(REQUESTS)))


def test_two_processes_answer(hub: Any) -> None:
    assert hub.process is not None
    assert len(workers_of(hub.process.pid)) >= 2, hub.log()


def test_a_revoked_token_is_refused_at_once_by_every_process(hub: Any) -> None:
    username, token = hub.create_user()
    assert set(statuses(hub.url, "/api/v1/me", token)) == {200}  # now kept for seconds by both processes
    token_id = hub.admin.get(f"/api/v1/users/{username}/tokens").json()[0]["id"]
    hub.admin.delete(f"/api/v1/users/{username}/tokens/{token_id}").raise_for_status()
    assert set(statuses(hub.url, "/api/v1/me", token)) == {401}


def test_users_created_at_once_through_both_processes_get_distinct_uids(hub: Any) -> None:
    def create(i: int) -> httpx.Response:
        with httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {hub.admin_token}"}) as client:
            return client.post("/api/v1/users", json={"username": f"w{i}{id(hub) % 10_000}"}, timeout=60)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(create, range(20)))
    assert [a.status_code for a in answers] == [201] * 20, [a.text for a in answers if a.status_code != 201]
    assert len({a.json()["uid"] for a in answers}) == 20


def test_metrics_add_up_every_process(hub: Any) -> None:
    refused = statuses(hub.url, "/api/v1/me", "not-a-token")
    assert set(refused) == {401}
    for _ in range(6):  # whichever process answers the scrape
        page = httpx.get(f"{hub.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        counted = sum(float(value) for value in
                      re.findall(r'^beamhub_authentication_failures_total\{[^}]*\} (\S+)$', page, re.MULTILINE))
        assert counted == REQUESTS, page
