"""Watch mode registers each file the DAQ closes, in old and brand-new folders or renamed into place, within
seconds: checksum recorded, ACL set so members read it and nobody else does; never a file still being written;
what arrived while it was stopped, at its restart; everything again after the kernel dropped events."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from beamhub.data.models import DataFile
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.data.registration.ingest import RegisterResult
from beamhub.data.registration.watch import ProposalWatcher, WatchSummary
from beamhub.identity.principal import Principal
from helpers.accounts import read_as
from helpers.waiting import wait_for

ADMIN = Principal(username="admin-test", user_id=None, roles=frozenset({"admin"}))
BIN = Path(sys.executable).parent


@pytest.fixture
def people(services: Any, system_users: list[str]) -> Iterator[tuple[Any, Any, str]]:
    """A member, a stranger (both real system users) and a beamline whose staff group exists."""
    beamline = f"bl{secrets.token_hex(3)}"
    group = services.groups.create(f"{beamline}-staff", by=ADMIN)
    users = []
    for _ in range(2):
        system_users.append(f"dw{secrets.token_hex(3)}")
        users.append(services.identity.create_user(system_users[-1], by=ADMIN))
    yield users[0], users[1], beamline
    subprocess.run(["groupdel", group.name], capture_output=True)


@pytest.fixture
def proposal(services: Any, people: tuple[Any, Any, str]) -> Any:
    member, _, beamline = people
    now = datetime.now(UTC)
    body = ProposalCreate(id=f"2025-{secrets.randbelow(10**5):05d}", title="operando XAS", beamline=beamline,
                          beamtime_start=now - timedelta(hours=1), beamtime_end=now + timedelta(hours=8),
                          members=[{"username": member.username, "role": "member"}])
    return services.data.create(ADMIN, body)


def daq_write(path: Path, *chunks: bytes) -> bytes:
    """Write a file as a DAQ does: created owner-only (so the ACL it inherits grants nobody), chunk by chunk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for chunk in chunks:
        os.write(fd, chunk)
    os.close(fd)
    return b"".join(chunks)


def checksums(services: Any, proposal_id: str) -> dict[str, str | None]:
    with services.db.session() as db:
        return {row.relpath: row.sha256 for row in db.execute(
            select(DataFile.relpath, DataFile.sha256).where(DataFile.proposal_id == proposal_id))}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def watching(services: Any, proposal_id: str, report: Callable[[str, RegisterResult], None] | None = None
             ) -> Iterator[WatchSummary]:
    """A watcher in a thread, ready (start-up registration done) on entry, stopped on exit; yields its summary."""
    ready = threading.Event()

    def reported(kind: str, result: RegisterResult) -> None:
        ready.set()
        if report is not None:
            report(kind, result)

    watcher = ProposalWatcher(services.registration, ADMIN, proposal_id, report=reported)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    assert ready.wait(30), "the watcher did not finish its start-up registration"
    try:
        yield watcher.summary
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the watcher did not stop"


def test_closed_files_in_old_and_new_folders_are_registered_readable_by_members_only(
        services: Any, people: tuple[Any, Any, str], proposal: Any, storage: Path) -> None:
    member, stranger, _ = people
    folder = services.data.proposal_dir(proposal)
    (folder / "scan1").mkdir()
    staging = storage / "staging"
    staging.mkdir()
    with watching(services, proposal.id) as summary:
        written = {"scan1/f0001.h5": daq_write(folder / "scan1/f0001.h5", b"frame ", b"one ", b"of many")}
        (folder / "a/b/c").mkdir(parents=True, mode=0o700)
        written["a/b/c/f0001.h5"] = daq_write(folder / "a/b/c/f0001.h5", b"nested ", b"at once")
        written["scan1/f0002.h5"] = daq_write(staging / "f0002.h5", b"renamed ", b"into place")
        os.rename(staging / "f0002.h5", folder / "scan1/f0002.h5")
        daq_write(folder / "scan1/f0003.h5.part", b"written under a temporary name")
        written["scan1/f0003.h5"] = (folder / "scan1/f0003.h5.part").read_bytes()
        os.rename(folder / "scan1/f0003.h5.part", folder / "scan1/f0003.h5")
        (folder / "scan1/link.h5").symlink_to(staging)
        expected = {name: sha(data) for name, data in written.items()}
        wait_for(lambda: checksums(services, proposal.id) == expected, what="every closed file registered")
    assert summary.files >= len(written) and summary.batches >= 1
    for name, data in written.items():
        assert read_as(member.username, folder / name) == data.decode()
        assert read_as(stranger.username, folder / name) == "PermissionError"


def test_a_hard_link_moved_in_from_another_proposal_is_refused_and_one_from_inside_registered(
        services: Any, people: tuple[Any, Any, str], proposal: Any) -> None:
    member, stranger, beamline = people
    now = datetime.now(UTC)
    other = services.data.create(ADMIN, ProposalCreate(
        id=f"2025-{secrets.randbelow(10**5):05d}", title="someone else's", beamline=beamline,
        beamtime_start=now - timedelta(hours=1), beamtime_end=now, members=[{"username": stranger.username}]))
    secret = services.data.proposal_dir(other) / "secret.h5"
    daq_write(secret, b"the stranger's frames")
    services.registration.register(ADMIN, other.id)
    before = subprocess.run(["getfacl", "-cn", str(secret)], capture_output=True, text=True).stdout
    folder = services.data.proposal_dir(proposal)
    (folder / "scan1").mkdir()
    with watching(services, proposal.id) as summary:
        os.link(secret, folder / "scan1/.stolen.tmp")
        os.rename(folder / "scan1/.stolen.tmp", folder / "scan1/stolen.h5")
        own = daq_write(folder / "scan1/own.h5", b"our frames")
        os.link(folder / "scan1/own.h5", folder / "scan1/.again.tmp")
        os.rename(folder / "scan1/.again.tmp", folder / "scan1/own-again.h5")
        wait_for(lambda: "scan1/stolen.h5" in summary.refused, what="the link from the other proposal refused")
        wait_for(lambda: set(checksums(services, proposal.id)) == {"scan1/own.h5", "scan1/own-again.h5"},
                 what="both names of the file linked inside the proposal registered")
    assert subprocess.run(["getfacl", "-cn", str(secret)], capture_output=True, text=True).stdout == before
    assert read_as(member.username, folder / "scan1/stolen.h5") == "PermissionError"
    assert read_as(stranger.username, secret) == "the stranger's frames"
    assert read_as(member.username, folder / "scan1/own-again.h5") == own.decode()


def test_a_file_is_registered_only_once_the_daq_closes_it(services: Any, people: tuple[Any, Any, str],
                                                          proposal: Any, storage: Path) -> None:
    member, _, _ = people
    folder = services.data.proposal_dir(proposal)
    (folder / "scan1").mkdir()
    (storage / "staging/fresh/deeper").mkdir(parents=True)
    names = ["scan1/open.h5", "fresh/deeper/open.h5"]  # the second is found by the scan of a folder moved in
    with watching(services, proposal.id):
        daq_write(folder / "scan1/before.h5", b"a closed neighbour")
        with open(folder / names[0], "wb", buffering=0) as old, \
                open(storage / "staging" / names[1], "wb", buffering=0) as new:
            for frames in (old, new):
                frames.write(b"first chunk ")
            os.rename(storage / "staging/fresh", folder / "fresh")
            wait_for(lambda: "scan1/before.h5" in checksums(services, proposal.id), what="the neighbour registered")
            for frames in (old, new):
                frames.write(b"second chunk")
            time.sleep(1.5)  # three batch windows
            assert set(checksums(services, proposal.id)) == {"scan1/before.h5"}
        wait_for(lambda: all(checksums(services, proposal.id).get(name) == sha(b"first chunk second chunk")
                             for name in names), what="the files registered after their close")
    assert all(read_as(member.username, folder / name) == "first chunk second chunk" for name in names)


def test_folders_moved_in_are_registered_and_what_is_moved_out_or_deleted_is_forgotten(
        services: Any, proposal: Any, storage: Path) -> None:
    folder = services.data.proposal_dir(proposal)
    outside = storage / "elsewhere"
    outside.mkdir()
    with watching(services, proposal.id):
        (folder / "run1/sub").mkdir(parents=True)
        daq_write(folder / "run1/sub/f.h5", b"moves with its folder")
        daq_write(folder / "run1/deleted.h5", b"soon gone")
        wait_for(lambda: set(checksums(services, proposal.id)) == {"run1/sub/f.h5", "run1/deleted.h5"})
        os.rename(folder / "run1", folder / "run2")
        (folder / "run2/deleted.h5").unlink()
        daq_write(folder / "run2/sub/g.h5", b"written after the move")
        wait_for(lambda: set(checksums(services, proposal.id)) == {"run2/sub/f.h5", "run2/sub/g.h5"},
                 what="the records follow the folder")
        os.rename(folder / "run2", outside / "run2")
        daq_write(outside / "run2/sub/h.h5", b"outside the proposal")
        wait_for(lambda: checksums(services, proposal.id) == {}, what="the records of a folder moved out removed")
        time.sleep(1)
        assert checksums(services, proposal.id) == {}


def test_events_the_kernel_dropped_are_caught_up_by_registering_the_tree_again(
        services: Any, proposal: Any) -> None:
    queue = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queue > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {queue}: too many files to write to overflow it")
    folder = services.data.proposal_dir(proposal)
    (folder / "burst").mkdir()
    hold = threading.Event()

    def report(kind: str, result: RegisterResult) -> None:
        if kind == "batch" and not hold.is_set():
            hold.wait(60)  # the watcher reads no events while the DAQ bursts

    with watching(services, proposal.id, report) as summary:
        daq_write(folder / "burst/first.h5", b"the watcher stops in this batch's report")
        wait_for(lambda: "burst/first.h5" in checksums(services, proposal.id))
        count = queue // 2 + 1000  # each file: IN_CREATE and IN_CLOSE_WRITE
        for i in range(count):
            daq_write(folder / f"burst/f{i:06d}.h5", b"%d" % i)
        hold.set()
        wait_for(lambda: len(checksums(services, proposal.id)) == count + 1, timeout=120,
                 what="every file of the burst registered")
    assert summary.rescans == 1
    assert checksums(services, proposal.id)["burst/f000123.h5"] == sha(b"123")


def start_command(env: dict[str, str], proposal_id: str) -> subprocess.Popen[str]:
    """`beamhub data watch`, running once it says it watches."""
    command = subprocess.Popen([str(BIN / "beamhub"), "data", "watch", "--proposal", proposal_id],
                               env={**os.environ, **env, "COLUMNS": "200"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert command.stdout is not None
    for line in command.stdout:
        if line.startswith("watching "):
            return command
    command.wait()
    raise AssertionError(f"the command did not start: {command.stderr.read() if command.stderr else ''}")


def test_the_command_stops_on_sigterm_with_a_summary_and_registers_at_restart_what_came_meanwhile(
        services: Any, env: dict[str, str], proposal: Any) -> None:
    folder = services.data.proposal_dir(proposal)
    command = start_command(env, proposal.id)
    try:
        daq_write(folder / "live.h5", b"while watched")
        wait_for(lambda: checksums(services, proposal.id) == {"live.h5": sha(b"while watched")})
        command.send_signal(signal.SIGTERM)
        out, errors = command.communicate(timeout=30)
    finally:
        command.kill()
    assert command.returncode == 0, errors
    assert "batch: 1 files, 1 added" in out and "stopped: 1 files registered" in out
    (folder / "scan9").mkdir()
    daq_write(folder / "scan9/while-stopped.h5", b"nobody watched")
    command = start_command(env, proposal.id)
    try:
        assert checksums(services, proposal.id)["scan9/while-stopped.h5"] == sha(b"nobody watched")
        command.send_signal(signal.SIGINT)
        out, errors = command.communicate(timeout=30)
    finally:
        command.kill()
    assert command.returncode == 0, errors
    assert "stopped: 0 files registered in 0 batches (2 files seen at start-up" in out
