"""The agent's TLS endpoint and the proxy's pinning: only a peer holding the session's key is talked to."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from beamhub.compute.relay import STRANGER_HANDSHAKES, Relay, beamhub_addresses, facing_address, server_context
from beamhub.compute.tls import certificate_of, make_credentials, pinned_context, proxy_identity


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"hello from the session"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = super().get_request()
        return conn, ("session", 0)


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Path]:
    """A web server on a Unix socket, as a session's program."""
    path = tmp_path / "http.sock"
    server = UnixServer(str(path), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(tmp_path: Path) -> str:
    """beamhub's proxy identity (client certificate and key), as a state directory holds it."""
    return identity_in(tmp_path / "state")


def identity_in(directory: Path) -> str:
    """A proxy identity made in a new state directory."""
    directory.mkdir()
    return proxy_identity(directory)


def relay_with(runtime: Path, program: Path, session_id: str, proxy: str) -> tuple[Relay, str]:
    """An agent's endpoint with fresh credentials of a session; the certificate the proxy would pin."""
    credentials = make_credentials(session_id, timedelta(hours=1))
    context = server_context(str(runtime), credentials.key_pem, credentials.cert_pem, certificate_of(proxy))
    relay = Relay("127.0.0.1", str(program), context)
    relay.serve_in_background()
    return relay, credentials.cert_pem


def test_the_pinned_certificate_reaches_the_program_through_the_relay(tmp_path: Path, program: Path,
                                                                      proxy: str) -> None:
    relay, cert = relay_with(tmp_path, program, "s1", proxy)
    with httpx.Client(verify=pinned_context(cert, proxy)) as client:
        response = client.get(f"https://127.0.0.1:{relay.port}/anything")
    assert response.status_code == 200 and response.text == "hello from the session"
    assert relay.port > 0 and (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600
    assert Path(proxy).stat().st_mode & 0o777 == 0o600 and proxy_identity(Path(proxy).parent) == proxy


def test_an_endpoint_with_another_certificate_is_refused_before_any_request(tmp_path: Path, program: Path,
                                                                           proxy: str) -> None:
    """An endpoint of another session, or one whose certificate names the same subject but was made with another
    key (anyone can make one), fails the handshake: no request, no token is sent to it."""
    other, _ = relay_with(tmp_path, program, "s1", proxy)
    pinned = pinned_context(make_credentials("s1", timedelta(hours=1)).cert_pem, proxy)
    with httpx.Client(verify=pinned) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(f"https://127.0.0.1:{other.port}/anything")


def test_the_endpoint_serves_no_client_but_beamhubs_proxy(tmp_path: Path, program: Path,
                                                          proxy: str) -> None:
    """Another process on the network that reaches the agent's port, with no client certificate or one of its own,
    never gets through to the program (which, on one host, only its Unix socket's 0700 directory protected)."""
    relay, cert = relay_with(tmp_path, program, "s1", proxy)
    stranger = identity_in(tmp_path / "stranger")
    for client_cert in (None, stranger):
        with httpx.Client(verify=pinned_context(cert, client_cert)) as client, \
                pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            client.get(f"https://127.0.0.1:{relay.port}/anything")


def test_an_agent_without_the_proxys_certificate_opens_no_endpoint(tmp_path: Path) -> None:
    credentials = make_credentials("s1", timedelta(hours=1))
    with pytest.raises(ValueError, match="would serve anyone"):
        server_context(str(tmp_path), credentials.key_pem, credentials.cert_pem, "")


def test_a_plain_listener_on_the_port_never_gets_the_request(tmp_path: Path) -> None:
    """A process that holds the port without TLS sees a ClientHello and nothing of the request."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2)
            try:
                while chunk := conn.recv(65536):
                    received.append(chunk)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    cert = make_credentials("s1", timedelta(hours=1)).cert_pem
    with httpx.Client(verify=pinned_context(cert)) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://127.0.0.1:{listener.getsockname()[1]}/secret", headers={"Authorization": "token t0p"})
    listener.close()
    assert b"t0p" not in b"".join(received) and b"/secret" not in b"".join(received)


def test_the_agent_answers_on_the_address_that_faces_beamhub() -> None:
    assert facing_address("http://127.0.0.1:8000") == "127.0.0.1"


def test_the_pinned_context_checks_no_host_name_and_requires_a_certificate() -> None:
    context = pinned_context(make_credentials("s1", timedelta(hours=1)).cert_pem)
    assert context.verify_mode is ssl.CERT_REQUIRED and not context.check_hostname


def test_strangers_that_never_finish_a_handshake_do_not_shut_beamhub_out(tmp_path: Path, program: Path,
                                                                          proxy: str) -> None:
    """Connections from other addresses that hold their handshake open are a bounded few (more are closed at
    once); beamhub's proxy, from its own address, still gets through."""
    credentials = make_credentials("s1", timedelta(hours=1))
    context = server_context(str(tmp_path), credentials.key_pem, credentials.cert_pem, certificate_of(proxy))
    relay = Relay("127.0.0.1", str(program), context, beamhub=frozenset({"127.0.0.1"}))
    relay.serve_in_background()
    held = [socket.create_connection(("127.0.0.1", relay.port), source_address=("127.0.0.2", 0))
            for _ in range(STRANGER_HANDSHAKES)]
    one_more = socket.create_connection(("127.0.0.1", relay.port), source_address=("127.0.0.2", 0))
    one_more.settimeout(5)
    assert one_more.recv(1) == b""  # closed at once, not after the handshake timeout
    with httpx.Client(verify=pinned_context(credentials.cert_pem, proxy)) as client:
        assert client.get(f"https://127.0.0.1:{relay.port}/anything").status_code == 200
    for conn in [*held, one_more]:
        conn.close()


def test_the_agent_knows_beamhubs_addresses_from_its_callback() -> None:
    assert "127.0.0.1" in beamhub_addresses("http://127.0.0.1:8000")
    assert beamhub_addresses("http://no-such-host.invalid:8000") == frozenset()
