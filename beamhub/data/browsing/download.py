"""HTTP answers that hand out files: one file (HEAD, ETag, Range, If-Range, 304) or a streamed zip.

Access is decided before these are called; they only serve the real path they are given. A
file is opened once, here, with O_NOFOLLOW, and refused unless the kernel says the open file
is that very path: a path swapped for a symlink after the decision is not served. Behind
nginx the answer is an empty one with X-Accel-Redirect, and nginx sends the bytes (and does
Range and conditional requests itself, from the same file).
"""

from __future__ import annotations

import mimetypes
import os
import stat
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from beamhub.data.paths import check_relative, is_inside
from beamhub.errors import NotFound
from beamhub.metrics import DATA_BYTES

CHUNK_SIZE = 1024 * 1024
ZIP_MEDIA_TYPE = "application/zip"
# The catalogue decides access per request: no shared cache may keep a copy, a browser must revalidate.
CACHE_CONTROL = "private, no-cache"


def file_response(request: Request, path: Path, *, accel_root: Path | None = None, accel_prefix: str | None = None,
                  filename: str | None = None) -> Response:
    """GET or HEAD of the regular file at the real path `path`, or its X-Accel-Redirect when `accel_prefix` is set."""
    name = filename or path.name
    headers = {"content-type": _media_type(name), "content-disposition": content_disposition(name),
               "cache-control": CACHE_CONTROL, "x-content-type-options": "nosniff"}
    fd = open_regular(path)
    sending = False
    try:
        if accel_prefix is not None:
            DATA_BYTES.inc(os.fstat(fd).st_size if request.method == "GET" else 0)
            return Response(headers={**headers, "x-accel-redirect": accel_uri(path, accel_root, accel_prefix)})
        response = _direct(request, fd, headers)
        sending = isinstance(response, FileBody)
        return response
    finally:
        if not sending:
            os.close(fd)


def _direct(request: Request, fd: int, headers: dict[str, str]) -> Response:
    """The answer beamhub sends itself: 304, 416, the headers of a HEAD, or the (partial) body."""
    info = os.fstat(fd)
    etag = entity_tag(info)
    headers |= {"etag": etag, "last-modified": formatdate(info.st_mtime, usegmt=True), "accept-ranges": "bytes"}
    if _not_modified(request.headers, etag, info.st_mtime):
        return Response(status_code=304, headers={k: headers[k] for k in ("etag", "last-modified", "cache-control")})
    try:
        span = _requested_span(request.headers, info.st_size, etag, info.st_mtime)
    except _Unsatisfiable:
        return Response(status_code=416, headers={"content-range": f"bytes */{info.st_size}",
                                                  "cache-control": CACHE_CONTROL})
    start, end = span or (0, info.st_size)
    if span is not None:
        headers["content-range"] = f"bytes {start}-{end - 1}/{info.st_size}"
    headers["content-length"] = str(end - start)
    status = 200 if span is None else 206
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    DATA_BYTES.inc(end - start)
    return FileBody(fd, start, end, status, headers)


def zip_response(entries: Iterable[tuple[str, Path]], filename: str) -> StreamingResponse:
    """A zip of (name in archive, file path), stored and zip64, streamed as it is made in constant memory."""
    return StreamingResponse(zip_stream(entries), media_type=ZIP_MEDIA_TYPE,
                             headers={"content-disposition": content_disposition(filename),
                                      "cache-control": CACHE_CONTROL, "x-content-type-options": "nosniff"})


def zip_stream(entries: Iterable[tuple[str, Path]]) -> Iterator[bytes]:
    """The bytes of a stored zip64 archive of `entries`, a chunk at a time; no seek, no temp file.

    A file that is gone or swapped for a symlink by the time its turn comes ends the stream with an error:
    the client sees a broken download, never an archive silently missing a file.
    """
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True)  # type: ignore[arg-type]
    with archive:
        for name, path in entries:
            yield from _add_file(archive, sink, name, path)
    yield sink.take()


def tree_entries(folder: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """(prefix/relative name, path) of every regular file below `folder`, in name order; symlinks are skipped."""
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        subdirs.sort()
        base = Path(directory)
        for name in sorted(files):
            path = base / name
            if stat.S_ISREG(os.lstat(path).st_mode):
                yield "/".join([prefix, *path.relative_to(folder).parts]).lstrip("/"), path


def entity_tag(info: os.stat_result) -> str:
    """A strong ETag that changes whenever the file is replaced (inode), resized or rewritten (mtime in ns)."""
    return f'"{info.st_ino:x}-{info.st_size:x}-{info.st_mtime_ns:x}"'


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name as RFC 6266 / RFC 8187 filename*."""
    fallback = "".join(c if " " <= c < "\x7f" and c not in '"\\%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def accel_uri(path: Path, accel_root: Path | None, accel_prefix: str) -> str:
    """The internal URI nginx serves `path` from: the prefix plus the URL-quoted path below the root."""
    if accel_root is None:
        raise ValueError("accel_prefix needs accel_root: the directory the internal location aliases")
    root = Path(os.path.realpath(accel_root))
    if not is_inside(root, path) or path == root:
        raise NotFound("no such file: %(file)s", file=path.name)
    return accel_prefix.rstrip("/") + "/" + quote(path.relative_to(root).as_posix(), safe="/")


class FileBody(Response):
    """The bytes [start, end) of an open file; stops reading when the client goes away; closes the file."""

    def __init__(self, fd: int, start: int, end: int, status_code: int, headers: Mapping[str, str]) -> None:
        self.fd, self.start, self.end = fd, start, end
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    await self._send_body(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()
        finally:
            os.close(self.fd)

    async def _send_body(self, send: Send) -> None:
        offset = self.start
        while offset < self.end:
            chunk = await anyio.to_thread.run_sync(os.pread, self.fd, min(CHUNK_SIZE, self.end - offset), offset)
            if not chunk:
                raise RuntimeError("file shrank while it was being sent")
            offset += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": offset < self.end})
        if self.start == self.end:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class _Sink:
    """A write-only, unseekable stream: zipfile writes into it, the generator takes what was written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        """Nothing to flush: take() hands the data on."""

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def _add_file(archive: zipfile.ZipFile, sink: _Sink, name: str, path: Path) -> Iterator[bytes]:
    fd = open_regular(path)
    with os.fdopen(fd, "rb", buffering=0) as source:
        info = os.fstat(fd)
        entry = zipfile.ZipInfo("/".join(check_relative(name)), _zip_time(info.st_mtime))
        entry.file_size = info.st_size
        entry.external_attr = (stat.S_IFREG | stat.S_IMODE(info.st_mode)) << 16
        with archive.open(entry, "w") as target:
            while chunk := source.read(CHUNK_SIZE):
                target.write(chunk)
                yield sink.take()
    yield sink.take()


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """A zip entry's local time; zip cannot say anything before 1980."""
    return max(time.localtime(mtime)[:6], (1980, 1, 1, 0, 0, 0))  # type: ignore[return-value]


def open_regular(path: Path) -> int:
    """A read-only descriptor of the regular file that is `path` now, no symlink on the way; else NotFound."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise NotFound("no such file: %(file)s", file=path.name) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.readlink(f"/proc/self/fd/{fd}") != os.fspath(path):
            raise NotFound("no such file: %(file)s", file=path.name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _media_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _not_modified(headers: Mapping[str, str], etag: str, mtime: float) -> bool:
    """If-None-Match (weak comparison), else If-Modified-Since, says the client's copy is current."""
    if (tags := headers.get("if-none-match")) is not None:
        return any(tag.strip() in ("*", etag, "W/" + etag) for tag in tags.split(","))
    since = _http_date(headers.get("if-modified-since"))
    return since is not None and int(mtime) <= since


class _Unsatisfiable(Exception):
    """The range asked starts past the end of the file (416)."""


def _requested_span(headers: Mapping[str, str], size: int, etag: str, mtime: float) -> tuple[int, int] | None:
    """[start, end) of the one valid, current byte range asked; None to send the whole file."""
    requested = headers.get("range")
    if requested is None or not _if_range_holds(headers.get("if-range"), etag, mtime):
        return None
    unit, _, spec = requested.partition("=")
    first, dash, last = spec.strip().partition("-")
    # Other units, several ranges or bad syntax: RFC 9110 lets a server ignore Range and send it all.
    if unit.strip().lower() != "bytes" or not dash or not (first or last) \
            or not all(part.isdigit() for part in (first, last) if part):
        return None
    if not first:
        if int(last) == 0 or size == 0:
            raise _Unsatisfiable
        return max(size - int(last), 0), size
    start, end = int(first), (int(last) + 1 if last else size)
    if start >= size:
        raise _Unsatisfiable
    return (start, min(end, size)) if end > start else None


def _if_range_holds(condition: str | None, etag: str, mtime: float) -> bool:
    """No If-Range, or one naming this very version (strong ETag, or exactly its Last-Modified date)."""
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        return condition == etag
    return _http_date(condition) == int(mtime)


def _http_date(value: str | None) -> int | None:
    """Seconds since the epoch of an HTTP date; None if absent or not a date."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp())
