"""Downloads from a real uvicorn: validators, Range, resume with curl and wget, and streamed zip archives."""

from __future__ import annotations

import io
import os
import resource
import shutil
import subprocess
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from beamhub.app import add_error_handlers
from beamhub.data.browsing.download import file_response, tree_entries, zip_response, zip_stream
from beamhub.data.paths import resolve_inside
from beamhub.errors import Invalid, NotFound

SIZE = 3 * 1024 * 1024 + 12345  # several read chunks and a ragged tail
GiB = 1024**3
BIG = 4 * GiB + 4096



def download_app(root: Path) -> FastAPI:
    """What a catalogue route does once access is decided: resolve, then answer with the file or a zip."""
    app = FastAPI()
    add_error_handlers(app)


    @app.api_route("/files/{path:path}", methods=["GET", "HEAD"])
    def get_file(path: str, request: Request) -> Response:
        return file_response(request, resolve_inside(root, path))

    @app.get("/zip/{path:path}")
    def get_zip(path: str) -> Response:
        folder = resolve_inside(root, path)
        return zip_response(tree_entries(folder, folder.name), f"{folder.name}.zip")

    return app


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("storage")
    (root / "p1" / "raw" / "deep").mkdir(parents=True)
    (root / "p1" / "scan.bin").write_bytes(os.urandom(SIZE))
    (root / "p1" / "raw" / "a.h5").write_bytes(b"A" * 1000)
    (root / "p1" / "raw" / "deep" / "b.txt").write_text("bee\n")
    (root / "p1" / "empty").write_bytes(b"")
    (root / "p1" / "Übersicht 100% ?.txt").write_text("unicode name\n")
    return root


@pytest.fixture(scope="module")
def url(root: Path, serve_app: Callable[[FastAPI], str]) -> str:
    return f"http://{serve_app(download_app(root))}"


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


def scan(root: Path) -> bytes:
    return (root / "p1" / "scan.bin").read_bytes()


def test_get_sends_the_file_with_its_validators(client: httpx.Client, root: Path) -> None:
    response = client.get("/files/p1/scan.bin")
    assert response.status_code == 200
    assert response.content == scan(root)
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"')
    assert response.headers["last-modified"] == formatdate((root / "p1" / "scan.bin").stat().st_mtime, usegmt=True)
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["cache-control"] == "private, no-cache"


def test_head_answers_the_same_headers_without_a_body(client: httpx.Client) -> None:
    head, get = client.head("/files/p1/scan.bin"), client.get("/files/p1/scan.bin")
    assert head.status_code == 200 and head.content == b""
    for name in ("content-length", "etag", "last-modified", "accept-ranges", "content-disposition"):
        assert head.headers[name] == get.headers[name]


def test_an_empty_file_downloads_as_empty(client: httpx.Client) -> None:
    response = client.get("/files/p1/empty")
    assert (response.status_code, response.content, response.headers["content-length"]) == (200, b"", "0")


def test_a_unicode_name_is_kept_in_the_rfc_6266_filename(client: httpx.Client) -> None:
    disposition = client.get("/files/p1/Übersicht 100%25 %3F.txt").headers["content-disposition"]
    assert 'filename="' in disposition and disposition.isascii()
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Übersicht 100% ?.txt"


@pytest.mark.parametrize(("asked", "start", "end"), [
    ("bytes=100-199", 100, 200), ("bytes=1048570-1048580", 1048570, 1048581), ("bytes=-10", SIZE - 10, SIZE),
    (f"bytes={SIZE - 5}-", SIZE - 5, SIZE), (f"bytes=0-{SIZE * 2}", 0, SIZE), ("bytes=-99999999", 0, SIZE),
])
def test_a_range_answers_206_with_exactly_those_bytes(client: httpx.Client, root: Path, asked: str, start: int,
                                                      end: int) -> None:
    response = client.get("/files/p1/scan.bin", headers={"Range": asked})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert response.content == scan(root)[start:end]


def test_a_range_past_the_end_is_416_with_the_size(client: httpx.Client) -> None:
    for path, size in (("p1/scan.bin", SIZE), ("p1/empty", 0)):
        response = client.get(f"/files/{path}", headers={"Range": f"bytes={size}-"})
        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("asked", ["bytes=0-1,5-6", "lines=1-2", "bytes=abc", "bytes=9-3"])
def test_ranges_it_does_not_serve_get_the_whole_file(client: httpx.Client, root: Path, asked: str) -> None:
    response = client.get("/files/p1/scan.bin", headers={"Range": asked})
    assert response.status_code == 200 and response.content == scan(root)


def test_if_range_resumes_only_the_same_version(client: httpx.Client, root: Path) -> None:
    first = client.head("/files/p1/scan.bin").headers
    same_tag = client.get("/files/p1/scan.bin", headers={"Range": "bytes=10-19", "If-Range": first["etag"]})
    same_date = client.get("/files/p1/scan.bin",
                           headers={"Range": "bytes=10-19", "If-Range": first["last-modified"]})
    stale_tag = client.get("/files/p1/scan.bin", headers={"Range": "bytes=10-19", "If-Range": '"0-0-0"'})
    old_date = client.get("/files/p1/scan.bin",
                          headers={"Range": "bytes=10-19", "If-Range": formatdate(0, usegmt=True)})
    weak_tag = client.get("/files/p1/scan.bin", headers={"Range": "bytes=10-19", "If-Range": "W/" + first["etag"]})
    assert (same_tag.status_code, same_tag.content) == (206, scan(root)[10:20])
    assert (same_date.status_code, same_date.content) == (206, scan(root)[10:20])
    for whole in (stale_tag, old_date, weak_tag):
        assert (whole.status_code, whole.content) == (200, scan(root))


def test_a_rewritten_file_gets_a_new_etag_so_a_resume_starts_over(client: httpx.Client, root: Path) -> None:
    path = root / "p1" / "changing.bin"
    path.write_bytes(b"1" * 100)
    old = client.head("/files/p1/changing.bin").headers["etag"]
    path.write_bytes(b"2" * 100)
    response = client.get("/files/p1/changing.bin", headers={"Range": "bytes=50-", "If-Range": old})
    assert response.headers["etag"] != old
    assert (response.status_code, response.content) == (200, b"2" * 100)


def test_a_current_copy_gets_304_without_a_body(client: httpx.Client) -> None:
    headers = client.head("/files/p1/scan.bin").headers
    for asked in ({"If-None-Match": headers["etag"]}, {"If-None-Match": f'"x", W/{headers["etag"]}'},
                  {"If-None-Match": "*"}, {"If-Modified-Since": headers["last-modified"]}):
        response = client.get("/files/p1/scan.bin", headers=asked)
        assert (response.status_code, response.content) == (304, b"")
        assert response.headers["etag"] == headers["etag"]
    changed = client.get("/files/p1/scan.bin", headers={"If-None-Match": '"other"',
                                                        "If-Modified-Since": headers["last-modified"]})
    assert changed.status_code == 200


def test_folders_missing_files_and_escapes_are_refused(client: httpx.Client, url: str) -> None:
    assert client.get("/files/p1/raw").status_code == 404
    assert client.get("/files/p1/nothing").status_code == 404
    assert client.get("/files/p1/%252e%252e/scan.bin").status_code == 422
    for raw in ("/files/../../../../etc/passwd", "/files/p1/..%2f..%2f..%2f..%2fetc/passwd"):
        out = subprocess.run(["curl", "-s", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", url + raw],
                             capture_output=True, text=True, check=True).stdout
        assert "root:" not in out and out.rsplit("\n", 1)[1] in ("404", "422")


def test_a_path_swapped_for_a_symlink_after_the_decision_is_not_served(root: Path) -> None:
    """The catalogue decided on a real path; if a symlink sits there by the time the file opens, nothing is sent."""
    request = Request({"type": "http", "method": "GET", "headers": [], "query_string": b""})
    (root / "p1" / "now-a-link").symlink_to("/etc/passwd")
    (root / "p1" / "dir-link").symlink_to(root / "p1" / "raw")
    try:
        for decided in (root / "p1" / "now-a-link", root / "p1" / "dir-link" / "a.h5"):
            with pytest.raises(NotFound):
                file_response(request, decided)
    finally:
        (root / "p1" / "now-a-link").unlink()
        (root / "p1" / "dir-link").unlink()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_continue_resumes_a_partial_download_to_identical_bytes(url: str, root: Path, tmp_path: Path) -> None:
    partial = tmp_path / "scan.bin"
    partial.write_bytes(scan(root)[:1_500_000])
    subprocess.run(["curl", "-sSf", "-C", "-", "-o", str(partial), f"{url}/files/p1/scan.bin"], check=True,
                   timeout=60)
    assert partial.read_bytes() == scan(root)


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_wget_continue_resumes_a_partial_download_to_identical_bytes(url: str, root: Path, tmp_path: Path) -> None:
    partial = tmp_path / "scan.bin"
    partial.write_bytes(scan(root)[:2_000_001])
    subprocess.run(["wget", "-q", "-c", "-O", str(partial), f"{url}/files/p1/scan.bin"], check=True, timeout=60)
    assert partial.read_bytes() == scan(root)


def test_a_client_that_goes_away_leaves_no_open_file(url: str, root: Path) -> None:
    big = root / "p1" / "big.sparse"
    with open(big, "wb") as sparse:
        sparse.truncate(GiB)
    before = len(os.listdir("/proc/self/fd"))
    with httpx.stream("GET", f"{url}/files/p1/big.sparse", timeout=60) as response:
        next(response.iter_raw())
    deadline = time.monotonic() + 10
    while len(os.listdir("/proc/self/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    big.unlink()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_folder_streams_as_a_zip_that_zipfile_reads(client: httpx.Client, root: Path) -> None:
    response = client.get("/zip/p1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert "filename*=UTF-8''p1.zip" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        files = {p.relative_to(root).as_posix() for p in (root / "p1").rglob("*") if p.is_file()}
        assert set(archive.namelist()) == files
        for name in files:
            assert archive.read(name) == (root / name).read_bytes()
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


def test_a_folder_streamed_as_a_zip_passes_unzip(client: httpx.Client, tmp_path: Path) -> None:
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed (Debian package unzip): the zip was not tested with it")
    response = client.get("/zip/p1")
    assert response.status_code == 200
    saved = tmp_path / "p1.zip"
    saved.write_bytes(response.content)
    check = subprocess.run(["unzip", "-tq", str(saved)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_more_than_65535_entries_get_a_zip64_directory(root: Path) -> None:
    count = 65_536 + 7
    data = b"".join(zip_stream((f"many/{i}.txt", root / "p1" / "raw" / "deep" / "b.txt") for i in range(count)))
    assert b"PK\x06\x06" in data[-200:]  # zip64 end of central directory record
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert len(archive.infolist()) == count
        assert archive.read(f"many/{count - 1}.txt") == b"bee\n"


def test_names_that_would_escape_when_unpacked_are_refused(root: Path) -> None:
    for name in ("../evil", "/etc/cron.d/x", "a/../../b"):
        with pytest.raises(Invalid):
            b"".join(zip_stream([(name, root / "p1" / "raw" / "a.h5")]))


@pytest.fixture(scope="module")
def huge_zip(root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A folder of a sparse file over 4 GiB and a small one after it, streamed as a zip into a sparse file once:
    (the zip, its size, how much this process's peak memory grew in KiB while streaming)."""
    folder = root / "huge"
    folder.mkdir()
    with open(folder / "frames.raw", "wb") as sparse:
        sparse.truncate(BIG)
    (folder / "later.txt").write_text("later than the big one\n")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    received = tmp_path_factory.mktemp("huge") / "huge.zip"
    try:
        size = _save_sparsely(zip_stream(tree_entries(folder, "huge")), received)
    finally:
        shutil.rmtree(folder)
    return received, size, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before


def test_a_zip_over_4_gib_is_valid_zip64_made_in_constant_memory(huge_zip: tuple[Path, int, int]) -> None:
    received, size, peak_growth_kib = huge_zip
    assert size > BIG
    assert peak_growth_kib < 100 * 1024, f"memory grew by {peak_growth_kib} KiB while streaming"
    with zipfile.ZipFile(received) as archive:
        frames = archive.getinfo("huge/frames.raw")
        assert (frames.file_size, frames.CRC) == (BIG, _crc_of_zeros(BIG))
        assert archive.getinfo("huge/later.txt").header_offset > 4 * GiB
        assert archive.read("huge/later.txt") == b"later than the big one\n"


def test_a_zip_over_4_gib_passes_unzip(huge_zip: tuple[Path, int, int]) -> None:
    if shutil.which("unzip") is None:
        pytest.skip("unzip is not installed (Debian package unzip): the zip64 archive was not tested with it")
    check = subprocess.run(["unzip", "-tq", str(huge_zip[0]), "huge/later.txt"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def _save_sparsely(chunks: Iterator[bytes], target: Path) -> int:
    """Write `chunks` into `target`, leaving holes where they are zeros; returns the byte count."""
    size = 0
    with open(target, "wb") as out:
        for chunk in chunks:
            if chunk == bytes(len(chunk)):
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
            size += len(chunk)
        out.truncate(size)
    return size


def _crc_of_zeros(size: int) -> int:
    block, crc = bytes(1024 * 1024), 0
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    return zlib.crc32(bytes(size % len(block)), crc)
