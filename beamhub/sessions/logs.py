"""A session's log: its program's output, which the agent writes as the user into their own space.

beamhub reads it as root for its owner and administrators, so the file is trusted only if it is a regular file owned
by the session's user, opened without following a symlink in its place: whatever else a user arranges there, they can
only ever show themselves (or an administrator) a file they own.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

LOG_DIR = Path(".beamhub") / "sessions"
"""Where in a user's home their sessions' logs live."""


def log_path(home: Path, session_id: str) -> Path:
    return home / LOG_DIR / f"{session_id}.log"


def _read_tail(path: Path, uid: int, limit: int) -> bytes:
    """Up to `limit` last bytes of a log file the user owns; nothing for a missing or untrusted one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
            return b""
        file.seek(max(info.st_size - limit, 0))
        return file.read(limit)


def read_tail(path: Path, uid: int, limit: int) -> str:
    """The last `limit` bytes of a session's log, its rotated half first where the current one is shorter."""
    current = _read_tail(path, uid, limit)
    rotated = _read_tail(path.with_name(path.name + ".1"), uid, limit - len(current)) if len(current) < limit else b""
    return (rotated + current).decode("utf-8", errors="replace")
