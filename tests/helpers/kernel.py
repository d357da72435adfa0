"""What the kernel itself answers: access(2) run under a caller's UID and GIDs."""

from __future__ import annotations

import os

from beamhub.data.access import Caller


def kernel_access(caller: Caller, queries: list[tuple[str, int]]) -> list[bool]:
    """access(2) for each (path, mode), in one child process running as caller (real = effective IDs)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            os.setgroups(sorted(caller.gids))
            primary = min(caller.gids)
            os.setresgid(primary, primary, primary)
            os.setresuid(caller.uid, caller.uid, caller.uid)
            os.write(write_end, bytes(os.access(path, mode) for path, mode in queries))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answers:
        answer = answers.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and len(answer) == len(queries)
    return [bool(byte) for byte in answer]
