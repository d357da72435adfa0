"""The catalogue as it grows: a member's and an administrator's 100-file page and a member's proposals list, with
10^4 and 10^5 catalogued files (SQLite; 1/10 as many proposals, the member in 10 of them).

Real files (100, with ACLs naming the member) exist only for the page queried; every other record is a synthetic
row. The two sizes are built once; then each run times every case at both sizes, interleaved, and the table gives
p50/p99 over all runs and the growth 10^5/10^4 and member/admin as the median (range) of per-run p50 ratios.
Run as root (it sets ACLs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from beamhub.config import Settings
from beamhub.data.models import DataFile, Proposal, ProposalMember
from beamhub.data.schemas import ProposalCreate
from beamhub.db import database_value, insert_rows, utcnow
from beamhub.identity.principal import Principal
from beamhub.services import build_services

ADMIN = Principal(username="admin-bench", user_id=None, roles=frozenset({"admin"}))
SIZES = (10_000, 100_000)
PAGE = 100


def build(root: Path, files: int) -> dict[str, Callable[[], Any]]:
    """Services holding `files` records; the timed cases on them."""
    root.mkdir(mode=0o755)
    (root / "storage").mkdir(mode=0o755)
    services = build_services(Settings(state_dir=root / "state", storage_root=root / "storage",
                                       manage_system_accounts=False, uid_min=152000, uid_max=152100))
    user = services.identity.create_user("benchcat", by=ADMIN)
    member = Principal(username=user.username, user_id=user.id, roles=frozenset())
    now = datetime.now(UTC)
    proposal = services.data.create(ADMIN, ProposalCreate(
        id="2024-00000", title="bench", beamline="b1", beamtime_start=now - timedelta(days=1), beamtime_end=now,
        members=[{"username": user.username}]))
    folder = services.data.proposal_dir(proposal) / "scan000" / "sub"
    folder.mkdir(parents=True)
    for n in range(PAGE):
        (folder / f"f{n:05d}.h5").write_bytes(b"x")
    services.data.register(ADMIN, proposal.id)
    _fill(services, user.id, files)
    browse = services.browse
    return {"member page": lambda: browse.files(member, proposal.id, "scan000", None, PAGE),
            "admin page": lambda: browse.files(ADMIN, proposal.id, "scan000", None, PAGE),
            "proposals list": lambda: services.data.list(member, None, 50)}


def _fill(services: Any, user_id: int, files: int) -> None:
    """files/10 synthetic proposals (the user in 10), and `files` synthetic records spread over them."""
    count = files // 10
    ids = [f"2023-{n:05d}" for n in range(count)]
    with services.db.session() as db:
        now = database_value(db, Proposal.__table__, "created_at", utcnow())
        insert_rows(db, Proposal.__table__, ("id", "title", "beamline", "tier", "beamtime_start", "beamtime_end",
                                             "acl_version", "acl_applied_version", "created_at"),
                    [(pid, "t", f"b{n % 14}", "hot", now, now, 1, 1, now) for n, pid in enumerate(ids)])
        insert_rows(db, ProposalMember.__table__, ("proposal_id", "user_id", "role", "added_at"),
                    [(pid, user_id, "member", now) for pid in ids[::max(1, count // 10)][:10]])
        insert_rows(db, DataFile.__table__, ("proposal_id", "relpath", "parent", "size", "mtime_ns", "tier",
                                             "registered_at"),
                    [(ids[n % count], f"s{n // count:03d}/f{n:08d}", f"s{n // count:03d}", 1, 1, "hot", now)
                     for n in range(files)])
        db.connection().exec_driver_sql("ANALYZE")


def timed(case: Callable[[], Any], requests: int) -> list[float]:
    """Milliseconds of each of `requests` calls."""
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        case()
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(samples: dict[tuple[str, int], list[list[float]]]) -> None:
    """p50/p99 per case and size; growth and member/admin as the median (range) of per-run p50 ratios."""
    print(f"{'case':<16}" + "".join(f"{f'{n:,} p50/p99 ms':>24}" for n in SIZES) + f"{'growth x':>22}")
    for case in sorted({c for c, _ in samples}):
        cells = "".join(f"{percentile(sum(samples[case, n], []), q):>12.2f}" for n in SIZES for q in (.5, .99))
        print(f"{case:<16}{cells}{ratio(samples[case, SIZES[1]], samples[case, SIZES[0]]):>22}")
    for n in SIZES:
        print(f"member/admin page at {n:,}: {ratio(samples['member page', n], samples['admin page', n])}")


def ratio(top: list[list[float]], bottom: list[list[float]]) -> str:
    per_run = [statistics.median(a) / statistics.median(b) for a, b in zip(top, bottom, strict=True)]
    return f"{statistics.median(per_run):.2f} ({min(per_run):.2f}-{max(per_run):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=100, help="per case, size and run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="beamhub-bench-catalogue-") as tmp:
        Path(tmp).chmod(0o755)
        cases = {n: build(Path(tmp) / str(n), n) for n in SIZES}
        samples: dict[tuple[str, int], list[list[float]]] = {}
        for _ in range(args.runs):
            for n in SIZES:
                for name, case in cases[n].items():
                    case()  # untimed: caches
                    samples.setdefault((name, n), []).append(timed(case, args.requests))
        report(samples)


if __name__ == "__main__":
    main()
