"""Tier migration moves a proposal's files with their bytes, ACLs, xattrs and mtimes, switches the catalogue at once,
refuses what does not verify, and finishes after being killed anywhere: nothing lost, nothing left twice."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import posix1e
import pytest
from sqlalchemy import select

from beamhub.data.models import DataFile, MemberRole, Proposal
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.data.tiers.entries import PARTIAL_PREFIX
from beamhub.data.tiers.migrate import MigrationRefused, migrate_proposal
from beamhub.errors import Conflict, Invalid
from beamhub.identity.principal import Principal

ADMIN = Principal(username="admin-test", user_id=None, roles=frozenset({"admin"}))
MiB = 1024 * 1024
SMALL_FILES = 240

CHILD = """
import os, signal, sys
from beamhub.services import build_services
from beamhub.config import Settings
from beamhub.data.tiers.migrate import migrate_proposal
from beamhub.identity.principal import Principal

proposal, mode, phase, limit, sig = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
state = {"calls": 0, "chunks": 0, "files": 0, "bytes": 0}

def progress(now, done_bytes, done_files):
    if not state["calls"]:
        print("started", flush=True)
    state["calls"] += 1
    inside = now == "copy" and done_files == state["files"] and done_bytes > state["bytes"]
    state["chunks"] = state["chunks"] + 1 if inside else 0
    state["files"], state["bytes"] = done_files, done_bytes
    state[phase] = state.get(phase, 0) + (now == phase)
    if (state["chunks"] if mode == "midfile" else state[phase]) == limit:
        os.kill(os.getpid(), sig)

services = build_services(Settings())
migrate_proposal(services.data, Principal("admin", None, frozenset({"admin"})), proposal, "warm", progress)
"""
"""A migration in its own process that sends itself `sig` at the `limit`-th progress call of `phase` (mode "calls"),
or once `limit` chunks of one file are written (mode "midfile")."""


@pytest.fixture
def proposal(services: Any) -> Iterator[Any]:
    """A proposal on tier hot holding a registered tree (see make_tree) with extra ACLs, xattrs and owners."""
    beamline = f"bl{secrets.token_hex(3)}"
    staff = services.groups.create(f"{beamline}-staff", by=ADMIN)
    now = datetime.now(UTC)
    created = services.data.create(ADMIN, ProposalCreate(
        id=f"2025-{secrets.randbelow(10**5):05d}", title="operando XAS", beamline=beamline, tier="hot",
        beamtime_start=now - timedelta(hours=8), beamtime_end=now))
    make_tree(services.data.proposal_dir(created))
    services.registration.register(ADMIN, created.id)
    decorate(services.data.proposal_dir(created))
    yield created
    subprocess.run(["groupdel", staff.name], capture_output=True)


def make_tree(folder: Path) -> None:
    """Nested folders, a few hundred small files, two multi-MB ones, a symlink, an empty folder; odd mtimes."""
    rng = random.Random(7)
    for i in range(SMALL_FILES):
        write(folder, f"scan{i % 3}/frames{i % 4}/f{i:04d}.h5", rng.randbytes(100 + 37 * i))
    write(folder, "scan0/big.h5", os.urandom(6 * MiB))
    write(folder, "scan2/sub/big.nxs", os.urandom(5 * MiB + 123))
    write(folder, "README", "résumé of the beamtime\n".encode())
    (folder / "scan1/latest.h5").symlink_to("frames0/f0004.h5")
    (folder / "empty").mkdir()
    for step, (directory, _, files) in enumerate(os.walk(folder, topdown=False)):
        for name in files:
            os.utime(Path(directory, name), ns=(1_600_000_000_123_456_789, 1_234_567_890_987_654_321 + step * 1_001),
                     follow_symlinks=False)
        os.utime(directory, ns=(1_600_000_000_000_000_001, 1_300_000_000_000_000_007 + step * 999_983))


def decorate(folder: Path) -> None:
    """What registration does not set: a user xattr, an owner, a folder's own default ACL, one without any."""
    os.setxattr(folder / "scan0/big.h5", "user.beamhub.sample", b"LiFePO4 cathode")
    os.setxattr(folder / "scan1", "user.beamhub.note", b"temperature ramp")
    os.chown(folder / "scan0/big.h5", 4321, 4321)
    subprocess.run(["setfacl", "-d", "-m", "u:54321:rwx", str(folder / "scan1/frames2")], check=True)
    subprocess.run(["setfacl", "-k", str(folder / "scan2/sub")], check=True)


def write(folder: Path, relpath: str, data: bytes) -> None:
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def describe(path: Path) -> tuple[Any, ...]:
    """Everything a faithful copy keeps: kind, bytes, owner, mode, mtime, ACLs, xattrs."""
    info = os.lstat(path)
    if os.path.islink(path):
        return "link", os.readlink(path), info.st_uid, info.st_gid, info.st_mtime_ns
    text = posix1e.TEXT_NUMERIC_IDS
    is_dir = os.path.isdir(path)
    content = None if is_dir else hashlib.sha256(path.read_bytes()).hexdigest()
    return ("dir" if is_dir else "file", content, info.st_uid, info.st_gid, oct(info.st_mode), info.st_mtime_ns,
            posix1e.ACL(file=str(path)).to_any_text(options=text).decode(),
            posix1e.ACL(filedef=str(path)).to_any_text(options=text).decode() if is_dir else "",
            {name: os.getxattr(path, name) for name in os.listxattr(path) if name.startswith("user.")})


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """describe() of the root and every entry below it, by relative path."""
    entries = {".": describe(root)}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(directory, name)
            entries[path.relative_to(root).as_posix()] = describe(path)
    return entries


def partials(root: Path) -> list[str]:
    return [name for _, _, files in os.walk(root) for name in files if name.startswith(PARTIAL_PREFIX)]


def tiers(services: Any, proposal_id: str) -> tuple[str, set[str]]:
    """The proposal's tier and the set of its files' tiers in the catalogue."""
    with services.db.session() as db:
        return (db.get(Proposal, proposal_id).tier,
                set(db.scalars(select(DataFile.tier).where(DataFile.proposal_id == proposal_id))))


def start_child(env: dict[str, str], proposal_id: str, mode: str, phase: str, limit: int,
                sig: int = signal.SIGKILL) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, proposal_id, mode, phase, str(limit), str(sig)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_stopped(child: subprocess.Popen[str]) -> None:
    """Wait until the child has stopped itself (SIGSTOP) at its hook."""
    deadline = time.monotonic() + 60
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert child.poll() is None and time.monotonic() < deadline, "the migration did not stop at its hook"
        time.sleep(0.05)


def killed(env: dict[str, str], proposal_id: str, mode: str, phase: str, limit: int) -> None:
    """Run a migration that SIGKILLs itself at the given point; fail if it ended any other way."""
    child = start_child(env, proposal_id, mode, phase, limit)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, f"{mode} {phase} {limit}: exit {child.returncode}\n{stderr}"


def test_migration_keeps_bytes_acls_xattrs_and_mtimes_switches_the_catalogue_and_removes_the_source(
        services: Any, proposal: Any) -> None:
    source = services.data.proposal_dir(proposal)
    destination = services.data.proposal_dir(proposal, "warm")
    before = snapshot(source)
    calls: list[tuple[str, int, int]] = []
    report = migrate_proposal(services.data, ADMIN, proposal.id, "warm", lambda *call: calls.append(call))
    assert snapshot(destination) == before
    assert not source.exists() and not partials(destination)
    assert tiers(services, proposal.id) == ("warm", {"warm"})
    entries = SMALL_FILES + 4  # two big files, README, the symlink
    payload = sum(os.lstat(destination / p).st_size for p, d in before.items() if d[0] == "file")
    assert (report.files_copied, report.files_skipped, report.files_verified) == (entries, 0, entries - 1)
    assert (report.bytes_copied, report.files_removed, report.switched, report.kept) == (payload, entries, True, [])
    assert max(c for c in calls if c[0] == "copy") == ("copy", payload, entries)
    assert calls[-1][0] == "remove" and calls[-1][2] == entries
    with pytest.raises(Invalid, match="already on tier warm"):
        migrate_proposal(services.data, ADMIN, proposal.id, "warm")
    with pytest.raises(Invalid, match="unknown tier 'tape'"):
        migrate_proposal(services.data, ADMIN, proposal.id, "tape")


def test_a_migration_killed_anywhere_and_run_again_leaves_every_file_once_and_identical(
        services: Any, env: dict[str, str], proposal: Any) -> None:
    source = services.data.proposal_dir(proposal)
    destination = services.data.proposal_dir(proposal, "warm")
    before = snapshot(source)
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    killed(env, proposal.id, "midfile", "copy", 3)
    assert partials(destination), "the migration was not caught in the middle of a file"
    for limit in sorted(rng.sample(range(2, SMALL_FILES), 3)):
        killed(env, proposal.id, "calls", "copy", limit)
    assert tiers(services, proposal.id) == ("hot", {"hot"}) and snapshot(source) == before
    killed(env, proposal.id, "calls", "remove", 1)  # right after the switch, before anything is removed
    assert tiers(services, proposal.id) == ("warm", {"warm"}) and snapshot(source) == before
    killed(env, proposal.id, "calls", "remove", rng.randrange(2, SMALL_FILES // 2))
    assert source.exists() and len(snapshot(source)) < len(before)
    report = migrate_proposal(services.data, ADMIN, proposal.id, "warm")
    assert report.files_copied == 0 and report.kept == []
    assert snapshot(destination) == before, f"seed {seed}"
    assert not source.exists() and not partials(destination)
    assert tiers(services, proposal.id) == ("warm", {"warm"})


def test_a_migration_killed_after_random_delays_and_run_again_leaves_every_file_once_and_identical(
        services: Any, env: dict[str, str], proposal: Any) -> None:
    source = services.data.proposal_dir(proposal)
    destination = services.data.proposal_dir(proposal, "warm")
    before = snapshot(source)
    delays = [random.uniform(0.0, 0.3) for _ in range(4)]  # the whole migration takes about 0.5 s here
    for delay in delays:
        if not source.exists():  # an earlier child finished before its kill
            break
        child = start_child(env, proposal.id, "calls", "none", 1)
        assert child.stdout is not None and child.stdout.readline() == "started\n", child.communicate()[1]
        time.sleep(delay)
        child.kill()
        child.wait()
    if source.exists():  # unless the last kill came too late
        migrate_proposal(services.data, ADMIN, proposal.id, "warm")
    assert snapshot(destination) == before, f"killed after {delays} s"
    assert not source.exists() and not partials(destination)
    assert tiers(services, proposal.id) == ("warm", {"warm"})


def test_a_file_that_does_not_match_its_checksum_keeps_the_proposal_where_it_is(services: Any,
                                                                                 proposal: Any) -> None:
    source = services.data.proposal_dir(proposal)
    destination = services.data.proposal_dir(proposal, "warm")
    damaged = source / "scan2/frames1/f0005.h5"
    original, info = damaged.read_bytes(), os.stat(damaged)
    damaged.write_bytes(bytes(len(original)))  # same size, same mtime: only the checksum tells
    os.utime(damaged, ns=(info.st_atime_ns, info.st_mtime_ns))
    before = snapshot(source)
    with pytest.raises(MigrationRefused) as refused:
        migrate_proposal(services.data, ADMIN, proposal.id, "warm")
    assert list(refused.value.failures) == ["scan2/frames1/f0005.h5"]
    assert "SHA-256" in str(refused.value)
    assert snapshot(source) == before and tiers(services, proposal.id) == ("hot", {"hot"})
    assert not (destination / "scan2/frames1/f0005.h5").exists() and not partials(destination)
    damaged.write_bytes(original)
    os.utime(damaged, ns=(info.st_atime_ns, info.st_mtime_ns))
    report = migrate_proposal(services.data, ADMIN, proposal.id, "warm")
    assert report.files_skipped > 0 and report.kept == [] and not source.exists()


def test_a_second_migration_of_the_same_proposal_is_refused_while_the_first_runs(
        services: Any, env: dict[str, str], proposal: Any) -> None:
    child = start_child(env, proposal.id, "calls", "copy", 20, signal.SIGSTOP)
    try:
        wait_until_stopped(child)
        with pytest.raises(Conflict, match="another migration"):
            migrate_proposal(services.data, ADMIN, proposal.id, "warm")
    finally:
        child.kill()
        child.wait()
    assert migrate_proposal(services.data, ADMIN, proposal.id, "warm").switched


def test_a_member_removed_during_a_migration_cannot_read_the_new_copy(
        services: Any, env: dict[str, str], proposal: Any, system_users: list[str]) -> None:
    alice = services.identity.create_user(f"mi{secrets.token_hex(3)}", by=ADMIN)
    system_users.append(alice.username)
    services.data.set_member(ADMIN, proposal.id, alice.username, MemberRole.member)
    assert f"user:{alice.uid}:r-x" in describe(services.data.proposal_dir(proposal) / "scan0")[7]
    child = start_child(env, proposal.id, "calls", "copy", 20, signal.SIGSTOP)  # inside scan0/frames0
    try:
        wait_until_stopped(child)
        services.data.remove_member(ADMIN, proposal.id, alice.username)
        child.send_signal(signal.SIGCONT)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, stderr
    destination = services.data.proposal_dir(proposal, "warm")
    entries = snapshot(destination)
    assert [path for path, entry in entries.items() if f"user:{alice.uid}:" in f"{entry[6:8]}"] == []


def test_the_cli_migrates_with_a_report_and_refuses_a_second_run(env: dict[str, str], proposal: Any) -> None:
    command = [str(Path(sys.executable).parent / "beamhub"), "data", "migrate", "-p", proposal.id, "--to", "warm"]
    first = subprocess.run(command, env={**os.environ, **env, "COLUMNS": "200"}, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert f"{proposal.id}: hot -> warm;" in first.stdout and "removed from hot" in first.stdout
    again = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    assert again.returncode == 1 and "already on tier warm" in again.stderr
