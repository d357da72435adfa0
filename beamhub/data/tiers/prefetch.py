"""Prefetch: a proposal's data copied to the fast tier ahead of use, within that tier's space budget.

A prefetch is a migration to the first of `storage_tiers` (the fast one) by migrate's own mover: the same checksums,
ACLs, xattrs and crash-safe re-run, the catalogue switched in one transaction, so that it always names the one tier
that holds the bytes; readers keep reading through the proposal's stable path (data/current.py). Before copying,
the proposals on the fast tier that were used least recently are migrated back to the next tier until the new one
fits `tier_budget`; one in use is never evicted: its beamtime is running, or a process on this host holds a file or
its working folder inside it. Prefetches to one tier take turns (a lock on the storage), so two never take the same
room. Sizes are the catalogue's; an administrator's own migration is not held to the budget.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from beamhub.data.models import DataFile, Proposal
from beamhub.data.proposals.service import DataService
from beamhub.data.tiers.migrate import LOCK_DIR, MigrationReport, Progress, move_proposal
from beamhub.db import utcnow
from beamhub.errors import BeamhubError, Conflict, Forbidden, Invalid
from beamhub.identity.principal import Principal
from beamhub.leader import BEAMTIME_LOCK, lead_forever
from beamhub.units import format_size

log = logging.getLogger(__name__)

SYSTEM = Principal(username="beamhub-prefetch", user_id=None, roles=frozenset({"admin"}))
"""Who evicts, and who prefetches for a beginning beamtime: beamhub itself."""
BEAMTIME_CHECK_INTERVAL = 60.0
BEAMTIME_GRACE = timedelta(minutes=10)
"""A beamtime that began this recently is still prefetched for (the server may have been down when it began)."""


@dataclass
class PrefetchReport:
    proposal_id: str
    tier: str
    from_tier: str
    already_there: bool = False
    files_copied: int = 0
    files_skipped: int = 0
    bytes_copied: int = 0
    files_verified: int = 0
    files_removed: int = 0
    evicted: list[str] = field(default_factory=list)
    """Proposals moved back from the fast tier to make room, least recently used first."""
    kept: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, moved: MigrationReport) -> None:
        self.files_copied, self.files_skipped = moved.files_copied, moved.files_skipped
        self.bytes_copied, self.files_verified = moved.bytes_copied, moved.files_verified
        self.files_removed, self.kept = moved.files_removed, moved.kept


@dataclass(frozen=True)
class Resident:
    """A proposal on the fast tier, as the budget sees it."""

    id: str
    size: int
    last_used_at: datetime | None


def fast_tiers(service: DataService) -> tuple[str, str]:
    """(the tier prefetch copies to, the tier eviction moves back to): the first two of storage_tiers."""
    tiers = service.settings.storage_tiers
    if len(tiers) < 2:
        raise Invalid("prefetch needs two storage_tiers (the fast one first); this site has one")
    return tiers[0], tiers[1]


def prefetch_proposal(service: DataService, principal: Principal, proposal_id: str,
                      progress: Progress | None = None) -> PrefetchReport:
    """Copy a proposal's data to the fast tier, making room by LRU eviction; members, staff and admins may ask."""
    started = time.monotonic()
    proposal = service.get(principal, proposal_id)
    check_may_prefetch(service, principal, proposal)
    hot, warm = fast_tiers(service)
    touch(service, proposal.id)
    report = PrefetchReport(proposal.id, hot, proposal.tier)
    if _whole_on(service, proposal, hot):
        report.already_there = True
        return report
    with _budget_turn(service.settings.storage_root, hot, progress):
        proposal = service.get(principal, proposal_id)
        report.from_tier = proposal.tier
        if _whole_on(service, proposal, hot):  # a prefetch we waited for moved it
            report.already_there = True
            return report
        if proposal.tier != hot:
            report.evicted = _make_room(service, proposal, hot, warm, progress)
        report.add(move_proposal(service, principal, proposal.id, hot, progress))
    report.seconds = time.monotonic() - started
    service.audit.record_as(principal, "data.prefetch", proposal.id, from_tier=report.from_tier, to_tier=hot,
                            bytes=report.bytes_copied, evicted=report.evicted)
    return report


def _whole_on(service: DataService, proposal: Proposal, tier: str) -> bool:
    """Whether the catalogue puts the proposal on `tier` and no other tier holds a folder of it (nothing left to do)."""
    return proposal.tier == tier and len(service.tier_dirs(proposal)) <= 1


def check_may_prefetch(service: DataService, principal: Principal, proposal: Proposal) -> None:
    """Administrators, the beamline's staff and the proposal's members; not whoever merely sees public data."""
    if principal.is_admin or proposal.beamline in service.staffed_beamlines(principal):
        return
    if principal.user_id is not None and any(m.user_id == principal.user_id for m in proposal.members):
        return
    raise Forbidden("only members of %(proposal)s, staff of beamline %(beamline)s and administrators prefetch its "
                    "data", proposal=proposal.id, beamline=proposal.beamline)


def touch(service: DataService, proposal_id: str, when: datetime | None = None) -> None:
    """Record that the proposal's data was asked for now: the budget evicts the least recently used first."""
    with service.db.session() as db:
        db.execute(update(Proposal).where(Proposal.id == proposal_id).values(last_used_at=when or utcnow()))


@contextmanager
def _budget_turn(storage_root: Path, tier: str, progress: Progress | None) -> Iterator[None]:
    """Wait for the other prefetches to this tier (on any host that mounts the storage) to finish."""
    folder = storage_root / LOCK_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / f"{tier}.budget", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress("queued", 0, 0)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def residents(service: DataService, tier: str) -> list[Resident]:
    """The proposals on a tier with their catalogued bytes, least recently used first."""
    size = func.coalesce(func.sum(DataFile.size), 0)
    query = (select(Proposal.id, size, Proposal.last_used_at).outerjoin(DataFile, DataFile.proposal_id == Proposal.id)
             .where(Proposal.tier == tier).group_by(Proposal.id, Proposal.last_used_at))
    with service.db.session() as db:
        rows = [Resident(row[0], int(row[1]), row[2]) for row in db.execute(query)]
    return sorted(rows, key=lambda r: (r.last_used_at is not None, r.last_used_at or datetime.min, r.id))


def proposal_bytes(service: DataService, proposal_id: str) -> int:
    """The catalogued size of a proposal's data."""
    with service.db.session() as db:
        return int(db.scalar(select(func.coalesce(func.sum(DataFile.size), 0))
                             .where(DataFile.proposal_id == proposal_id)) or 0)


def _make_room(service: DataService, proposal: Proposal, hot: str, warm: str, progress: Progress | None) -> list[str]:
    """Evict the least recently used proposals not in use until this one fits the tier's budget."""
    budget = service.settings.tier_budget.get(hot)
    if budget is None:
        return []
    need = proposal_bytes(service, proposal.id)
    if need > budget:
        raise Conflict("proposal %(proposal)s holds %(size)s (%(bytes)s bytes), more than the %(tier)s tier's budget "
                       "of %(budget)s (%(budget_bytes)s bytes): it cannot be prefetched", proposal=proposal.id,
                       size=format_size(need), bytes=need, tier=hot, budget=format_size(budget), budget_bytes=budget)
    others = [r for r in residents(service, hot) if r.id != proposal.id]
    used = sum(r.size for r in others)
    evicted, busy = [], []
    for resident in others:
        if used + need <= budget:
            break
        reason = in_use(service, resident.id)
        if reason is None:
            try:
                evict(service, resident.id, warm, progress)
            except BeamhubError as exc:  # e.g. a file that does not verify: it stays, and the next one is tried
                reason = f"it could not be moved back: {exc}"
        if reason is not None:
            busy.append(f"{resident.id} ({reason})")
            continue
        used -= resident.size
        evicted.append(resident.id)
    if used + need > budget:
        raise Conflict("the %(tier)s tier has no room for %(proposal)s (%(size)s): %(used)s of its %(budget)s are "
                       "held by proposals that cannot move now: %(held)s; try again later", tier=hot,
                       proposal=proposal.id, size=format_size(need), used=format_size(used),
                       budget=format_size(budget), held=", ".join(busy))
    return evicted


def evict(service: DataService, proposal_id: str, warm: str, progress: Progress | None = None) -> MigrationReport:
    """Move a proposal back from the fast tier (progress phase `evict`)."""
    relay = None if progress is None else lambda _phase, done_bytes, files: progress("evict", done_bytes, files)
    log.info("evicting %s to tier %s to make room", proposal_id, warm)
    return move_proposal(service, SYSTEM, proposal_id, warm, relay)


def in_use(service: DataService, proposal_id: str, now: datetime | None = None) -> str | None:
    """Why the proposal may not be evicted now, or None: its beamtime runs, or a process here has files open in it."""
    proposal = service.get(SYSTEM, proposal_id)
    now = now or utcnow()
    if proposal.beamtime_start <= now < proposal.beamtime_end:
        return "its beamtime is running"
    if process_inside(service.proposal_dir(proposal)) is not None:
        return "a process on this host has files open in it"
    return None


def process_inside(folder: Path) -> int | None:
    """The PID of a process whose working folder or an open file lies inside `folder` (root sees every one)."""
    inside = os.path.realpath(folder)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = [f"fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:  # gone, or not ours to see
            continue
        for name in ("cwd", *fds):
            try:
                target = os.readlink(f"/proc/{pid}/{name}")
            except OSError:  # closed meanwhile
                continue
            if target == inside or target.startswith(inside + "/"):
                return int(pid)
    return None


def prefetch_in_background(service: DataService, principal: Principal, proposal_id: str) -> threading.Thread:
    """Start a prefetch in a thread of its own (a session's start, the console's button); its outcome is logged."""

    def run() -> None:
        try:
            done = prefetch_proposal(service, principal, proposal_id)
            log.info("prefetch of %s: %s bytes copied, evicted %s", proposal_id, done.bytes_copied, done.evicted)
        except BeamhubError as exc:
            log.warning("prefetch of %s refused: %s", proposal_id, exc)
        except Exception:
            log.exception("prefetch of %s failed", proposal_id)

    thread = threading.Thread(target=run, name=f"prefetch-{proposal_id}", daemon=True)
    thread.start()
    return thread


def beamtimes_due(service: DataService, now: datetime | None = None) -> list[str]:
    """Proposals off the fast tier whose beamtime begins within prefetch_lead seconds (or began in the last few
    minutes: the server may have been down then), not yet fetched for it."""
    now = now or utcnow()
    lead = timedelta(seconds=service.settings.prefetch_lead)
    hot, _ = fast_tiers(service)
    with service.db.session() as db:
        rows = db.execute(select(Proposal.id, Proposal.beamtime_start, Proposal.last_used_at)
                          .where(Proposal.tier != hot, Proposal.beamtime_start <= now + lead,
                                 Proposal.beamtime_start > now - BEAMTIME_GRACE).order_by(Proposal.beamtime_start))
        return [row[0] for row in rows if row[2] is None or row[2] < row[1] - lead]


def prefetch_beamtimes(service: DataService, now: datetime | None = None) -> list[str]:
    """Prefetch each proposal whose beamtime is about to begin, once per beamtime; the ones fetched."""
    fetched = []
    for proposal_id in beamtimes_due(service, now):
        try:
            prefetch_proposal(service, SYSTEM, proposal_id)
            fetched.append(proposal_id)
        except BeamhubError as exc:
            log.warning("prefetch of %s for its beamtime refused: %s", proposal_id, exc)
    return fetched


async def prefetch_beamtimes_forever(service: DataService) -> None:
    """Look for beginning beamtimes every minute, in one replica (a prefetch runs in a worker thread meanwhile)."""
    if len(service.settings.storage_tiers) < 2:
        return

    def round_of_beamtimes() -> None:
        fetched = prefetch_beamtimes(service)
        if fetched:
            log.info("prefetched for their beamtimes: %s", ", ".join(fetched))

    await lead_forever(service.db, BEAMTIME_LOCK, BEAMTIME_CHECK_INTERVAL, round_of_beamtimes, "prefetch for beamtimes")

