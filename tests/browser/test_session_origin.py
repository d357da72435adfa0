"""A malicious session page in a real browser: it runs on the session's own origin, so its scripts get nothing of
the console (no cookie, no API call with the visitor's login), and an administrator who follows a link to it never
runs it at all."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

expect = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: run scripts/install.sh").expect

# The page tries what a script on the console's origin could do: read the login cookie, call the API with the
# visitor's login (read who they are, mint a token), and reach the console's API on its own origin.
EVIL_PAGE = """<!doctype html><title>loading</title><body><script>
(async () => {
  const console_url = CONSOLE, out = {cookie: document.cookie};
  const attempt = async (name, url, init) => {
    try { const r = await fetch(url, init); out[name] = r.status + " " + (await r.text()).slice(0, 200); }
    catch (e) { out[name] = "blocked"; }
  };
  await attempt("me", console_url + "/api/v1/me", {credentials: "include"});
  await attempt("mint", console_url + "/api/v1/users/" + USER + "/tokens",
                {method: "POST", credentials: "include", headers: {"Content-Type": "application/json"},
                 body: JSON.stringify({name: "stolen"})});
  await attempt("mint_simple", console_url + "/api/v1/users/" + USER + "/tokens",
                {method: "POST", mode: "no-cors", credentials: "include", body: "name=stolen"});
  await attempt("own_origin_api", "/api/v1/me", {});
  document.body.textContent = JSON.stringify(out);
  document.title = "done";
})();
</script></body>"""

SERVER = textwrap.dedent("""
    import http.server, os, socketserver, sys
    page = sys.argv[1].encode()
    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
        def log_message(self, *args):
            pass
    class Server(socketserver.UnixStreamServer):
        def get_request(self):
            request, _ = super().get_request()
            return request, ("session", 0)
    Server(os.environ["BEAMHUB_SOCKET"], Evil).serve_forever()
""")


@pytest.fixture
def evil_session(world: Any) -> Iterator[dict[str, Any]]:
    """A session of alice's whose program serves EVIL_PAGE at every path."""
    alice = world.users["alice"]
    page = EVIL_PAGE.replace("CONSOLE", json.dumps(world.server.url)).replace("USER", json.dumps(alice))
    answer = world.server.admin.post("/api/v1/sessions", json={
        "user": alice, "kind": "command", "command": "python3", "args": ["-c", SERVER, page],
        "ncores": 0.2, "memory": "128Mi"})
    assert answer.status_code == 201, answer.text
    session = world.server.wait_for_state(answer.json()["id"], {"running"})
    yield session
    world.server.admin.delete(f"/api/v1/sessions/{session['id']}")


def tokens_of(world: Any, username: str) -> list[str]:
    return [t["name"] for t in world.server.admin.get(f"/api/v1/users/{username}/tokens").json()]


def test_a_session_page_gets_nothing_of_its_visitors_console_login(
        open_page: Callable[..., Page], world: Any, evil_session: dict[str, Any]) -> None:
    alice = world.users["alice"]
    before = tokens_of(world, alice)
    page = open_page("alice")
    page.goto(f"/s/{evil_session['id']}/index.html")
    expect(page).to_have_title("done", timeout=20_000)
    assert urlsplit(page.url).hostname == f"{evil_session['id']}.sessions.localhost"
    seen = json.loads(page.locator("body").inner_text())
    assert "beamhub" not in seen["cookie"]  # the entry cookie is HttpOnly, the console's is another host's
    assert seen["me"] == "blocked"  # a cross-origin read: the browser refuses it
    assert seen["mint"] == "blocked"
    assert seen["own_origin_api"].startswith("404")  # the session's origin serves nothing of the console
    assert tokens_of(world, alice) == before  # and no credentialed write got through either


def test_an_administrator_following_a_link_to_a_session_page_never_runs_it(
        open_page: Callable[..., Page], world: Any, evil_session: dict[str, Any]) -> None:
    page = open_page("admin")
    response = page.goto(f"/s/{evil_session['id']}/index.html")
    assert response is not None and response.status == 403
    assert urlsplit(page.url).hostname == urlsplit(world.server.url).hostname
    assert page.title() != "done"
    assert "stolen" not in tokens_of(world, world.users["admin"])
