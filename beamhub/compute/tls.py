"""Per-session TLS: a key and self-signed certificate made at launch, handed only to the session's agent, and a client
context that accepts that one certificate and no other.

Across hosts no directory permission keeps another user's process off a session's endpoint: any process on the node
may bind a port. What stands in for the 0700 runtime directory is the key: the proxy completes a handshake only with
a peer that proves it holds the private key of the certificate recorded for the session, and that key exists only in
beamhub's memory during the launch and in the agent's private runtime directory (written from the job's environment,
readable by the session's user alone).

The other way round, the agent serves only beamhub's proxy: it requires a client certificate, and accepts only the
proxy's own (made once in beamhub's state directory, its certificate handed to each agent with the session's), so no
other process that reaches the node's port talks to the session's program.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SessionCredentials:
    """The agent's PEM key and certificate; only the certificate is kept by beamhub."""

    key_pem: str
    cert_pem: str


PROXY_LIFETIME = timedelta(days=3650)


def make_credentials(session_id: str, lifetime: timedelta) -> SessionCredentials:
    """A fresh P-256 key and a self-signed certificate naming the session, valid for the session's longest life."""
    return _self_signed(f"beamhub-session-{session_id}", lifetime)


def proxy_identity(state_dir: Path) -> str:
    """The file of the proxy's client key and certificate (one PEM file, 0600, in beamhub's state directory, made
    once: the first process to link it in wins, so replicas sharing the directory share it)."""
    path = state_dir / "proxy-client.pem"
    if not path.exists():
        made = _self_signed("beamhub-proxy", PROXY_LIFETIME)
        temporary = state_dir / f".proxy-client.{os.getpid()}.pem"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(made.key_pem + made.cert_pem)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return str(path)


def certificate_of(identity: str) -> str:
    """The certificate (PEM) in an identity file of key and certificate."""
    text = Path(identity).read_text()
    return text[text.index("-----BEGIN CERTIFICATE-----"):]


def _self_signed(common_name: str, lifetime: timedelta) -> SessionCredentials:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + lifetime + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return SessionCredentials(key_pem=key_pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode())


def pinned_context(cert_pem: str, client: str | None = None) -> ssl.SSLContext:
    """A client context that trusts exactly this self-signed certificate (no system CA, no host name: the session's
    certificate is its identity, wherever the scheduler put it), presenting the proxy's `client` certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=cert_pem)
    if client is not None:
        context.load_cert_chain(client)
    return context
