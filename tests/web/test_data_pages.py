"""The data pages: a member browses their proposal and downloads (and resumes) with the login cookie; a stranger sees
an empty list and a 404 page; every data page speaks Chinese."""

from __future__ import annotations

import io
import re
import secrets
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.data import write

FILES = {"scan1/frames/f0001.h5": b"A" * 5000, "scan1/meta.json": b"{}", "notes.txt": b"beamtime notes"}


@pytest.fixture(scope="module")
def hub(module_beamhub_factory: Any, uid_range_env: dict[str, str], storage: Path) -> Any:
    """The module's server, with its data under `storage`."""
    return module_beamhub_factory(env={**uid_range_env, "BEAMHUB_STORAGE_ROOT": str(storage)})


@pytest.fixture(scope="module")
def proposal(hub: Any, new_user: Callable[[], str]) -> dict[str, Any]:
    """A proposal of one member, its files written and registered as the DAQ does."""
    member = new_user()
    now = datetime.now(UTC)
    created = hub.admin.post("/api/v1/proposals", json={
        "id": f"2025-{secrets.randbelow(10**5):05d}", "title": "Operando battery cycling", "beamline": "b7",
        "beamtime_start": (now - timedelta(days=1)).isoformat(), "beamtime_end": now.isoformat(),
        "members": [{"username": member, "role": "pi"}]})
    assert created.status_code == 201, created.text
    body = created.json()
    for relpath, data in FILES.items():
        write(Path(body["path"]), relpath, data)
    registered = hub.admin.post(f"/api/v1/proposals/{body['id']}/register", json={})
    assert registered.status_code == 200, registered.text
    return {"id": body["id"], "member": member}


def download_links(page: httpx.Response) -> dict[str, str]:
    """The download links of a files page, by the file's path."""
    return dict(re.findall(r'<tr data-file="([^"]+)">.*?<a class="button" href="([^"]+)" download>', page.text, re.S))


def test_a_member_finds_their_proposal_its_datasets_and_files(browser: Any, proposal: dict[str, Any]) -> None:
    client = browser(proposal["member"])
    listing = client.get("/data")
    assert listing.status_code == 200 and f'href="/data/{proposal["id"]}"' in listing.text
    assert "Operando battery cycling" in listing.text and "principal investigator" in listing.text
    page = client.get(f"/data/{proposal['id']}")
    assert page.status_code == 200 and 'data-dataset="scan1"' in page.text
    assert f'href="/api/v1/proposals/{proposal["id"]}/datasets/scan1/zip" download' in page.text
    top = client.get(f"/data/{proposal['id']}/files")
    assert 'data-folder="scan1"' in top.text and 'data-file="notes.txt"' in top.text and "14 B" in top.text
    folder = client.get(f"/data/{proposal['id']}/files", params={"prefix": "scan1"})
    assert 'data-folder="scan1/frames"' in folder.text and 'data-file="scan1/meta.json"' in folder.text
    assert 'data-file="notes.txt"' not in folder.text
    frames = client.get(f"/data/{proposal['id']}/files", params={"prefix": "scan1/frames"})
    row = frames.text.split('data-file="scan1/frames/f0001.h5"')[1].split("</tr>")[0]
    assert "4.9 KiB" in row and str(datetime.now(UTC).year) in row


def test_a_member_downloads_a_file_and_resumes_it_with_the_login_cookie(browser: Any,
                                                                      proposal: dict[str, Any]) -> None:
    client = browser(proposal["member"])
    frames = client.get(f"/data/{proposal['id']}/files", params={"prefix": "scan1/frames"})
    link = download_links(frames)["scan1/frames/f0001.h5"]
    assert link == f"/api/v1/proposals/{proposal['id']}/files/scan1/frames/f0001.h5"
    whole = client.get(link)
    assert whole.status_code == 200 and whole.content == FILES["scan1/frames/f0001.h5"]
    rest = client.get(link, headers={"Range": "bytes=4990-"})
    assert rest.status_code == 206 and rest.content == b"A" * 10
    archive = client.get(f"/api/v1/proposals/{proposal['id']}/datasets/scan1/zip")
    assert archive.status_code == 200
    assert sorted(zipfile.ZipFile(io.BytesIO(archive.content)).namelist()) == [
        "scan1/frames/f0001.h5", "scan1/meta.json"]


def test_a_stranger_sees_what_to_do_and_a_404_page_for_the_proposal(browser: Any, new_user: Callable[[], str],
                                                                   proposal: dict[str, Any]) -> None:
    client = browser(new_user())
    listing = client.get("/data")
    assert listing.status_code == 200 and proposal["id"] not in listing.text
    assert "You are not a member of any proposal yet" in listing.text
    for path in (f"/data/{proposal['id']}", f"/data/{proposal['id']}/files?prefix=scan1"):
        page = client.get(path)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "Not found" in page.text and "Operando" not in page.text
    assert client.get(f"/api/v1/proposals/{proposal['id']}/files/notes.txt").status_code == 404
    assert client.get("/data/not-a-proposal").status_code == 404


def test_a_folder_that_leaves_the_proposal_is_a_readable_refusal(browser: Any, proposal: dict[str, Any]) -> None:
    page = browser(proposal["member"]).get(f"/data/{proposal['id']}/files", params={"prefix": "../../etc"})
    assert page.status_code == 422
    assert "This request cannot be done" in page.text and "path must not contain" in page.text


def test_an_empty_folder_says_where_to_go(browser: Any, proposal: dict[str, Any]) -> None:
    page = browser(proposal["member"]).get(f"/data/{proposal['id']}/files", params={"prefix": "no-such-folder"})
    assert page.status_code == 200 and "This folder holds no registered files" in page.text
    assert f'href="/data/{proposal["id"]}">Back to the proposal' in page.text


def test_the_data_pages_speak_chinese(browser: Any, proposal: dict[str, Any]) -> None:
    client = browser(proposal["member"])
    client.cookies.set("beamhub-lang", "zh_CN")
    for path, heading in [("/data", "我的数据"), (f"/data/{proposal['id']}", f"课题 {proposal['id']}"),
                          (f"/data/{proposal['id']}/files", f"课题 {proposal['id']} 的文件")]:
        page = client.get(path)
        assert page.status_code == 200 and f"<h1>{heading}</h1>" in page.text, path
    assert "下载" in client.get(f"/data/{proposal['id']}/files?prefix=scan1").text
