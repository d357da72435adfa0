"""The services of one beamhub instance, built without the web layer (the CLI needs no FastAPI)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from beamhub.compute.backend import Backend
from beamhub.compute.registry import make_backend
from beamhub.config import Settings
from beamhub.data.browsing.service import DataBrowser
from beamhub.data.proposals.service import DataService
from beamhub.data.registration.service import RegistrationService
from beamhub.data.tiers.prefetch import prefetch_in_background
from beamhub.db import Database, migrate
from beamhub.errors import N_
from beamhub.identity.accounts.groups import GroupService
from beamhub.identity.accounts.service import IdentityService
from beamhub.identity.audit.service import AuditService
from beamhub.identity.keys.service import SshKeyService
from beamhub.identity.login.oidc import OidcLogin
from beamhub.identity.login.service import LoginService
from beamhub.identity.windows.service import WindowsIdentity
from beamhub.jobs.service import JobService
from beamhub.locks import HostLocks
from beamhub.sessions import proposal_links
from beamhub.sessions.entry import SessionEntry
from beamhub.sessions.service import SessionService
from beamhub.sessions.workstations import WorkstationService
from beamhub.streams.service import StreamService


@dataclass
class Services:
    """Everything a request may need, built once by the app factory."""

    settings: Settings
    db: Database
    backend: Backend
    identity: IdentityService
    groups: GroupService
    keys: SshKeyService
    sessions: SessionService
    entry: SessionEntry
    workstations: WorkstationService
    login: LoginService
    oidc: OidcLogin | None
    windows: WindowsIdentity
    audit: AuditService
    data: DataService
    registration: RegistrationService
    browse: DataBrowser
    jobs: JobService
    streams: StreamService


def build_services(settings: Settings) -> Services:
    """The services of one beamhub instance, on a migrated database."""
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(settings.sqlalchemy_url)
    migrate(db.engine)
    backend = make_backend(settings)
    audit = AuditService(db)
    locks = HostLocks(settings.state_dir / "locks")
    groups = GroupService(db, settings, audit, locks)
    identity = IdentityService(db, settings, groups, audit)
    groups.on_member_change.append(identity.revoked)
    sessions = SessionService(db, settings, backend, identity, audit, locks)
    identity.on_disable.append(lambda user: sessions.stop_all_of(user.id, N_("user %(username)s was disabled")
                                                                 % {"username": user.username}))
    data = DataService(db, settings, identity, groups, audit, locks)
    sessions.user_env = partial(proposal_links.session_env, data)
    sessions.check_proposal = data.get
    sessions.prefetch_proposal = partial(prefetch_in_background, data)
    login = LoginService(db, settings, identity, audit)
    oidc = OidcLogin(settings, db) if "oidc" in settings.login_methods else None
    return Services(settings=settings, db=db, backend=backend, identity=identity, groups=groups,
                    keys=SshKeyService(db, identity), sessions=sessions,
                    entry=SessionEntry(db, sessions, identity, login), workstations=WorkstationService(db),
                    audit=audit, login=login, oidc=oidc, windows=WindowsIdentity(db, settings, identity), data=data,
                    registration=RegistrationService(data), browse=DataBrowser(data),
                    jobs=JobService(db, settings, identity, data, audit),
                    streams=StreamService(identity, data))
