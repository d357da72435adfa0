"""Prefetch on request: a member asks from the proposal's data page or the API (with progress events) and the data
is then on the fast tier; a stranger is refused; a proposal larger than the fast tier's budget is a 409 that says so."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.data import write

BUDGET = 4 * 2**20


@pytest.fixture(scope="module")
def hub(module_beamhub_factory: Any, uid_range_env: dict[str, str], storage: Path) -> Any:
    return module_beamhub_factory(env={**uid_range_env, "BEAMHUB_STORAGE_ROOT": str(storage),
                                       "BEAMHUB_TIER_BUDGET": json.dumps({"hot": BUDGET})})


def warm_proposal(hub: Any, member: str, files: dict[str, bytes]) -> str:
    """A registered proposal on tier warm, `member` its PI."""
    now = datetime.now(UTC)
    created = hub.admin.post("/api/v1/proposals", json={
        "id": f"2025-{secrets.randbelow(10**5):05d}", "title": "Tomography", "beamline": "b9", "tier": "warm",
        "beamtime_start": (now - timedelta(days=9)).isoformat(), "beamtime_end": (now - timedelta(days=8)).isoformat(),
        "members": [{"username": member, "role": "pi"}]})
    assert created.status_code == 201, created.text
    for relpath, data in files.items():
        write(Path(created.json()["path"]), relpath, data)
    assert hub.admin.post(f"/api/v1/proposals/{created.json()['id']}/register", json={}).status_code == 200
    return str(created.json()["id"])


def csrf_of(page: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def events_of(response: httpx.Response) -> list[tuple[str, Any]]:
    blocks = [dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
              for block in response.text.strip().split("\n\n")]
    return [(block["event"], json.loads(block["data"])) for block in blocks]


def test_a_member_prefetches_from_the_data_page(hub: Any, browser: Any, new_user: Callable[[], str]) -> None:
    member = new_user()
    proposal = warm_proposal(hub, member, {"scan/a.bin": b"x" * 300_000, "scan/b.bin": b"y" * 1000})
    client = browser(member)
    page = client.get(f"/data/{proposal}")
    assert 'data-tier="warm"' in page.text and "data-prefetch" in page.text
    assert f"current/b9/{proposal}</code>" in page.text
    answer = client.post(f"/data/{proposal}/prefetch", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303 and answer.headers["location"] == f"/data/{proposal}?prefetch=started"
    deadline = time.monotonic() + 60
    while hub.admin.get(f"/api/v1/proposals/{proposal}").json()["tier"] != "hot":
        assert time.monotonic() < deadline, "the prefetch did not finish within a minute"
        time.sleep(0.2)
    page = client.get(f"/data/{proposal}")
    assert 'data-tier="hot"' in page.text and "data-prefetch" not in page.text
    assert browser(new_user()).post(f"/data/{proposal}/prefetch", data={"csrf_token": csrf_of(page)}).status_code \
        in (403, 404)


def test_the_api_prefetches_with_progress_events_and_refuses_strangers_and_what_cannot_fit(hub: Any) -> None:
    member, token = hub.create_user()
    _, stranger = hub.create_user()
    proposal = warm_proposal(hub, member, {"scan/a.bin": b"z" * 2_000_000, "scan/b.bin": b"w" * 5000})
    url = f"/api/v1/proposals/{proposal}/prefetch"
    assert hub.client(stranger).post(url).status_code == 404
    answer = hub.client(token).post(url, headers={"Accept": "text/event-stream"})
    events = events_of(answer)
    assert events[-1][0] == "result", events
    result = events[-1][1]
    assert result["from_tier"] == "warm" and result["tier"] == "hot" and result["bytes_copied"] == 2_005_000
    assert "copy" in {data["phase"] for name, data in events if name == "progress"}
    body = hub.client(token).get(f"/api/v1/proposals/{proposal}").json()
    assert body["tier"] == "hot" and Path(body["current_path"]).resolve() == Path(body["path"])
    assert hub.client(token).post(url).json()["already_there"] is True
    too_big = warm_proposal(hub, member, {"big.bin": b"b" * (BUDGET + 1)})
    refused = hub.client(token).post(f"/api/v1/proposals/{too_big}/prefetch")
    assert refused.status_code == 409 and "more than the hot tier's budget" in refused.json()["detail"]
