"""What a system account gets: reading a file as that user, the way the kernel decides it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

UserMaker = Callable[..., tuple[str, str]]
"""The `make_user` fixture (tests/conftest.py): make_user(**fields) -> (username, API token)."""

PROBE = "import sys\ntry: print(open(sys.argv[1]).read(), end='')\nexcept OSError as e: print(type(e).__name__, end='')"


def read_as(username: str, path: Path) -> str:
    """What a process of the user (their UID, private group and groups) reads from the file, or the error it gets."""
    result = subprocess.run(["setpriv", "--reuid", username, "--regid", username, "--init-groups",
                             "/usr/bin/python3", "-c", PROBE, str(path)], capture_output=True, text=True)
    return result.stdout
