"""How a catalogued file is shown: the response model the API and the console share."""

from __future__ import annotations

from datetime import UTC, datetime

from beamhub.data.browsing.schemas import FileOut
from beamhub.data.models import DataFile


def file_out(record: DataFile) -> FileOut:
    return FileOut(path=record.relpath, size=record.size, sha256=record.sha256, tier=record.tier,
                   mtime=datetime.fromtimestamp(record.mtime_ns / 1e9, UTC))
