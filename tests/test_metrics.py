"""/metrics: refused without the metrics token, and scraped by Debian's real Prometheus, which then answers queries
for the running sessions and the spawn histogram."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.http import free_port

PROMETHEUS = Path("/usr/bin/prometheus")
METRICS_TOKEN = "scrape-me-please"
SLEEP = {"kind": "command", "command": "sleep", "args": ["600"], "ncores": 0.1, "memory": "64Mi"}


@pytest.fixture
def hub(beamhub_factory: Any) -> Any:
    return beamhub_factory(env={"BEAMHUB_METRICS_TOKEN": METRICS_TOKEN})


@pytest.fixture
def prometheus(hub: Any, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping the hub every second with the metrics token; its URL."""
    if not PROMETHEUS.exists():
        pytest.skip(f"no Prometheus at {PROMETHEUS}: run scripts/install.sh (Debian package prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        scrape_configs:
          - job_name: beamhub
            authorization: {{type: Bearer, credentials: {METRICS_TOKEN}}}
            static_configs: [{{targets: ["127.0.0.1:{hub.port}"]}}]
    """))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
        shutil.rmtree(tmp_path / "tsdb", ignore_errors=True)


def query(prometheus: str, expression: str) -> float | None:
    """The value of an instant query's first series, or None while Prometheus has none (or is not up yet)."""
    try:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    result = answer.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def wait_for_value(prometheus: str, expression: str, wanted: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (value := query(prometheus, expression)) != wanted:
        assert time.monotonic() < deadline, f"{expression} stayed {value}, not {wanted}"
        time.sleep(0.5)


def test_metrics_need_the_token(hub: Any) -> None:
    assert httpx.get(f"{hub.url}/metrics").status_code == 403
    assert hub.admin.get("/metrics").status_code == 403  # an administrator's token is not the metrics token
    answer = httpx.get(f"{hub.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200
    assert "beamhub_spawn_duration_seconds" in answer.text and "beamhub_proxy_requests_total" in answer.text


def test_prometheus_scrapes_sessions_and_spawn_times(hub: Any, prometheus: str) -> None:
    _, token = hub.create_user()
    with hub.client(token) as client:
        created = client.post("/api/v1/sessions", json=SLEEP)
    assert created.status_code == 201, created.text
    hub.wait_for_state(created.json()["id"], {"running"})
    wait_for_value(prometheus, 'up{job="beamhub"}', 1)
    wait_for_value(prometheus, 'sum(beamhub_sessions{state="running",kind="command",backend="local"})', 1)
    wait_for_value(prometheus, 'sum(beamhub_spawn_duration_seconds_count{kind="command"})', 1)
    hub.admin.delete(f"/api/v1/sessions/{created.json()['id']}")
    wait_for_value(prometheus, 'sum(beamhub_sessions{state="running"}) or vector(0)', 0)
