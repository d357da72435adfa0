"""Browser tests: Debian's Chromium driven by Playwright against a real beamhub with two proposals.

One Chromium for the whole run; one server per module, with a storage root, a member of each proposal
(local passwords), an administrator, and files registered through the API so that their ACLs are real.
Screenshots of every page, in English and Chinese, go to $BEAMHUB_SCREENSHOTS
(default: test-artifacts/screenshots under the repository root).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery"
LANGUAGES = ("zh_CN", "en")
PHONE = {"width": 390, "height": 844}
"""A phone's viewport (CSS pixels)."""
"""The languages of every screenshot; English last, so that a page is left in English."""
FILES = {"P1": {"scan1/frame0001.h5": b"\x89HDF\r\n" + bytes(range(256)) * 8, "notes.txt": b"alice's beamtime"},
         "P2": {"tomo/slice0001.tif": b"II*\x00" + b"\x07" * 700, "readme.txt": b"bob's beamtime"}}
MEMBERS = {"P1": "alice", "P2": "bob"}
REPO = Path(__file__).resolve().parents[2]


@dataclass
class World:
    """The server, its users by role (alice, bob, admin), its proposals (P1, P2) as the API returned them and
    their files (relative path: bytes)."""

    server: Any
    users: dict[str, str]
    proposals: dict[str, dict[str, Any]]
    files: dict[str, dict[str, bytes]]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Debian Chromium per test module, closed after it: while Playwright's sync API runs, its event
    loop is the thread's running loop and asyncio.run() in tests outside tests/browser would fail."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: run scripts/install.sh")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install.sh (Debian package chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    directory = Path(os.environ.get("BEAMHUB_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("FAILED-*.png"):
        stale.unlink()
    return directory


@pytest.fixture(scope="module")
def world(module_beamhub_factory: Any, uid_range_env: dict[str, str]) -> Iterator[World]:
    """A server with alice (member of P1), bob (member of P2) and an admin, all with the local PASSWORD."""
    storage = Path(tempfile.mkdtemp(prefix="beamhub-browser-"))
    storage.chmod(0o755)
    server = module_beamhub_factory(env={**uid_range_env, "BEAMHUB_STORAGE_ROOT": str(storage),
                                         "BEAMHUB_NODE_CPUS": "4", "BEAMHUB_NODE_MEMORY": "8Gi"})
    users: dict[str, str] = {}
    try:
        for role, fields in (("alice", {}), ("bob", {}), ("admin", {"roles": ["admin"]})):
            users[role], _ = server.create_user(username=f"{role}{secrets.token_hex(2)}", **fields)
            answer = server.admin.put(f"/api/v1/users/{users[role]}/password", json={"password": PASSWORD})
            assert answer.status_code == 204, answer.text
        proposals = {key: _proposal(server, key, users[MEMBERS[key]]) for key in FILES}
        yield World(server, users, proposals, FILES)
    finally:
        for name in users.values():
            subprocess.run(["userdel", "-r", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)


def _proposal(server: Any, key: str, member: str) -> dict[str, Any]:
    """A proposal with its files, registered by the administrator (ACLs, checksums, catalogue)."""
    now = datetime.now(UTC)
    created = server.admin.post("/api/v1/proposals", json={
        "id": f"2024-{secrets.randbelow(10**5):05d}", "title": f"Beamtime {key}", "beamline": "b7",
        "beamtime_start": (now - timedelta(days=2)).isoformat(), "beamtime_end": now.isoformat(),
        "members": [{"username": member, "role": "pi"}]})
    assert created.status_code == 201, created.text
    proposal: dict[str, Any] = created.json()
    for relpath, data in FILES[key].items():
        path = Path(proposal["path"]) / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    registered = server.admin.post(f"/api/v1/proposals/{proposal['id']}/register", json={})
    assert registered.status_code == 200 and registered.json()["files"] == len(FILES[key]), registered.text
    return proposal


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Mark a test whose body failed, so that its pages are kept as screenshots."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture
def open_page(request: pytest.FixtureRequest, chromium: Browser, world: World,
              screenshot_dir: Path) -> Iterator[Callable[[str | None], Page]]:
    """open_page(role): a page in a browser context of its own (English), signed in as that user through
    the login form if a role is given. When the test fails, its pages are saved as FAILED-<test>-<n>.png."""
    contexts: list[BrowserContext] = []

    def make(role: str | None = None) -> Page:
        context = chromium.new_context(base_url=world.server.url, locale="en-US", accept_downloads=True,
                                       viewport={"width": 1280, "height": 860})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        if role is not None:
            log_in(page, world.users[role])
        return page

    yield make
    if request.node.stash.get(FAILED, False):
        pages = [page for context in contexts for page in context.pages]
        for number, page in enumerate(pages):
            page.screenshot(path=screenshot_dir / f"FAILED-{request.node.name}-{number}.png", full_page=True)
    for context in contexts:
        context.close()


def log_in(page: Page, username: str) -> None:
    """Sign in through the login page, as a person does."""
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button.primary")
    page.wait_for_url("/")


def in_language(page: Page, language: str) -> None:
    """Reload the page in a language, through the language cookie of the whole console (not of one page)."""
    origin = "/".join(page.url.split("/", 3)[:3])
    page.context.add_cookies([{"name": "beamhub-lang", "value": language, "url": origin}])
    page.reload()


@pytest.fixture
def shoot(screenshot_dir: Path, world: World) -> Callable[[Page, str], None]:
    """shoot(page, name): screenshots `name-zh_CN.png` and `name-en.png` of the page (reloaded in each
    language through the language cookie); the page is left in English. The browser must report no error
    (a script that fails, a resource the Content-Security-Policy refuses) while it shows the page."""

    def take(page: Page, name: str) -> None:
        errors: list[str] = []

        def note(message: ConsoleMessage) -> None:
            status_of_the_page = message.location.get("url") == page.url and message.text.startswith("Failed to load")
            if message.type == "error" and not status_of_the_page:
                errors.append(message.text)

        page.on("console", note)
        try:
            for language in LANGUAGES:
                page.context.add_cookies([{"name": "beamhub-lang", "value": language, "url": world.server.url}])
                page.reload()
                page.screenshot(path=screenshot_dir / f"{name}-{language}.png", full_page=True)
        finally:
            page.remove_listener("console", note)
        assert not errors, f"the browser reported errors on {page.url}: {errors}"

    return take
