"""The FastAPI app factory: assembles the domains and runs the reconciler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.routing import Host
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketClose

from beamhub import __version__
from beamhub.compute.backend import BackendError
from beamhub.config import Settings
from beamhub.data.browsing.routes import router as browsing_router
from beamhub.data.h5.routes import router as h5_router
from beamhub.data.proposals.routes import router as data_router
from beamhub.data.proposals.service import DataService
from beamhub.data.registration.routes import router as registration_router
from beamhub.data.tiers.prefetch import prefetch_beamtimes_forever
from beamhub.data.tiers.routes import router as tiers_router
from beamhub.deps import CREDENTIAL_SECONDS, Credentials
from beamhub.errors import BeamhubError
from beamhub.heps.routes import router as heps_router
from beamhub.identity.accounts.routes import router as users_router
from beamhub.identity.audit.routes import router as audit_router
from beamhub.identity.keys.routes import router as keys_router
from beamhub.identity.login.routes import router as login_api_router
from beamhub.identity.windows.routes import router as windows_router
from beamhub.jobs.broadcast import JobEventBroadcaster
from beamhub.jobs.poller import follow_jobs_forever
from beamhub.jobs.routes import router as jobs_router
from beamhub.leader import EMBARGO_LOCK, lead_forever
from beamhub.metrics import SESSIONS
from beamhub.metrics import router as metrics_router
from beamhub.services import build_services
from beamhub.sessions.broadcast import EventBroadcaster
from beamhub.sessions.entry import session_host_pattern
from beamhub.sessions.origin_routes import ADMISSION_SECONDS, Admissions, session_router
from beamhub.sessions.origin_routes import console_router as session_console_router
from beamhub.sessions.reconciler import Reconciler
from beamhub.sessions.routes import router as sessions_router
from beamhub.sessions.upstream import Upstreams
from beamhub.streams.egress import Egress
from beamhub.streams.ingress import Ingress
from beamhub.streams.relay import Relay
from beamhub.streams.routes import router as streams_router
from beamhub.web.console import install as install_console
from beamhub.web.login_pages import router as login_router

log = logging.getLogger(__name__)


def _error_response(status: int, detail: object, code: str) -> JSONResponse:
    """A refusal: `detail` for people (English; the console translates), `code` for programs."""
    return JSONResponse({"detail": detail, "code": code}, status_code=status)


EMBARGO_CHECK_INTERVAL = 60.0


def release_embargoes(data: DataService) -> None:
    """Open each proposal's data to all users once its embargo ends."""
    released = data.release_embargoes()
    if released:
        log.info("embargo ended, data now readable by all users: %s", ", ".join(released))


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal as a status with a JSON `detail`, never a traceback."""

    @app.exception_handler(BeamhubError)
    async def beamhub_error(_: Request, exc: BeamhubError) -> JSONResponse:
        return _error_response(exc.status_code, str(exc), exc.code)

    @app.exception_handler(BackendError)
    async def backend_error(_: Request, exc: BackendError) -> JSONResponse:
        return _error_response(503, str(exc), "backend_failed")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return _error_response(422, errors, "invalid")


def create_app(settings: Settings, run_reconciler: bool = True) -> FastAPI:
    services = build_services(settings)
    reconciler = Reconciler(services.sessions)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.upstreams = Upstreams()
        tasks = [asyncio.create_task(app.state.events.run_forever()),
                 asyncio.create_task(app.state.job_events.run_forever())]
        if ingress is not None:
            ingress.bind()  # an endpoint that is taken stops the start, with its reason
            tasks.append(asyncio.create_task(ingress.run_forever()))
        if app.state.egress is not None:
            app.state.egress.bind()
            tasks.append(asyncio.create_task(app.state.egress.run_forever()))
        if run_reconciler:
            tasks += [asyncio.create_task(reconciler.run_forever()),
                      asyncio.create_task(lead_forever(services.db, EMBARGO_LOCK, EMBARGO_CHECK_INTERVAL,
                                                       partial(release_embargoes, services.data), "embargo release")),
                      asyncio.create_task(prefetch_beamtimes_forever(services.data)),
                      asyncio.create_task(follow_jobs_forever(services.jobs))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for ended in await asyncio.gather(*tasks, return_exceptions=True):
                if not isinstance(ended, asyncio.CancelledError | None):
                    log.error("a background task had failed: %r", ended)
            reconciler.close()
            await app.state.upstreams.aclose()
            services.db.dispose()

    app = FastAPI(title="beamhub", version=__version__, lifespan=lifespan,
                  description="Sessions, data and one identity for a synchrotron light source.")
    app.state.services = services
    app.state.reconciler = reconciler
    app.state.admissions = Admissions(ADMISSION_SECONDS, epoch=services.identity.epoch)
    app.state.credentials = Credentials(CREDENTIAL_SECONDS, epoch=services.identity.epoch)
    services.sessions.on_leaving_running.append(services.identity.epoch.move)
    app.state.events = EventBroadcaster(services.db)
    app.state.job_events = JobEventBroadcaster(services.db)
    app.state.relay = Relay(settings.stream_queue_frames, settings.stream_policy)
    ingress = (Ingress(settings.stream_bind, app.state.relay, services.streams, settings.stream_max_frame_bytes)
               if settings.stream_bind else None)
    app.state.egress = (Egress(settings.stream_subscribe_bind, app.state.relay, services.streams)
                        if settings.stream_subscribe_bind else None)
    SESSIONS.db = services.db

    add_error_handlers(app)

    @app.get("/api/v1/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # Routes are matched one after the other: the HDF5 routes (many small requests of a viewer) first, then the
    # jobs' (batch submissions, 60 us of matching less than in 15th place); no other route's path is one of theirs.
    for router in (h5_router, jobs_router, login_router, login_api_router, users_router, audit_router, keys_router,
                   windows_router, sessions_router, heps_router, session_console_router, data_router,
                   browsing_router, registration_router, tiers_router, metrics_router, streams_router):
        app.include_router(router)
    install_console(app, settings)
    # First of all routes: a session's host name serves that session and nothing of the console; a host name with
    # a trailing dot (another origin to a browser, the same host to DNS) is served nothing.
    app.router.routes.insert(0, Host(session_host_pattern(settings), app=session_router))
    app.router.routes.insert(0, Host("{name}.", app=refuse_trailing_dot))
    return app


async def refuse_trailing_dot(scope: Scope, receive: Receive, send: Send) -> None:
    """A host name that ends with a dot is refused: beamhub's origins are named without it."""
    if scope["type"] == "websocket":
        await WebSocketClose(code=1008, reason="host names end without a dot")(scope, receive, send)
    else:
        await _error_response(400, "host names end without a dot", "invalid_host")(scope, receive, send)
