"""Host locks (beamhub.locks): only beamhub's own user can make, swap or hold their files."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from beamhub.locks import HOST_ACCOUNTS, HostLock

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder of root's that every user can reach (pytest's own folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="beamhub-locks-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _held_elsewhere(path: Path) -> subprocess.Popen[bytes]:
    """A process of user nobody holding the flock of `path` (as a local user could) until killed."""
    holder = subprocess.Popen(["runuser", "-u", "nobody", "--", "flock", str(path), "sleep", "30"])
    for _ in range(100):
        if subprocess.run(["flock", "-n", str(path), "true"]).returncode != 0:
            return holder
        threading.Event().wait(0.05)
    holder.kill()
    raise AssertionError("nobody could not take the lock")


def test_host_accounts_lock_is_in_a_folder_only_its_owner_writes() -> None:
    with HostLock(HOST_ACCOUNTS):
        folder = HOST_ACCOUNTS.parent.stat()
    assert folder.st_uid == os.geteuid() and not folder.st_mode & 0o022


@needs_root
def test_a_lock_file_another_user_made_first_is_refused_not_waited_on(reachable: Path) -> None:
    path = reachable / "accounts.lock"
    path.touch(mode=0o644)
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    holder = _held_elsewhere(path)
    try:
        with pytest.raises(PermissionError), HostLock(path):
            pass
    finally:
        holder.kill()
        holder.wait()


@needs_root
def test_a_lock_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "lock"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(PermissionError), HostLock(shared / "accounts.lock"):
        pass


def test_a_lock_file_others_may_open_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "accounts.lock"
    path.touch(mode=0o644)
    path.chmod(0o644)
    with pytest.raises(PermissionError), HostLock(path):
        pass


def test_the_lock_is_taken_in_turns_and_reentrant(tmp_path: Path) -> None:
    lock = HostLock(tmp_path / "locks" / "a.lock")
    with lock, lock:
        assert subprocess.run(["flock", "-n", str(lock.path), "true"]).returncode != 0
    assert subprocess.run(["flock", "-n", str(lock.path), "true"]).returncode == 0
