"""FastAPI dependencies shared by every domain's routes: services and the caller."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any, TypeVar
from weakref import WeakKeyDictionary

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from beamhub.cache import TtlCache
from beamhub.data.browsing.service import DataBrowser
from beamhub.data.proposals.service import DataService
from beamhub.data.registration.service import RegistrationService
from beamhub.db import utcnow
from beamhub.errors import BeamhubError, Forbidden, Unauthenticated
from beamhub.identity.accounts.groups import GroupService
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.audit.service import AuditService
from beamhub.identity.keys.service import SshKeyService
from beamhub.identity.login.service import LoginService, same_secret
from beamhub.identity.principal import Principal
from beamhub.identity.windows.service import WindowsIdentity
from beamhub.jobs.service import JobService
from beamhub.metrics import AUTH_FAILURES
from beamhub.services import Services
from beamhub.sessions.service import SessionService
from beamhub.sessions.workstations import WorkstationService

SESSION_COOKIE = "beamhub-session"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def get_services(connection: HTTPConnection) -> Services:
    return connection.app.state.services


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else ""


def bearer_token(connection: HTTPConnection) -> str | None:
    """The caller's token from `Authorization: Bearer`. Never from a cookie: beamhub sets no token cookie, so one
    could only have been put into the browser by another site (a session page of a sibling host)."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def has_bearer(connection: HTTPConnection) -> bool:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(value.strip())


def secure_cookies(connection: HTTPConnection) -> bool:
    """Secure cookies as configured, else when the request came over https (or wss)."""
    configured = get_services(connection).settings.cookie_secure
    return configured if configured is not None else connection.url.scheme in ("https", "wss")


def cookie_name(connection: HTTPConnection, name: str) -> str:
    """The name one of beamhub's cookies has on a connection: over https with the `__Host-` prefix, so a browser
    takes it only from this very host, over https, for every path, and no other host of the site (a session's)
    can set or overwrite it."""
    return f"__Host-{name}" if secure_cookies(connection) else name


def read_cookie(connection: HTTPConnection, name: str) -> str | None:
    return connection.cookies.get(cookie_name(connection, name))


def set_cookie(connection: HTTPConnection, response: Response, name: str, value: str, max_age: int) -> None:
    """One of beamhub's cookies: host-only, path /, HttpOnly, SameSite=Lax, Secure as secure_cookies says."""
    response.set_cookie(cookie_name(connection, name), value, max_age=max_age, path="/", httponly=True,
                        samesite="lax", secure=secure_cookies(connection))


def clear_cookie(connection: HTTPConnection, response: Response, name: str) -> None:
    response.delete_cookie(cookie_name(connection, name), path="/", httponly=True, samesite="lax",
                           secure=secure_cookies(connection))


def refuse_tossed_cookie(connection: HTTPConnection, name: str) -> None:
    """Two cookies of one of beamhub's names mean that another host (a sibling domain) set one of them: which one
    is ours cannot be told, so neither counts."""
    names = [part.partition("=")[0].strip() for part in connection.headers.get("cookie", "").split(";")]
    if names.count(cookie_name(connection, name)) > 1:
        raise Unauthenticated("two %(name)s cookies were sent, one of them set by another site; sign in again",
                              name=name)


def authenticate(connection: HTTPConnection, csrf: str | None = None, check_csrf: bool = False) -> Principal:
    """The caller: bearer header, else login session cookie (CSRF-checked if asked), else token cookie."""
    services = get_services(connection)
    address = client_address(connection)
    if not has_bearer(connection):
        refuse_tossed_cookie(connection, SESSION_COOKIE)
    session = read_cookie(connection, SESSION_COOKIE)
    if session and not has_bearer(connection):
        principal, expected = services.login.resolve_cookie(session)
        _check_csrf(connection, expected, csrf, check_csrf)
        return principal.with_address(address)
    return services.identity.authenticate(bearer_token(connection), address).with_address(address)


def _check_csrf(connection: HTTPConnection, expected: str, given: str | None, check: bool) -> None:
    if check and not same_secret(given, expected):
        raise Forbidden("CSRF token missing or wrong")
    connection.state.login_csrf = expected


CREDENTIAL_SECONDS = 2.0
"""How long a request's credential, once accepted, is taken without asking the database again: revocation, logout
and disabling still end access within it (long streams and websockets ask afresh)."""
Credentials = TtlCache[str, tuple[Principal, str | None]]


def _credential_key(connection: HTTPConnection) -> str | None:
    """A digest of the credential a request carries (never the credential itself), or None without one."""
    if has_bearer(connection):
        kind, value = "bearer", bearer_token(connection)
    else:
        kind, value = "login", read_cookie(connection, SESSION_COOKIE)
    return credential_digest(kind, value) if value else None


def credential_digest(kind: str, value: str) -> str:
    """How a credential is named in the caches of this process: its kind and SHA-256, never the secret."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()}"


async def _accepted(connection: HTTPConnection, csrf: str | None, check_csrf: bool) -> Principal:
    """authenticate(), or the answer of the last seconds for the same credential, without a thread hop then."""
    credentials: Credentials = connection.app.state.credentials
    key = _credential_key(connection)
    kept = credentials.get(key) if key is not None else None
    if kept is None:
        before = credentials.version()
        # AnyIO's pool, not read_in_thread's one SQLite thread: a check may write (a refusal's audit entry, the
        # token's last use), and a write may wait on another process's transaction.
        principal = await run_in_threadpool(authenticate, connection, csrf, check_csrf)
        if key is not None:
            left = (principal.expires_at - utcnow()).total_seconds() if principal.expires_at else None
            credentials.put(key, (principal, getattr(connection.state, "login_csrf", None)), left, read_at=before)
        return principal
    if not has_bearer(connection):
        refuse_tossed_cookie(connection, SESSION_COOKIE)
    principal, expected = kept
    if expected is not None:
        _check_csrf(connection, expected, csrf, check_csrf)
    return principal.with_address(client_address(connection))


async def current_principal(connection: HTTPConnection) -> Principal:
    """The caller; a cookie session must echo its CSRF token (header or form field) on state-changing methods."""
    unsafe = connection.scope["type"] == "http" and connection.scope["method"] in UNSAFE_METHODS
    csrf = connection.headers.get(CSRF_HEADER)
    form_post = connection.headers.get("content-type", "").startswith(FORM_TYPES)
    if unsafe and csrf is None and form_post and isinstance(connection, Request):
        csrf = str((await connection.form()).get("csrf_token") or "") or None
    try:
        return await _accepted(connection, csrf, unsafe)
    except BeamhubError as exc:
        AUTH_FAILURES.labels(reason=exc.code if _credential_key(connection) else "no_credential").inc()
        raise


async def principal_if_valid(connection: HTTPConnection) -> Principal | None:
    """The caller if their credential still stands, asked afresh: for long streams that ask again, so logout,
    revocation and disabling end them, and for pages that only show who is signed in."""
    try:
        return await run_in_threadpool(authenticate, connection)
    except BeamhubError:
        return None


CREDENTIAL_RECHECK_SECONDS = 5.0
"""How often an open event stream asks again whether its caller's credential still stands."""


async def credential_stands(request: Request) -> bool:
    """True, but at most every CREDENTIAL_RECHECK_SECONDS asks again whether a stream's credential still stands."""
    now = asyncio.get_running_loop().time()
    if not hasattr(request.state, "credential_checked"):
        request.state.credential_checked = now  # the request itself was just authenticated
    if now - request.state.credential_checked < CREDENTIAL_RECHECK_SECONDS:
        return True
    request.state.credential_checked = now
    return await principal_if_valid(request) is not None


T = TypeVar("T")
READ_THREADS = {"sqlite": 1, "postgresql": 4}
"""Threads that run the short database reads of the busiest routes at once (one user, the users page, your
sessions), by database. An SQLite read is the CPU's work and lets go of the GIL at every row: two threads
reading hand it to and fro with the event loop at each step, and a 100-user page served 650-720 req/s at 200
clients with one thread, 410-630 with two, 290-320 with four (on two cores); a PostgreSQL read waits on the
network, where a few threads overlap their waits."""
_read_limiters: WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = WeakKeyDictionary()


def _read_limiter(connection: HTTPConnection) -> CapacityLimiter:
    """The running loop's limiter of reads, sized for the app's database."""
    loop = asyncio.get_running_loop()
    limiter = _read_limiters.get(loop)
    if limiter is None:
        threads = READ_THREADS.get(get_services(connection).db.engine.dialect.name, 4)
        limiter = _read_limiters.setdefault(loop, CapacityLimiter(threads))
    return limiter


async def read_in_thread(connection: HTTPConnection, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs), a short database read, in a thread: at most READ_THREADS of them at once."""
    limiter = _read_limiter(connection)
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=limiter)


# The dependencies below are `async def` although they never wait: FastAPI runs a plain `def` dependency in the
# thread pool, a thread hop (and a wait for a free worker under load) per dependency and request.
async def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    principal.require_admin()
    return principal


def scoped(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, if their credential carries `scope`."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        principal.require_scope(scope)
        return principal

    return check


async def identity_service(request: Request) -> IdentityService:
    return get_services(request).identity


async def group_service(request: Request) -> GroupService:
    return get_services(request).groups


async def key_service(request: Request) -> SshKeyService:
    return get_services(request).keys


async def windows_service(request: Request) -> WindowsIdentity:
    return get_services(request).windows


async def audit_service(request: Request) -> AuditService:
    return get_services(request).audit


async def session_service(request: Request) -> SessionService:
    return get_services(request).sessions


async def login_service(request: Request) -> LoginService:
    return get_services(request).login


async def workstation_service(request: Request) -> WorkstationService:
    return get_services(request).workstations


async def data_service(request: Request) -> DataService:
    return get_services(request).data


async def registration_service(request: Request) -> RegistrationService:
    return get_services(request).registration


async def browse_service(request: Request) -> DataBrowser:
    return get_services(request).browse


async def job_service(request: Request) -> JobService:
    return get_services(request).jobs


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
SessionsPrincipal = Annotated[Principal, Depends(scoped("sessions"))]
Identity = Annotated[IdentityService, Depends(identity_service)]
Groups = Annotated[GroupService, Depends(group_service)]
Keys = Annotated[SshKeyService, Depends(key_service)]
Windows = Annotated[WindowsIdentity, Depends(windows_service)]
Sessions = Annotated[SessionService, Depends(session_service)]
Audit = Annotated[AuditService, Depends(audit_service)]
Workstations = Annotated[WorkstationService, Depends(workstation_service)]
Login = Annotated[LoginService, Depends(login_service)]
Data = Annotated[DataService, Depends(data_service)]
Registration = Annotated[RegistrationService, Depends(registration_service)]
Browse = Annotated[DataBrowser, Depends(browse_service)]
Jobs = Annotated[JobService, Depends(job_service)]
