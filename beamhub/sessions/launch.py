"""What a session's backend gets: the agent's command line, its environment and the session's limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from beamhub.compute.backend import Account, Backend, LaunchSpec
from beamhub.compute.relay import CERT_ENV, KEY_ENV, PROXY_CERT_ENV
from beamhub.compute.tls import certificate_of, make_credentials, proxy_identity
from beamhub.config import Settings
from beamhub.db import utcnow
from beamhub.errors import Invalid
from beamhub.sessions import kinds, logs
from beamhub.sessions.models import SessionRecord


@dataclass(frozen=True)
class Launch:
    """A session's launch, and the certificate its agent will present (None where it answers on its socket)."""

    spec: LaunchSpec
    tls_cert: str | None


def image_folder(settings: Settings, image: str) -> Path:
    """The folder of a configured image on this node; Invalid for an unknown or missing one."""
    path = settings.images.get(image)
    if path is None:
        raise Invalid("unknown image %(image)r; known: %(images)s",
                      image=image, images=", ".join(sorted(settings.images)))
    if not path.is_dir():
        raise Invalid("image %(image)r is configured at %(path)s, which does not exist on this node",
                      image=image, path=path)
    return path


def agent_argv(settings: Settings, record: SessionRecord, account: Account, socket: Path,
               program: kinds.KindProgram, listen: bool) -> list[str]:
    """The agent's command line: it runs the program and reports to beamhub; with `listen`, it serves the program
    over TLS on a port of its node."""
    return [str(settings.agent_python), "-m", "beamhub.agent", "--session", record.id,
            "--callback", settings.callback_url, "--socket", str(socket),
            "--ready-path", program.ready_path, "--heartbeat", str(settings.heartbeat_interval),
            "--log", str(logs.log_path(account.home, record.id)),
            "--log-max", str(settings.session_log_max), *(["--listen"] if listen else []), "--", *program.argv]


def build_launch(settings: Settings, backend: Backend, record: SessionRecord, account: Account, image_path: Path,
                 runtime_dir: Path, secret: str, extra_env: dict[str, str]) -> Launch:
    """The LaunchSpec of a recorded session. A backend whose sessions run on other hosts gets a fresh key and
    self-signed certificate in the agent's environment; only the certificate is kept, for the proxy to pin."""
    socket = runtime_dir / kinds.SOCKET_NAME
    program = kinds.program_for(record.kind, image_path, record.id, socket, record.token, record.command,
                                record.args)
    env = {"PATH": f"{image_path / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           **record.env, **program.env, **extra_env, "BEAMHUB_SESSION_ID": record.id, "BEAMHUB_AGENT_SECRET": secret}
    cert = None
    if backend.remote:
        credentials = make_credentials(record.id, timedelta(seconds=settings.max_runtime))
        proxy_cert = certificate_of(proxy_identity(settings.state_dir))
        env |= {KEY_ENV: credentials.key_pem, CERT_ENV: credentials.cert_pem, PROXY_CERT_ENV: proxy_cert}
        cert = credentials.cert_pem
    spec = LaunchSpec(session_id=record.id, account=account,
                      argv=agent_argv(settings, record, account, socket, program, backend.remote), env=env,
                      ncores=record.ncores, memory=record.memory, runtime_dir=runtime_dir, gpu_ids=record.gpu_ids,
                      gpus=record.gpus, image=record.image, nodes=record.nodes, partition=record.partition,
                      time_limit=max(int((record.expires_at - utcnow()).total_seconds()), 60))
    return Launch(spec=spec, tls_cert=cert)
