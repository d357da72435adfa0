"""Prefetch copies a warm proposal to the hot tier with identical bytes and ACLs while a member's process goes on
reading it through its stable path, keeps the hot tier within its budget by moving the least recently used proposals
back (never one in use), refuses one larger than the budget, and starts by itself for a beamtime about to begin."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import posix1e
import pytest
from sqlalchemy import select, update

from beamhub.config import Settings
from beamhub.data.current import current_path
from beamhub.data.models import DataFile, Proposal
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.data.tiers.prefetch import (
    beamtimes_due,
    prefetch_beamtimes,
    prefetch_proposal,
    process_inside,
    residents,
)
from beamhub.errors import Conflict, Forbidden, NotFound
from beamhub.identity.principal import Principal
from beamhub.services import build_services
from helpers.data import ADMIN, new_user

MiB = 1024 * 1024

READER = """
import hashlib, json, os, signal, sys
link, expected = sys.argv[1], json.loads(sys.argv[2])
stop, seen, reads, errors = [], set(), 0, []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(True))
print("reading", flush=True)
while not stop:
    for relpath, digest in expected.items():
        try:
            with open(os.path.join(link, relpath), "rb") as f:
                tier = os.path.realpath(f"/proc/self/fd/{f.fileno()}")
                got = hashlib.sha256()
                while chunk := f.read(1 << 20):
                    got.update(chunk)
            seen.add(tier.split(os.sep)[-4 - relpath.count("/")])
            if got.hexdigest() != digest:
                errors.append(f"{relpath}: different bytes")
        except OSError as exc:
            errors.append(f"{relpath}: {exc}")
        reads += 1
print(json.dumps({"reads": reads, "tiers": sorted(seen), "errors": errors[:10]}))
"""
"""A member's process reading every file through the proposal's stable path, again and again, until told to stop."""


def principal_of(user: Any) -> Principal:
    return Principal(username=user.username, user_id=user.id, roles=frozenset({"user"}))


@pytest.fixture
def world(services: Any, system_users: list[str], system_groups: list[str]) -> Iterator[dict[str, Any]]:
    """A beamline with its staff group, a member and a stranger."""
    beamline = f"bl{os.urandom(3).hex()}"
    system_groups.append(services.groups.create(f"{beamline}-staff", by=ADMIN).name)
    yield {"beamline": beamline, "member": new_user(services, system_users, "pm"),
           "stranger": new_user(services, system_users, "ps")}


def warm_proposal(services: Any, world: dict[str, Any], files: dict[str, int], start_in: timedelta | None = None,
                  ) -> Any:
    """A registered proposal on tier warm of the world's beamline, its member the world's member."""
    now = datetime.now(UTC)
    start = now + start_in if start_in is not None else now - timedelta(days=30)
    proposal = services.data.create(ADMIN, ProposalCreate(
        id=f"2025-{random.randrange(10**5):05d}", title="SAXS series", beamline=world["beamline"], tier="warm",
        beamtime_start=start, beamtime_end=start + timedelta(hours=8),
        members=[{"username": world["member"].username, "role": "member"}]))
    folder = services.data.proposal_dir(proposal)
    rng = random.Random(proposal.id)
    for relpath, size in files.items():
        (folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        (folder / relpath).write_bytes(rng.randbytes(size))
    services.registration.register(ADMIN, proposal.id)
    return services.data.get(ADMIN, proposal.id)


def tree() -> dict[str, int]:
    """Two large files and a few dozen small ones in nested folders."""
    files = {"scan1/big-0.h5": 24 * MiB, "scan2/big-1.h5": 16 * MiB}
    files |= {f"scan{i % 3}/frames/f{i:03d}.tif": 4096 + 97 * i for i in range(40)}
    return files


def snapshot(folder: Path) -> dict[str, tuple[str, str, str, int, int]]:
    """relpath -> (SHA-256, access ACL, default ACL of its folder, mode, owner) of every file below `folder`."""
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = Path(parent, name)
            info = path.lstat()
            found[str(path.relative_to(folder))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(), posix1e.ACL(file=str(path)).to_any_text(),
                posix1e.ACL(filedef=parent).to_any_text(), info.st_mode, info.st_uid)
    return found


def catalogue(services: Any, proposal_id: str) -> tuple[str, dict[str, tuple[str | None, str]]]:
    with services.db.session() as db:
        tier = db.scalar(select(Proposal.tier).where(Proposal.id == proposal_id))
        rows = db.execute(select(DataFile.relpath, DataFile.sha256, DataFile.tier)
                          .where(DataFile.proposal_id == proposal_id))
        return tier, {row[0]: (row[1], row[2]) for row in rows}


def test_prefetch_moves_a_warm_proposal_to_hot_while_a_member_reads_it_with_identical_checksums_and_acls(
        services: Any, world: dict[str, Any]) -> None:
    proposal = warm_proposal(services, world, tree())
    warm = services.data.proposal_dir(proposal)
    before = snapshot(warm)
    link = current_path(services.settings.storage_root, proposal.beamline, proposal.id)
    assert os.path.realpath(link) == str(warm)
    member = world["member"].username
    reader = subprocess.Popen(
        ["setpriv", "--reuid", member, "--regid", member, "--init-groups", "/usr/bin/python3", "-c", READER,
         str(link), json.dumps({path: digest for path, (digest, *_) in before.items()})],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stdout.readline() == "reading\n"
    time.sleep(0.5)
    phases: list[str] = []
    report = prefetch_proposal(services.data, principal_of(world["member"]), proposal.id,
                               lambda phase, _bytes, _files: phases.append(phase))
    time.sleep(0.5)
    reader.send_signal(signal.SIGUSR1)
    out, err = reader.communicate(timeout=60)
    read = json.loads(out)

    hot = services.data.proposal_dir(proposal, "hot")
    assert read["errors"] == [] and read["tiers"] == ["hot", "warm"], (read, err)
    assert report.from_tier == "warm" and report.tier == "hot" and report.files_copied == len(before)
    assert report.bytes_copied == sum(tree().values()) and report.files_verified == len(before)
    assert {"copy", "remove"} <= set(phases)
    assert snapshot(hot) == before
    assert not warm.exists() and os.path.realpath(link) == str(hot)
    tier, files = catalogue(services, proposal.id)
    assert tier == "hot" and files == {path: (digest, "hot") for path, (digest, *_) in before.items()}
    again = prefetch_proposal(services.data, principal_of(world["member"]), proposal.id)
    assert again.already_there and again.bytes_copied == 0


def test_two_prefetches_of_one_proposal_at_once_copy_it_once(services: Any, world: dict[str, Any]) -> None:
    proposal = warm_proposal(services, world, tree())
    member = principal_of(world["member"])
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: prefetch_proposal(services.data, member, proposal.id), range(2)))
    assert sorted(report.already_there for report in reports) == [False, True]
    assert sum(report.bytes_copied for report in reports) == sum(tree().values())
    assert catalogue(services, proposal.id)[0] == "hot"


def test_only_members_staff_and_admins_may_prefetch(services: Any, world: dict[str, Any]) -> None:
    proposal = warm_proposal(services, world, {"a.bin": 1000})
    with pytest.raises(NotFound):
        prefetch_proposal(services.data, principal_of(world["stranger"]), proposal.id)
    with services.db.session() as db:  # its embargo is over: everyone may read it, not move it
        db.execute(update(Proposal).where(Proposal.id == proposal.id).values(embargo_released_at=datetime.now(UTC)))
    with pytest.raises(Forbidden, match="only members"):
        prefetch_proposal(services.data, principal_of(world["stranger"]), proposal.id)
    assert catalogue(services, proposal.id)[0] == "warm"
    staff = Principal(username="s", user_id=None, roles=frozenset({"staff"}), beamlines=frozenset({world["beamline"]}))
    assert prefetch_proposal(services.data, staff, proposal.id).tier == "hot"
    assert catalogue(services, proposal.id)[0] == "hot"


def budget_services(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, budget: int) -> Any:
    for key, value in {**env, "BEAMHUB_TIER_BUDGET": f'{{"hot": {budget}}}'}.items():
        monkeypatch.setenv(key, value)
    return build_services(Settings())


def test_the_least_recently_used_proposals_go_back_to_warm_to_make_room_never_one_in_use(
        services: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, world: dict[str, Any]) -> None:
    sized = budget_services(env, monkeypatch, 3 * MiB)
    try:
        first, second, third, fourth = (warm_proposal(sized, world, {"d/x.bin": MiB}) for _ in range(4))
        member = principal_of(world["member"])
        for proposal in (first, second, third):
            prefetch_proposal(sized.data, member, proposal.id)
        on_hot = {r.id for r in residents(sized.data, "hot")}
        assert {first.id, second.id, third.id} <= on_hot
        prefetch_proposal(sized.data, member, second.id)  # used again: now the first is the least recently used
        with open(sized.data.proposal_dir(first, "hot") / "d/x.bin", "rb"):  # ...but a process has a file open
            assert process_inside(sized.data.proposal_dir(first, "hot")) == os.getpid()
            report = prefetch_proposal(sized.data, member, fourth.id)
        assert report.evicted == [third.id]
        assert {r.id for r in residents(sized.data, "hot")} >= {first.id, second.id, fourth.id}
        assert catalogue(sized, third.id)[0] == "warm" and sized.data.proposal_dir(third, "warm").is_dir()
        assert not sized.data.proposal_dir(third, "hot").exists()
        assert os.path.realpath(current_path(sized.settings.storage_root, third.beamline, third.id)) == \
            str(sized.data.proposal_dir(third, "warm"))
    finally:
        sized.db.dispose()


def test_a_proposal_that_cannot_move_back_is_passed_over_and_a_full_tier_is_a_409(
        services: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, world: dict[str, Any]) -> None:
    sized = budget_services(env, monkeypatch, 2 * MiB)
    try:
        first, second, third, fourth = (warm_proposal(sized, world, {"d/x.bin": MiB}) for _ in range(4))
        member = principal_of(world["member"])
        for proposal in (first, second):
            prefetch_proposal(sized.data, member, proposal.id)
        damaged = sized.data.proposal_dir(first, "hot") / "d/x.bin"
        before = damaged.stat()
        with damaged.open("r+b") as out:  # same size and mtime, other bytes: the move back refuses to verify it
            out.write(b"\0" * 64)
        os.utime(damaged, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert prefetch_proposal(sized.data, member, third.id).evicted == [second.id]
        assert catalogue(sized, first.id)[0] == "hot" and catalogue(sized, second.id)[0] == "warm"
        with open(sized.data.proposal_dir(third, "hot") / "d/x.bin", "rb"), \
                pytest.raises(Conflict, match="no room for") as refused:
            prefetch_proposal(sized.data, member, fourth.id)
        assert "could not be moved back" in str(refused.value) and "files open in it" in str(refused.value)
        assert catalogue(sized, fourth.id)[0] == "warm"
    finally:
        sized.db.dispose()


def test_a_proposal_larger_than_the_budget_is_refused_and_stays_warm(
        services: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, world: dict[str, Any]) -> None:
    sized = budget_services(env, monkeypatch, MiB)
    try:
        proposal = warm_proposal(sized, world, {"big.bin": 2 * MiB})
        with pytest.raises(Conflict, match="more than the hot tier's budget"):
            prefetch_proposal(sized.data, principal_of(world["member"]), proposal.id)
        assert catalogue(sized, proposal.id)[0] == "warm" and not sized.data.proposal_dir(proposal, "hot").exists()
    finally:
        sized.db.dispose()


def test_a_beamtime_beginning_within_the_lead_time_is_prefetched_once(services: Any, world: dict[str, Any]) -> None:
    soon = warm_proposal(services, world, {"a.bin": 5000}, start_in=timedelta(hours=1))
    later = warm_proposal(services, world, {"a.bin": 5000}, start_in=timedelta(days=3))
    long_running = warm_proposal(services, world, {"a.bin": 5000}, start_in=timedelta(hours=-2))
    due = beamtimes_due(services.data)
    assert soon.id in due and later.id not in due and long_running.id not in due
    assert prefetch_beamtimes(services.data) == [soon.id]
    assert [catalogue(services, p.id)[0] for p in (soon, later, long_running)] == ["hot", "warm", "warm"]
    assert beamtimes_due(services.data) == []
    services.data.settings.tier_budget = {"hot": 1000}  # a refusal is tried once too, not every minute
    too_big = warm_proposal(services, world, {"a.bin": 5000}, start_in=timedelta(hours=2))
    assert beamtimes_due(services.data) == [too_big.id]
    assert prefetch_beamtimes(services.data) == [] and beamtimes_due(services.data) == []
    assert catalogue(services, too_big.id)[0] == "warm"


def test_the_cli_prefetches_with_a_report(env: dict[str, str], services: Any, world: dict[str, Any]) -> None:
    proposal = warm_proposal(services, world, {"a.bin": 5000})
    done = subprocess.run([sys.executable, "-m", "beamhub", "data", "prefetch", "-p", proposal.id],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{proposal.id}: warm -> hot" in done.stdout
    assert catalogue(services, proposal.id)[0] == "hot"


def test_the_cli_makes_the_stable_paths_of_proposals_that_have_none(env: dict[str, str], services: Any,
                                                                     world: dict[str, Any]) -> None:
    proposal = warm_proposal(services, world, {"a.bin": 5000})
    link = current_path(services.settings.storage_root, proposal.beamline, proposal.id)
    link.unlink()  # as for a proposal made before stable paths
    command = [sys.executable, "-m", "beamhub", "data", "link-current"]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 of 1 stable paths made" in done.stdout, done.stderr
    assert os.path.realpath(link) == str(services.data.proposal_dir(proposal))
    again = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert "0 of 1 stable paths" in again.stdout


@pytest.mark.parametrize("tiers", [["hot", "current"], ["hot", "../warm"], ["hot", ""]])
def test_a_tier_that_is_not_a_plain_folder_name_or_is_named_current_is_refused(tiers: list[str]) -> None:
    with pytest.raises(ValueError, match="cannot be a tier"):
        Settings(storage_tiers=tiers)
