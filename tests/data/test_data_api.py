"""/api/v1/proposals on a real server: members list and download (ranges, zips) what the ACL lets them read;
a stranger learns nothing (404 on every route of the proposal); the DAQ registers with a data:ingest token;
a PI's member change reaches the kernel before the answer."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.accounts import read_as
from helpers.data import write

BIN = Path(sys.executable).parent
FILES = {"scan1/frames/f0001.h5": b"A" * 5000, "scan1/frames/f0002.h5": b"B" * 300, "scan1/meta.json": b"{}",
         "scan2/result.h5": b"result", "notes.txt": b"beamtime notes"}


@dataclass
class World:
    server: Any
    storage: Path
    proposal: dict[str, Any]
    tokens: dict[str, str]
    names: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        return self.server.client(self.tokens[who])

    @property
    def base(self) -> str:
        return f"/api/v1/proposals/{self.proposal['id']}"


def _user(server: Any, **fields: Any) -> tuple[str, str]:
    """A new user and their token; the server's shut-down removes the account."""
    return server.create_user(username=f"da{secrets.token_hex(3)}", **fields)


@pytest.fixture(scope="module")
def world(module_beamhub_factory: Any, module_database_url: str, uid_range_env: dict[str, str]) -> Iterator[World]:
    storage = Path(tempfile.mkdtemp(prefix="beamhub-api-"))
    storage.chmod(0o755)
    server = module_beamhub_factory(env={"BEAMHUB_DATABASE_URL": module_database_url, **uid_range_env,
                                         "BEAMHUB_STORAGE_ROOT": str(storage)})
    try:
        names, tokens = {}, {}
        for who in ("pi", "member", "stranger", "newcomer"):
            names[who], tokens[who] = _user(server)
        names["daq"], _ = _user(server, roles=["service"])
        tokens["daq"] = server.admin.post(f"/api/v1/users/{names['daq']}/tokens",
                                          json={"name": "daq", "scopes": ["data:ingest"]}).json()["token"]
        now = datetime.now(UTC)
        created = server.admin.post("/api/v1/proposals", json={
            "id": f"2024-{secrets.randbelow(10**5):05d}", "title": "Nanoprobe mapping", "beamline": "b2",
            "beamtime_start": (now - timedelta(days=1)).isoformat(), "beamtime_end": now.isoformat(),
            "members": [{"username": names["pi"], "role": "pi"}, {"username": names["member"]}]})
        assert created.status_code == 201, created.text
        proposal = created.json()
        for relpath, data in FILES.items():
            write(Path(proposal["path"]), relpath, data)
        yield World(server, storage, proposal, tokens, names)
    finally:
        shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(scope="module")
def registered(world: World) -> dict[str, Any]:
    response = world.client("daq").post(f"{world.base}/register", json={})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_daq_registers_with_an_ingest_token_and_a_re_run_changes_nothing(world: World,
                                                                             registered: dict[str, Any]) -> None:
    assert (registered["files"], registered["added"]) == (len(FILES), len(FILES))
    again = world.client("daq").post(f"{world.base}/register", json={"path": "scan1"}).json()
    assert (again["added"], again["unchanged"], again["hashed_bytes"]) == (0, 3, 0)
    assert world.client("member").post(f"{world.base}/register", json={}).status_code == 403
    assert world.client("daq").post(f"{world.base}/register", json={"path": "../../.."}).status_code == 422
    assert world.client("daq").get(world.base).status_code == 403  # an ingest token does not read


def test_a_member_lists_and_downloads_the_data(world: World, registered: dict[str, Any]) -> None:
    member = world.client("member")
    assert world.proposal["id"] in {p["id"] for p in member.get("/api/v1/proposals").json()["items"]}
    assert {d["name"]: d["file_count"] for d in member.get(f"{world.base}/datasets").json()["items"]} == {
        "scan1": 3, "scan2": 1}
    first = member.get(f"{world.base}/files", params={"limit": 2}).json()
    rest = member.get(f"{world.base}/files", params={"after": first["next"], "limit": 100}).json()
    assert [f["path"] for f in first["items"] + rest["items"]] == sorted(FILES) and rest["next"] is None
    assert [f["path"] for f in member.get(f"{world.base}/files", params={"prefix": "scan1/frames"}).json()["items"]] \
        == ["scan1/frames/f0001.h5", "scan1/frames/f0002.h5"]
    download = member.get(f"{world.base}/files/scan1/frames/f0001.h5")
    assert download.status_code == 200 and download.content == FILES["scan1/frames/f0001.h5"]
    part = member.get(f"{world.base}/files/scan1/frames/f0001.h5", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == b"A" * 10
    assert member.head(f"{world.base}/files/notes.txt").headers["content-length"] == str(len(FILES["notes.txt"]))


def test_a_dataset_streams_as_a_zip(world: World, registered: dict[str, Any]) -> None:
    response = world.client("member").get(f"{world.base}/datasets/scan1/zip")
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert {name: archive.read(name) for name in archive.namelist()} == {
        k: v for k, v in FILES.items() if k.startswith("scan1/")}
    frames = world.client("member").get(f"{world.base}/datasets/scan1/zip", params={"folder": "frames"})
    assert sorted(zipfile.ZipFile(io.BytesIO(frames.content)).namelist()) == [
        "scan1/frames/f0001.h5", "scan1/frames/f0002.h5"]


def test_a_stranger_learns_nothing_of_the_proposal(world: World, registered: dict[str, Any]) -> None:
    stranger = world.client("stranger")
    assert world.proposal["id"] not in {p["id"] for p in stranger.get("/api/v1/proposals").json()["items"]}
    for method, path in [("GET", ""), ("GET", "/datasets"), ("GET", "/files"), ("GET", "/files/notes.txt"),
                         ("HEAD", "/files/notes.txt"), ("GET", "/files/no-such-file"), ("GET", "/datasets/scan1/zip"),
                         ("PUT", f"/members/{world.names['stranger']}"),
                         ("DELETE", f"/members/{world.names['member']}")]:
        response = stranger.request(method, f"{world.base}{path}")
        assert response.status_code == 404, f"{method} {path} -> {response.status_code}"
    assert stranger.get(world.base).json()["detail"] == f"no proposal {world.proposal['id']}"
    assert stranger.get("/api/v1/proposals/2999-99999").json()["detail"] == "no proposal 2999-99999"


def test_request_paths_cannot_leave_the_proposal(world: World, registered: dict[str, Any]) -> None:
    member = world.client("member")
    for path in ["../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "scan1/%2e%2e/%2e%2e/x"]:
        response = member.get(f"{world.base}/files/{path}")
        assert response.status_code in (404, 422) and "detail" in response.json(), path
    assert member.get("/api/v1/proposals/not-an-id").status_code == 422
    assert member.get(f"{world.base}/files", params={"prefix": "../x"}).status_code == 422
    assert member.get(f"{world.base}/datasets/..%2Fscan1/zip").status_code in (404, 422)


def test_a_token_without_data_read_reaches_no_data(world: World) -> None:
    token = world.server.admin.post(f"/api/v1/users/{world.names['member']}/tokens",
                                    json={"name": "jobs", "scopes": ["sessions"]}).json()["token"]
    client = world.server.client(token)
    for path in ["/api/v1/proposals", world.base, f"{world.base}/files", f"{world.base}/files/notes.txt"]:
        assert client.get(path).status_code == 403, path


def test_the_pi_adds_and_removes_a_member_and_the_kernel_follows(world: World, registered: dict[str, Any]) -> None:
    pi, newcomer = world.client("pi"), world.client("newcomer")
    data = Path(world.proposal["path"]) / "scan2/result.h5"
    added = pi.put(f"{world.base}/members/{world.names['newcomer']}", json={"role": "member"})
    assert added.status_code == 200, added.text
    assert newcomer.get(f"{world.base}/files/scan2/result.h5").content == FILES["scan2/result.h5"]
    assert read_as(world.names["newcomer"], data) == "result"
    assert pi.put(f"{world.base}/members/{world.names['newcomer']}", json={"role": "pi"}).status_code == 403
    removed = pi.delete(f"{world.base}/members/{world.names['newcomer']}")
    assert removed.status_code == 200 and world.names["newcomer"] not in {m["username"]
                                                                           for m in removed.json()["members"]}
    assert read_as(world.names["newcomer"], data) == "PermissionError"
    assert newcomer.get(f"{world.base}/files/scan2/result.h5").status_code == 404


def test_long_work_streams_its_progress_to_a_client_that_asks(world: World, registered: dict[str, Any]) -> None:
    events = {"Accept": "text/event-stream"}
    newcomer = world.names["newcomer"]
    registration = stream_events(world.client("daq").post(f"{world.base}/register", json={"path": "scan1"},
                                                          headers=events))
    assert registration[0][0] == "progress" and {d["phase"] for _, d in registration[:-1]} <= {"acl", "files"}
    name, result = registration[-1]
    assert name == "result" and (result["files"], result["unchanged"], result["added"]) == (3, 3, 0)
    refused = world.client("member").post(f"{world.base}/register", json={}, headers=events)
    assert refused.status_code == 403 and "detail" in refused.json()
    added = stream_events(world.client("pi").put(f"{world.base}/members/{newcomer}", json={"role": "member"},
                                                 headers=events))
    assert added[0][0] == "progress" and {d["phase"] for _, d in added[:-1]} == {"acl"}
    assert added[-1][0] == "result" and newcomer in {m["username"] for m in added[-1][1]["members"]}
    removed = stream_events(world.client("pi").delete(f"{world.base}/members/{newcomer}", headers=events))
    assert removed[-1][0] == "result" and newcomer not in {m["username"] for m in removed[-1][1]["members"]}
    assert read_as(newcomer, Path(world.proposal["path"]) / "scan2/result.h5") == "PermissionError"


def stream_events(response: httpx.Response) -> list[tuple[str, Any]]:
    """The (event, JSON data) pairs of a text/event-stream answer, comments left out."""
    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    blocks = [dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
              for block in response.text.strip().split("\n\n")]
    return [(block["event"], json.loads(block["data"])) for block in blocks]


def test_an_admin_sees_who_can_read_a_path_over_the_api_and_the_cli(world: World,
                                                                     registered: dict[str, Any]) -> None:
    answer = world.server.admin.get(f"{world.base}/readers", params={"path": "scan1/meta.json"})
    assert answer.status_code == 200, answer.text
    readers = {u["username"]: u for u in answer.json()["users"]}
    assert {world.names["pi"], world.names["member"]} <= set(readers)
    assert world.names["stranger"] not in readers
    member = readers[world.names["member"]]
    assert member["via"] == f"user:{member['uid']}" and "web" in member["paths"] and "jupyter" in member["paths"]
    assert world.client("member").get(f"{world.base}/readers").status_code == 403
    assert world.server.admin.get(f"{world.base}/readers", params={"path": "../x"}).status_code == 422
    assert world.server.admin.get(f"{world.base}/readers", params={"path": "nothing"}).status_code == 404

    notes = Path(world.proposal["path"]) / "notes.txt"
    cli = subprocess.run([str(BIN / "beamhub"), "data", "who-can-read", str(notes)],
                         env={**world.server.env, "COLUMNS": "200"}, capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert world.names["member"] in cli.stdout and world.names["stranger"] not in cli.stdout
    outside = subprocess.run([str(BIN / "beamhub"), "data", "who-can-read", "/etc/passwd"], env=world.server.env,
                             capture_output=True, text=True)
    assert outside.returncode == 1 and "not under the storage root" in outside.stderr


def test_a_page_ending_on_a_file_the_member_may_not_read_does_not_name_it(world: World,
                                                                           registered: dict[str, Any]) -> None:
    hidden = Path(world.proposal["path"]) / "scan1/frames/f0002.h5"  # the third in path order
    subprocess.run(["setfacl", "-x", f"u:{world.names['member']}", str(hidden)], check=True)
    try:
        member, pages, after = world.client("member"), [], None
        while True:
            page = member.get(f"{world.base}/files", params={"limit": 3, **({"after": after} if after else {})}).json()
            pages.append(page)
            if (after := page["next"]) is None:
                break
        assert pages[0]["next"] == "scan1/meta.json"
        assert all("f0002" not in (page["next"] or "") for page in pages)
        assert [f["path"] for page in pages for f in page["items"]] == sorted(set(FILES) - {"scan1/frames/f0002.h5"})
    finally:
        subprocess.run(["setfacl", "-m", f"u:{world.names['member']}:r--", str(hidden)], check=True)


def test_a_hard_link_to_another_proposals_file_is_refused_by_the_register_route(world: World,
                                                                                registered: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    other = world.server.admin.post("/api/v1/proposals", json={
        "id": f"2024-{secrets.randbelow(10**5):05d}", "title": "the stranger's", "beamline": "b2",
        "beamtime_start": (now - timedelta(days=1)).isoformat(), "beamtime_end": now.isoformat(),
        "members": [{"username": world.names["stranger"], "role": "pi"}]}).json()
    secret = Path(other["path"]) / "secret.h5"
    secret.write_bytes(b"the stranger's frames")
    assert world.client("daq").post(f"/api/v1/proposals/{other['id']}/register", json={}).json()["refused"] == []
    link = Path(world.proposal["path"]) / "scan2/stolen.h5"
    os.link(secret, link)
    try:
        answer = world.client("daq").post(f"{world.base}/register", json={}).json()
        assert answer["refused"] == ["scan2/stolen.h5"] and answer["added"] == 0
        assert world.client("member").get(f"{world.base}/files/scan2/stolen.h5").status_code == 404
        assert "scan2/stolen.h5" not in {f["path"] for f in world.client("member").get(f"{world.base}/files").json()[
            "items"]}
        assert world.client("stranger").get(f"/api/v1/proposals/{other['id']}/files/secret.h5").content == \
            b"the stranger's frames"
        assert read_as(world.names["member"], link) == "PermissionError"
    finally:
        link.unlink()


def test_an_admin_migrates_the_proposal_over_the_api_and_members_still_download(world: World,
                                                                                 registered: dict[str, Any]) -> None:
    hot = Path(world.proposal["path"])
    assert world.client("pi").post(f"{world.base}/migrate", json={"to": "warm"}).status_code == 403
    assert world.server.admin.post(f"{world.base}/migrate", json={"to": "cold"}).status_code == 422
    moved = stream_events(world.server.admin.post(f"{world.base}/migrate", json={"to": "warm"},
                                                  headers={"Accept": "text/event-stream"}))
    assert moved[0][0] == "progress" and {d["phase"] for _, d in moved[:-1]} <= {"copy", "remove"}
    name, report = moved[-1]
    assert name == "result", report
    assert (report["from_tier"], report["to_tier"], report["switched"], report["kept"]) == ("hot", "warm", True, [])
    assert report["files_verified"] == report["files_removed"] == len(FILES) and not hot.exists()
    member = world.client("member")
    assert member.get(f"{world.base}/files/notes.txt").content == FILES["notes.txt"]
    assert {f["tier"] for f in member.get(f"{world.base}/files").json()["items"]} == {"warm"}
    assert world.server.admin.post(f"{world.base}/migrate", json={"to": "warm"}).json()["detail"] == \
        f"proposal {world.proposal['id']} is already on tier warm"
