"""The agent's TLS endpoint on a node: it relays each connection to the program's Unix socket.

The agent binds a port the kernel chooses (nothing is probed, nothing chosen by beamhub) on the address that faces
beamhub, and presents the session's certificate; the proxy pins that certificate, so a process that holds the port
without the session's key never completes a handshake and never sees a request. Stdlib only, like the agent.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import urllib.parse

KEY_ENV = "BEAMHUB_TLS_KEY"
CERT_ENV = "BEAMHUB_TLS_CERT"
PROXY_CERT_ENV = "BEAMHUB_PROXY_CERT"
"""The environment variables that carry the session's PEM key and certificate, and the certificate of beamhub's
proxy (the only client the endpoint serves), to the agent; it removes them before it starts the session's program."""
HANDSHAKE_TIMEOUT = 10.0
STRANGER_HANDSHAKES = 8
"""Connections from addresses other than beamhub's in their handshake at once; more are closed at once, so that
someone who can reach the node ties up neither the agent's threads nor its memory (beamhub's own always get one)."""
CHUNK = 65536


def facing_address(callback: str) -> str:
    """This node's address on the route to beamhub (the address beamhub's proxy can reach it on)."""
    url = urllib.parse.urlsplit(callback)
    family = socket.AF_INET6 if url.hostname and ":" in url.hostname else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((url.hostname or "127.0.0.1", url.port or 80))  # UDP: no packet is sent
        return probe.getsockname()[0]


def beamhub_addresses(callback: str) -> frozenset[str]:
    """The addresses beamhub's name resolves to, as the agent sees them (its proxy connects from one of them)."""
    host = urllib.parse.urlsplit(callback).hostname or "127.0.0.1"
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
    except OSError:
        return frozenset()


def server_context(runtime_dir: str, key_pem: str, cert_pem: str, proxy_cert_pem: str) -> ssl.SSLContext:
    """A server context with the session's key and certificate, written 0600 into the private runtime directory
    (OpenSSL loads them from files), that completes a handshake only with a client presenting the proxy's
    certificate."""
    if not proxy_cert_pem:
        raise ValueError(f"no certificate of beamhub's proxy in ${PROXY_CERT_ENV}: the endpoint would serve anyone")
    paths = {}
    for name, pem in (("tls.key", key_pem), ("tls.crt", cert_pem)):
        path = os.path.join(runtime_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(pem)
        paths[name] = path
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths["tls.crt"], paths["tls.key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=proxy_cert_pem)
    return context


class Relay:
    """Accepts TLS connections on (host, kernel-chosen port) and copies bytes to and from the program's socket."""

    def __init__(self, host: str, upstream: str, context: ssl.SSLContext,
                 beamhub: frozenset[str] = frozenset()) -> None:
        self.upstream = upstream
        self.context = context
        self.beamhub = beamhub
        self._strangers = threading.BoundedSemaphore(STRANGER_HANDSHAKES)
        self.listener = socket.create_server((host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.host = host
        self.port: int = self.listener.getsockname()[1]

    def serve_in_background(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            stranger = peer[0] not in self.beamhub
            if stranger and not self._strangers.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, stranger), daemon=True).start()

    def _serve(self, conn: socket.socket, stranger: bool) -> None:
        conn.settimeout(HANDSHAKE_TIMEOUT)
        try:
            client = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        finally:
            if stranger:
                self._strangers.release()
        client.settimeout(None)
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as program:
            try:
                program.connect(self.upstream)
                pump(client, program)
            except OSError:
                return


def pump(client: ssl.SSLSocket, program: socket.socket) -> None:
    """Copy both ways until either side closes."""
    other = {client: program, program: client}
    while True:
        ready = [client] if client.pending() else select.select([client, program], [], [])[0]
        for source in ready:
            data = source.recv(CHUNK)
            if not data:
                return
            other[source].sendall(data)
