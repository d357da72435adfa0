"""/metrics in Prometheus' text format: sessions, spawns, the proxy, authentication, data and the reconciler.

Counters and histograms live in this process; with several worker processes (`workers`) each writes them to a file
of PROMETHEUS_MULTIPROC_DIR (set by `beamhub serve`) and a scrape of any worker adds up all of them. Each replica
is its own scrape target. The sessions gauge is read from the database at each scrape, so every replica reports the
same truth.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.responses import Response

from beamhub.db import Database
from beamhub.errors import Forbidden, NotFound
from beamhub.sessions.models import ACTIVE_STATES, SessionRecord

REGISTRY = CollectorRegistry()

SPAWN_SECONDS = Histogram("beamhub_spawn_duration_seconds", "From a session's request until its program answers",
                          ["kind", "backend"], registry=REGISTRY,
                          buckets=(0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300))
PROXY_REQUESTS = Counter("beamhub_proxy_requests_total", "Requests forwarded to sessions, by status class",
                         ["status"], registry=REGISTRY)
PROXY_BYTES = Counter("beamhub_proxy_response_bytes_total", "Bytes of sessions' answers sent to clients",
                      registry=REGISTRY)
PROXY_UPSTREAM_SECONDS = Histogram("beamhub_proxy_upstream_latency_seconds",
                                   "Until a session's program answers with its headers", registry=REGISTRY,
                                   buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
AUTH_FAILURES = Counter("beamhub_authentication_failures_total", "Refused credentials, by reason", ["reason"],
                        registry=REGISTRY)
DATA_BYTES = Counter("beamhub_data_bytes_served_total", "Bytes of proposal files sent (or handed to nginx)",
                     registry=REGISTRY)
FILES_REGISTERED = Counter("beamhub_files_registered_total", "Files catalogued by registrations", registry=REGISTRY)
STREAM_FRAMES_RELAYED = Counter("beamhub_stream_frames_relayed_total", "Live frames queued for subscribers (one per "
                                "subscriber)", registry=REGISTRY)
STREAM_FRAMES_DROPPED = Counter("beamhub_stream_frames_dropped_total", "Live frames dropped for slow subscribers "
                                "(each reported to its subscriber as a gap)", registry=REGISTRY)
STREAM_FRAMES_REFUSED = Counter("beamhub_stream_frames_refused_total", "Messages of the DAQ the relay refused, by "
                                "reason", ["reason"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("beamhub_reconciler_loop_duration_seconds", "One round of the reconciler",
                              registry=REGISTRY, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class SessionsCollector(Collector):
    """beamhub_sessions{state, kind, backend}: the active sessions, counted by the database at each scrape."""

    db: Database | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("beamhub_sessions", "Active sessions by state, kind and backend",
                                  labels=["state", "kind", "backend"])
        query = (select(SessionRecord.state, SessionRecord.kind, SessionRecord.backend, func.count())
                 .where(SessionRecord.state.in_(ACTIVE_STATES))
                 .group_by(SessionRecord.state, SessionRecord.kind, SessionRecord.backend))
        if self.db is not None:
            with self.db.session() as db:
                for state, kind, backend, count in db.execute(query):
                    gauge.add_metric([state.value, kind, backend], count)
        yield gauge


SESSIONS = SessionsCollector()
REGISTRY.register(SESSIONS)


router = APIRouter(include_in_schema=False)


def _allowed(request: Request) -> None:
    """The metrics token (Authorization: Bearer), or an address of metrics_allow; nobody when neither is set."""
    settings = request.app.state.services.settings
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if token is None and not settings.metrics_allow:
        raise NotFound("metrics are not enabled: set metrics_token or metrics_allow")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if token is not None and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return
    address = ipaddress.ip_address(request.client.host) if request.client else None
    if address is None or not any(address in ipaddress.ip_network(net) for net in settings.metrics_allow):
        raise Forbidden("metrics need the metrics token or an allowed address")


MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """The metrics in Prometheus' text format: this process's, or every worker's added up."""
    if MULTIPROCESS_DIR not in os.environ:
        return generate_latest(REGISTRY)
    every_worker = CollectorRegistry()
    MultiProcessCollector(every_worker)
    every_worker.register(SESSIONS)
    return generate_latest(every_worker)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    _allowed(request)
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
