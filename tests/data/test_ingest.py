"""Registration sets the ACLs the kernel enforces, records every regular file with its SHA-256, reads only what
changed on a re-run, survives being killed half-way; membership changes reach every file's ACL at once."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from beamhub.data.acl import AccessList, read_access
from beamhub.data.models import DataFile, Dataset, MemberRole
from beamhub.data.registration import ingest, scan
from helpers.accounts import read_as
from helpers.data import ADMIN, new_proposal, new_user, write

BIN = Path(sys.executable).parent


@pytest.fixture
def staff_group(services: Any) -> Iterator[Any]:
    """A beamline and its staff group."""
    beamline = f"bl{secrets.token_hex(3)}"
    group = services.groups.create(f"{beamline}-staff", by=ADMIN)
    yield group
    subprocess.run(["groupdel", group.name], capture_output=True)


def processes_with(variable: str) -> list[int]:
    """The processes whose environment holds `variable` ("NAME=value")."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and variable.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def catalogue(services: Any, proposal_id: str) -> dict[str, Any]:
    with services.db.session() as db:
        return {f.relpath: f for f in db.scalars(select(DataFile).where(DataFile.proposal_id == proposal_id))}


def catalogued(services: Any, proposal_id: str) -> int:
    """How many records the proposal has (no path is recorded twice)."""
    with services.db.session() as db:
        return db.scalar(select(func.count()).select_from(DataFile).where(DataFile.proposal_id == proposal_id))


def test_registration_sets_acls_on_files_and_default_acls_on_folders(services: Any, system_users: list[str],
                                                                     staff_group: Any) -> None:
    alice, bob = new_user(services, system_users), new_user(services, system_users)
    proposal = new_proposal(services, staff_group.name.removesuffix("-staff"), alice)
    folder = services.data.proposal_dir(proposal)
    data = write(folder, "scan1/frames/f0001.h5", b"detector frame")
    result = services.registration.register(ADMIN, proposal.id)
    assert (result.files, result.added, result.acl_paths) == (1, 1, 4)
    assert read_access(data) == read_access(folder / "scan1") == read_access(folder)
    assert read_access(data).users == {alice.uid} and read_access(data).groups == {staff_group.gid}
    facl = subprocess.run(["getfacl", "-cd", str(folder / "scan1")], capture_output=True, text=True).stdout
    assert f"user:{alice.uid}:r-x" in facl.replace(alice.username, str(alice.uid))
    assert read_as(alice.username, data) == "detector frame"
    assert read_as(bob.username, data) == "PermissionError"
    later = write(folder, "scan1/frames/f0002.h5", b"written after registration")
    assert read_as(alice.username, later) == "written after registration"  # inherited from the folder's default ACL


def test_checksums_are_recorded_and_a_re_run_reads_only_what_changed(services: Any, system_users: list[str],
                                                                     staff_group: Any) -> None:
    proposal = new_proposal(services, staff_group.name.removesuffix("-staff"))
    folder = services.data.proposal_dir(proposal)
    contents = {f"scan{i % 3}/f{i:03d}.h5": os.urandom(3000 + i) for i in range(30)}
    for name, data in contents.items():
        write(folder, name, data)
    first = services.registration.register(ADMIN, proposal.id)
    assert (first.added, first.hashed_bytes) == (30, sum(map(len, contents.values())))
    records = catalogue(services, proposal.id)
    assert {k: v.sha256 for k, v in records.items()} == {k: hashlib.sha256(v).hexdigest() for k, v in contents.items()}
    assert abs(records["scan0/f000.h5"].registered_at - datetime.now(UTC)) < timedelta(minutes=5)
    again = services.registration.register(ADMIN, proposal.id)
    assert (again.added, again.updated, again.unchanged, again.hashed_bytes) == (0, 0, 30, 0)
    (folder / "scan0/f000.h5").write_bytes(b"rewritten")
    (folder / "scan1/f001.h5").unlink()
    shutil.rmtree(folder / "scan2")
    changed = services.registration.register(ADMIN, proposal.id)
    assert (changed.updated, changed.removed, changed.hashed_bytes) == (1, 11, len(b"rewritten"))
    records = catalogue(services, proposal.id)
    assert len(records) == 19 and records["scan0/f000.h5"].sha256 == hashlib.sha256(b"rewritten").hexdigest()
    with services.db.session() as db:
        assert dict(db.execute(select(Dataset.name, Dataset.file_count).where(
            Dataset.proposal_id == proposal.id)).all()) == {"scan0": 10, "scan1": 9}


def test_worker_processes_register_a_tree_as_one_process_does(services: Any, system_users: list[str],
                                                              staff_group: Any, monkeypatch: Any) -> None:
    """Large registrations hand their batches to worker processes: same ACLs, same catalogue, same re-run."""
    alice = new_user(services, system_users)
    beamline = staff_group.name.removesuffix("-staff")
    contents = {f"scan{i % 3}/sub{i % 2}/f{i:03d}.h5": os.urandom(100 + i) for i in range(40)}
    contents |= {"scan0/big.h5": os.urandom(5 * 1024 * 1024 // 2), "scan1/big.h5": os.urandom(3 * 1024 * 1024)}
    registered = []
    for workers in (1, 2):
        proposal = new_proposal(services, beamline, alice)
        folder = services.data.proposal_dir(proposal)
        for name, data in contents.items():
            write(folder, name, data)
        (folder / "scan2/link.h5").symlink_to(folder / "scan0/big.h5")
        registered.append((proposal, folder, services.registration.register(ADMIN, proposal.id)))
        if workers == 1:  # from here on: batches of four entries, none in this process, two workers
            pools: list[Any] = []

            class RecordedPool(scan.ProcessPoolExecutor):
                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    pools.append(self)  # noqa: B023 (the pools of this round, on purpose)
                    super().__init__(*args, **kwargs)

            monkeypatch.setattr(scan, "ProcessPoolExecutor", RecordedPool)
            monkeypatch.setattr(scan, "INLINE_BATCHES", 0)
            monkeypatch.setattr(ingest, "SCAN_BATCH", 4)
            monkeypatch.setattr(ingest, "WRITE_BATCH", 8)
            monkeypatch.setattr(services.data.settings, "ingest_workers", 2)
    assert len(pools) == 1
    (inline, inline_folder, first), (parallel, folder, second) = registered
    assert (first.files, first.added, first.acl_paths) == (second.files, second.added, second.acl_paths) == (42, 42, 52)
    assert first.hashed_bytes == second.hashed_bytes == sum(map(len, contents.values()))
    assert {k: v.sha256 for k, v in catalogue(services, parallel.id).items()} == {
        k: hashlib.sha256(v).hexdigest() for k, v in contents.items()}
    for relpath in ("scan0/sub0/f000.h5", "scan1/big.h5", "scan2/sub1"):
        assert read_access(folder / relpath) == read_access(inline_folder / relpath)
        assert read_access(folder / relpath).users == {alice.uid}
    (folder / "scan1/sub1/f001.h5").write_bytes(b"rewritten")
    (folder / "scan2/sub0/f002.h5").unlink()
    again = services.registration.register(ADMIN, parallel.id)
    assert (again.unchanged, again.updated, again.removed, again.hashed_bytes) == (40, 1, 1, len(b"rewritten"))
    assert len(pools) == 2


def test_symlinks_are_neither_registered_nor_followed(services: Any, system_users: list[str],
                                                      staff_group: Any) -> None:
    alice = new_user(services, system_users)
    proposal = new_proposal(services, staff_group.name.removesuffix("-staff"), alice)
    folder = services.data.proposal_dir(proposal)
    outside = Path(tempfile.mkdtemp(prefix="beamhub-outside-"))
    try:
        secret = write(outside, "secret.txt", b"not data")
        write(folder, "scan1/real.h5", b"data")
        (folder / "scan1/link.h5").symlink_to(secret)
        (folder / "linked-dir").symlink_to(outside)
        services.registration.register(ADMIN, proposal.id)
        assert set(catalogue(services, proposal.id)) == {"scan1/real.h5"}
        assert read_access(secret).users == set()
    finally:
        shutil.rmtree(outside)


def test_a_scan_passes_over_what_an_entry_became_since_it_was_listed(tmp_path: Path) -> None:
    """A listed file swapped for a FIFO, a socket or a symlink before its batch runs: no hang, no ACL, no record."""
    write(tmp_path, "real.h5", b"data")
    os.mkfifo(tmp_path / "fifo.h5")
    (tmp_path / "link.h5").symlink_to(tmp_path / "real.h5")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock.h5"))
        result = scan.scan_batch(str(tmp_path), "", ["fifo.h5", "sock.h5", "link.h5", "gone.h5", "real.h5"],
                                 AccessList(users=frozenset({4242}), groups=frozenset()), {}, {})
    assert [(f.name, f.sha256) for f in result.files] == [("real.h5", hashlib.sha256(b"data").hexdigest())]
    assert result.acl_paths == 1
    assert read_access(tmp_path / "fifo.h5").users == set()


def test_membership_changes_reach_the_kernel_at_once(services: Any, system_users: list[str],
                                                     staff_group: Any) -> None:
    alice, carol = new_user(services, system_users), new_user(services, system_users)
    proposal = new_proposal(services, staff_group.name.removesuffix("-staff"), alice)
    folder = services.data.proposal_dir(proposal)
    files = [write(folder, f"scan{i % 4}/f{i}.h5", b"frame") for i in range(40)]
    services.registration.register(ADMIN, proposal.id)
    assert read_as(carol.username, files[7]) == "PermissionError"
    reported: list[int] = []
    services.data.set_member(ADMIN, proposal.id, carol.username, MemberRole.member, reported.append)
    assert reported[-1] == 45 and read_as(carol.username, files[7]) == "frame"
    services.data.remove_member(ADMIN, proposal.id, alice.username)
    assert read_as(alice.username, files[7]) == "PermissionError"
    assert all(read_access(f).users == {carol.uid} for f in files)


def test_a_killed_registration_is_completed_by_running_it_again(services: Any, env: dict[str, str],
                                                                staff_group: Any) -> None:
    proposal = new_proposal(services, staff_group.name.removesuffix("-staff"))
    folder = services.data.proposal_dir(proposal)
    total = 20000  # large enough that it is still running when it is seen half-way
    block = os.urandom(4096)
    for i in range(total):
        write(folder, f"scan{i % 5}/f{i:05d}.h5", i.to_bytes(4, "little") + block)
    command = [str(BIN / "beamhub"), "data", "register", str(folder), "--proposal", proposal.id]
    marker = f"BEAMHUB_STATE_DIR={env['BEAMHUB_STATE_DIR']}"
    run = subprocess.Popen(command, env={**os.environ, **env, "BEAMHUB_INGEST_WORKERS": "2"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        if catalogued(services, proposal.id) and len(processes_with(marker)) >= 3:  # it, the forkserver, a worker
            break
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert 0 < catalogued(services, proposal.id) < total, "the registration was not caught half-way"
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_with(marker), "worker processes outlived the killed registration"
    rerun = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert not processes_with(marker)
    records = catalogue(services, proposal.id)
    assert len(records) == total and all(r.sha256 for r in records.values())
    assert catalogued(services, proposal.id) == total
    with services.db.session() as db:
        assert db.scalar(select(func.sum(Dataset.file_count)).where(Dataset.proposal_id == proposal.id)) == total
