"""Fixtures: real beamhub servers, real PostgreSQL, real system users."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers.accounts import UserMaker
from helpers.http import free_port
from helpers.storage import storage_root

BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
IMAGE = Path("/opt/beamhub/images/default")


def remove_accounts(names: list[str]) -> None:
    """Remove these system accounts, their homes and their private groups (what is already gone is no error)."""
    for name in names:
        subprocess.run(["userdel", "-r", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{secrets.token_hex(3)}"


@pytest.fixture
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates system users and runs processes under their UIDs")


@pytest.fixture
def require_image() -> None:
    if not (IMAGE / "bin" / "jupyter-lab").exists():
        pytest.skip(f"no JupyterLab image at {IMAGE}: run scripts/install.sh")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of Debian's binaries in a temp dir, on a free port."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}: run scripts/install.sh")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL as its own user needs root")
    data = Path(tempfile.mkdtemp(prefix="beamhub-pg-"))
    shutil.chown(data, "postgres", "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"),
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def _fresh_postgres_database(base_url: str) -> str:
    import psycopg

    name = unique_name("beamhub_")
    dsn = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def storage() -> Iterator[Path]:
    """The data of a module's server (tests/data have one a test)."""
    with storage_root() as root:
        yield root


@pytest.fixture
def postgres_database_url(postgres_url: str) -> str:
    """A fresh database on the session's PostgreSQL, for what only PostgreSQL has."""
    return _fresh_postgres_database(postgres_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database-facing test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'beamhub.db'}"
    return _fresh_postgres_database(request.getfixturevalue("postgres_url"))


class Beamhub:
    """A real `beamhub serve` process and an HTTP client speaking to it."""

    def __init__(self, state_dir: Path, env: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(16)
        self.env = {**os.environ, "BEAMHUB_STATE_DIR": str(state_dir), "BEAMHUB_BIND": f"127.0.0.1:{self.port}",
                    "BEAMHUB_ADMIN_TOKEN": self.admin_token, "BEAMHUB_RECONCILE_INTERVAL": "0.5", **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.accounts: list[str] = []
        self.clients: list[httpx.Client] = []
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"},
                                  timeout=30)

    def start(self) -> None:
        with open(self.state_dir / "server.log", "ab") as log:  # the server keeps its own copy of the fd
            self.process = subprocess.Popen([str(BIN / "beamhub"), "serve"], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
            if self.process.poll() is not None:
                break
        raise RuntimeError(f"beamhub did not start:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def log(self) -> str:
        return (self.state_dir / "server.log").read_text(errors="replace")[-5000:]

    def client(self, token: str | None = None) -> httpx.Client:
        """A client of this server (with the token, if given); shut_down closes it."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.clients.append(httpx.Client(base_url=self.url, headers=headers, timeout=30))
        return self.clients[-1]

    def create_user(self, **fields: object) -> tuple[str, str]:
        """A new user (and system account); returns its name and an API token."""
        username = str(fields.pop("username", unique_name("u")))
        response = self.admin.post("/api/v1/users", json={"username": username, **fields})
        assert response.status_code == 201, response.text
        self.accounts.append(username)
        token = self.admin.post(f"/api/v1/users/{username}/tokens", json={"name": "test"}).json()["token"]
        return username, token

    def wait_for_state(self, session_id: str, states: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            session = self.admin.get(f"/api/v1/sessions/{session_id}").json()
            if session["state"] in states:
                return session
            if time.monotonic() > deadline:
                raise AssertionError(f"session stayed {session['state']}: {session}\n{self.log()}")
            time.sleep(0.1)

    def stop_all_sessions(self) -> None:
        for session in self.admin.get("/api/v1/sessions", params={"active": True}).json():
            self.admin.delete(f"/api/v1/sessions/{session['id']}")

    def shut_down(self) -> None:
        """Stop its sessions and the server, close its clients, and remove the system accounts create_user made."""
        if self.process is not None and self.process.poll() is None:
            self.stop_all_sessions()
        self.stop()
        for client in [self.admin, *self.clients]:
            client.close()
        remove_accounts(self.accounts)


@pytest.fixture
def beamhub_factory(tmp_path: Path, require_root: None) -> Iterator[type]:
    """Start one or more beamhub servers; every session they started is stopped at the end."""
    servers: list[Beamhub] = []

    def make(env: dict[str, str] | None = None, state_dir: Path | None = None) -> Beamhub:
        directory = state_dir or tmp_path / f"state{len(servers)}"
        directory.mkdir(exist_ok=True)
        server = Beamhub(directory, env or {})
        server.start()
        servers.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in servers:
        server.shut_down()


@pytest.fixture
def beamhub(beamhub_factory) -> Beamhub:  # type: ignore[no-untyped-def]
    return beamhub_factory()


@pytest.fixture
def system_users() -> Iterator[list[str]]:
    """Names of system accounts a test creates: each is removed (userdel -r) at the end."""
    names: list[str] = []
    yield names
    remove_accounts(names)


@pytest.fixture
def system_groups() -> Iterator[list[str]]:
    """Names of system groups a test creates: each is removed (groupdel) at the end."""
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def make_user(server: Beamhub, system_users: list[str]) -> UserMaker:
    """make_user(**fields): a user through the module's `server`, and its system account (removed at the end)."""
    def make(**fields: object) -> tuple[str, str]:
        username = str(fields.pop("username", unique_name("u")))
        system_users.append(username)
        return server.create_user(username=username, **fields)
    return make


@pytest.fixture(scope="module")
def uid_range_env() -> dict[str, str]:
    """BEAMHUB_UID_MIN/MAX of a block of 1000 UIDs that concurrent tests are unlikely to share."""
    base = 100_000 + 1000 * secrets.randbelow(800)
    return {"BEAMHUB_UID_MIN": str(base), "BEAMHUB_UID_MAX": str(base + 999)}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Like database_url, for a server that the tests of one module share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'beamhub.db'}"
    return _fresh_postgres_database(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="module")
def module_beamhub_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[type]:
    """Like beamhub_factory, for servers that the tests of one module share (one start, not one per test)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates system users and runs processes under their UIDs")
    servers: list[Beamhub] = []

    def make(env: dict[str, str] | None = None) -> Beamhub:
        server = Beamhub(tmp_path_factory.mktemp("state"), env or {})
        server.start()
        servers.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in servers:
        server.shut_down()
