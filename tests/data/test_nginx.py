"""deploy/nginx/beamhub.conf in Debian's nginx, in front of a real uvicorn answering with X-Accel-Redirect."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import websockets
from fastapi import FastAPI, Request, WebSocket
from starlette.responses import Response, StreamingResponse

from beamhub.app import add_error_handlers
from beamhub.data.browsing.download import accel_uri, file_response
from beamhub.data.paths import resolve_inside
from beamhub.errors import Forbidden
from helpers.http import free_port
from helpers.waiting import wait_for_port

NGINX = Path("/usr/sbin/nginx")
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "beamhub.conf"
PREFIX = "/_beamhub_files"
SIZE = 2 * 1024 * 1024 + 7
ODD_NAME = "scan 100% ?#ü.bin"

pytestmark = pytest.mark.skipif(not NGINX.exists(), reason=f"nginx is not installed at {NGINX}")



def beamhub_like_app(root: Path) -> FastAPI:
    """Downloads decided by a stand-in ACL (names starting 'secret' are refused), a session proxy, an event stream."""
    app = FastAPI()
    add_error_handlers(app)


    @app.api_route("/api/v1/files/{path:path}", methods=["GET", "HEAD"])
    def download(path: str, request: Request) -> Response:
        real = resolve_inside(root, path)
        if real.name.startswith("secret"):
            raise Forbidden("the file's ACL does not let you read it")
        return file_response(request, real, accel_root=root, accel_prefix=PREFIX)

    @app.get("/api/v1/decided-earlier/{path:path}")
    def decided_before_a_swap(path: str) -> Response:
        """As if access was decided on a real path that has since been swapped for a symlink."""
        return Response(headers={"X-Accel-Redirect": accel_uri(root / path, root, PREFIX)})

    @app.get("/s/{session}/headers")
    def session_headers(request: Request) -> dict[str, str]:
        return dict(request.headers)

    @app.get("/s/{session}/evil")
    def evil_session() -> Response:
        """What a user's own Jupyter could answer: an attempt to make nginx send someone else's file."""
        return Response(headers={"X-Accel-Redirect": f"{PREFIX}/secret.bin"})

    @app.websocket("/s/{session}/ws")
    async def session_socket(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("echo " + await socket.receive_text())
        await socket.close()

    @app.get("/api/v1/sessions/{session}/events")
    def events() -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            yield b"data: starting\n\n"
            await asyncio.sleep(2)
            yield b"data: running\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(os.path.realpath(tmp_path_factory.mktemp("storage")))
    (root / "p1").mkdir()
    (root / "p1" / "scan.bin").write_bytes(os.urandom(SIZE))
    (root / "p1" / ODD_NAME).write_bytes(b"odd name\n")
    (root / "secret.bin").write_bytes(b"SECRET BYTES " * 100)
    return root


def render(config: Path, **values: str) -> str:
    """beamhub.conf with its @PLACEHOLDERS@ filled; fails if one is left."""
    text = config.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    assert not re.search(r"@[A-Z_]+@", text), "a placeholder is left unfilled"
    return text


def nginx_conf(tmp: Path, site: Path) -> str:
    """A whole nginx.conf around the site: everything nginx writes stays in `tmp`."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # the worker reads the pytest tmp dir, mode 0700
    temp = "".join(f"    {kind}_temp_path {tmp / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
    mime = "    include /etc/nginx/mime.types;\n" if Path("/etc/nginx/mime.types").exists() else ""
    return (f"{user}daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
            f"events {{ worker_connections 64; }}\nhttp {{\n{mime}    default_type application/octet-stream;\n"
            f"    access_log {tmp / 'access.log'};\n{temp}    include {site};\n}}\n")


@pytest.fixture(scope="module")
def nginx(root: Path, tmp_path_factory: pytest.TempPathFactory,
          serve_app: Callable[[FastAPI], str]) -> Iterator[str]:
    """Debian's nginx with the shipped site config, in front of the app; yields its base URL."""
    tmp = tmp_path_factory.mktemp("nginx")
    upstream = serve_app(beamhub_like_app(root))
    port = free_port()
    site = tmp / "beamhub.conf"
    site.write_text(render(CONFIG, LISTEN=f"127.0.0.1:{port}", SERVER_NAME="localhost", BEAMHUB=upstream,
                           ACCEL_PREFIX=PREFIX, STORAGE_ROOT=str(root)))
    (tmp / "nginx.conf").write_text(nginx_conf(tmp, site))
    process = subprocess.Popen([str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                                "-e", str(tmp / "error.log")], stderr=subprocess.PIPE)
    try:
        wait_for_port(port, process, 10, lambda: _log(process, tmp))
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _log(process: subprocess.Popen[bytes], tmp: Path) -> str:
    """What nginx said: its stderr once it has exited (reading it earlier would block), and its error.log."""
    stderr = process.stderr.read().decode() if process.stderr and process.poll() is not None else ""
    return stderr + ((tmp / "error.log").read_text(errors="replace") if (tmp / "error.log").exists() else "")


@pytest.fixture
def client(nginx: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=nginx, timeout=30) as client:
        yield client


def test_nginx_sends_the_file_that_beamhub_allowed(client: httpx.Client, root: Path) -> None:
    response = client.get("/api/v1/files/p1/scan.bin")
    assert response.status_code == 200
    assert response.content == (root / "p1" / "scan.bin").read_bytes()
    assert response.headers["content-disposition"] == "attachment; filename=\"scan.bin\"; filename*=UTF-8''scan.bin"
    assert response.headers["cache-control"] == "private, no-cache"
    assert "x-accel-redirect" not in response.headers
    assert response.headers["etag"] and response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_head_through_nginx_has_the_size_and_no_body(client: httpx.Client) -> None:
    response = client.head("/api/v1/files/p1/scan.bin")
    assert (response.status_code, response.content, response.headers["content-length"]) == (200, b"", str(SIZE))


def test_a_name_with_spaces_percent_question_mark_and_unicode_reaches_the_right_file(client: httpx.Client,
                                                                                     root: Path) -> None:
    response = client.get("/api/v1/files/p1/" + quote(ODD_NAME))
    assert (response.status_code, response.content) == (200, b"odd name\n")


def test_range_and_if_range_work_through_nginx(client: httpx.Client, root: Path) -> None:
    data = (root / "p1" / "scan.bin").read_bytes()
    etag = client.head("/api/v1/files/p1/scan.bin").headers["etag"]
    ranged = client.get("/api/v1/files/p1/scan.bin", headers={"Range": "bytes=1000-1999", "If-Range": etag})
    stale = client.get("/api/v1/files/p1/scan.bin", headers={"Range": "bytes=1000-1999", "If-Range": '"old"'})
    past_end = client.get("/api/v1/files/p1/scan.bin", headers={"Range": f"bytes={SIZE}-"})
    assert (ranged.status_code, ranged.headers["content-range"]) == (206, f"bytes 1000-1999/{SIZE}")
    assert ranged.content == data[1000:2000]
    assert (stale.status_code, stale.content) == (200, data)
    assert past_end.status_code == 416


def test_a_current_copy_gets_304_through_nginx(client: httpx.Client) -> None:
    etag = client.head("/api/v1/files/p1/scan.bin").headers["etag"]
    response = client.get("/api/v1/files/p1/scan.bin", headers={"If-None-Match": etag})
    assert (response.status_code, response.content) == (304, b"")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_continue_resumes_through_nginx(nginx: str, root: Path, tmp_path: Path) -> None:
    data = (root / "p1" / "scan.bin").read_bytes()
    partial = tmp_path / "scan.bin"
    partial.write_bytes(data[:123_457])
    subprocess.run(["curl", "-sSf", "-C", "-", "-o", str(partial), f"{nginx}/api/v1/files/p1/scan.bin"],
                   check=True, timeout=60)
    assert partial.read_bytes() == data


def test_the_internal_location_is_not_reachable_directly(client: httpx.Client) -> None:
    for path in (f"{PREFIX}/p1/scan.bin", f"{PREFIX}/secret.bin", f"{PREFIX}/", f"{PREFIX}//secret.bin"):
        response = client.get(path)
        assert response.status_code == 404 and b"SECRET" not in response.content


def test_a_file_beamhub_refuses_never_reaches_the_bytes(client: httpx.Client, nginx: str) -> None:
    refused = client.get("/api/v1/files/secret.bin")
    assert refused.status_code == 403 and b"SECRET" not in refused.content
    for raw in ("/api/v1/files/p1/../secret.bin", "/api/v1/files/p1/%2e%2e/secret.bin",
                "/api/v1/files/..%2f..%2fetc/passwd"):
        out = subprocess.run(["curl", "-s", "--path-as-is", nginx + raw], capture_output=True, timeout=30).stdout
        assert b"SECRET" not in out and b"root:" not in out


def test_nginx_follows_no_symlink_swapped_in_after_the_decision(client: httpx.Client, root: Path) -> None:
    (root / "p1" / "swapped").symlink_to("/etc")
    (root / "p1" / "swapped-file").symlink_to(root / "secret.bin")
    for path in ("p1/swapped/passwd", "p1/swapped-file"):
        response = client.get(f"/api/v1/decided-earlier/{path}")
        assert response.status_code in (403, 404)
        assert b"root:" not in response.content and b"SECRET" not in response.content


def test_a_session_cannot_make_nginx_send_a_file(client: httpx.Client) -> None:
    response = client.get("/s/abc/evil")
    assert response.status_code == 200 and b"SECRET" not in response.content


def test_session_requests_keep_the_host_and_client_address(client: httpx.Client) -> None:
    seen = client.get("/s/abc/headers", headers={"X-Forwarded-For": "10.9.9.9"}).json()
    assert seen["host"] == client.base_url.netloc.decode()
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"


def test_websockets_pass_through_the_session_proxy(nginx: str) -> None:
    async def talk() -> str:
        async with websockets.connect(nginx.replace("http", "ws", 1) + "/s/abc/ws") as socket:
            await socket.send("hello")
            return str(await socket.recv())

    assert asyncio.run(asyncio.wait_for(talk(), 10)) == "echo hello"


def test_server_sent_events_arrive_unbuffered(nginx: str) -> None:
    started = time.monotonic()
    with httpx.stream("GET", f"{nginx}/api/v1/sessions/abc/events", timeout=10) as response:
        first = next(response.iter_text())
        assert first.startswith("data: starting") and time.monotonic() - started < 1.5
