"""The catalogue as it grows, on a PostgreSQL this bench starts: 10^5 and 10^7 catalogued files.

Each size is its own database: the queried proposal (the member is in it and in 9 others) holds a tenth of the
rows, most in its dataset `big`; the other rows are spread over the other proposals (10 proposals in all at the
small size, 10^4 at the large one, so the member's proposals list goes from 10 to 10^4 proposals). Real files
(1-byte, ACLs set by registration, naming the member) exist only for the two pages queried: the proposal's first
folder `a000` (its root page) and `big/q0500` (a folder page in the middle of `big`); every other row is synthetic,
written by INSERT ... SELECT generate_series with the data_files indexes dropped and rebuilt from their own
definitions. Each run then times every listing at both sizes, call by call in turn, and the registration of 1,000 new
files into `big` (10^6 rows at the large size) against 1,000 into a new, empty dataset. The table gives
p50/p90/p99 over all runs and, per run, the ratios (large/small, member/admin, big/empty): their median (range);
for p99 also the ratio of the p99s over all runs ("p99 all"), which a single slow call moves less than a run's.
Sizes at 10^9 rows are projected from the measured bytes per row. Run as root (it sets ACLs, runs PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event

from beamhub.config import Settings
from beamhub.data.proposals.schemas import ProposalCreate
from beamhub.identity.principal import Principal
from beamhub.services import Services, build_services

ADMIN = Principal(username="admin-bench", user_id=None, roles=frozenset({"admin"}))
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SIZES = (100_000, 10_000_000)
PAGE, NEW_FILES, FOLDER_ROWS = 100, 1000, 1000
QUERIED = "2024-00000"
PG_SETTINGS = ("shared_buffers=1GB", "maintenance_work_mem=512MB", "max_wal_size=8GB", "checkpoint_timeout=30min",
               "max_parallel_maintenance_workers=2", "listen_addresses=''")


@dataclass
class Catalogue:
    """One size: its services, the timed listings, and what a registration needs."""

    rows: int
    proposals: int
    services: Services
    member: Principal
    cases: dict[str, Callable[[], Any]]
    build_seconds: float
    sizes: dict[str, int]
    statements: dict[str, int]


@contextmanager
def postgres(root: Path) -> Iterator[str]:
    """A PostgreSQL server of Debian's binaries in root, on a Unix socket only; its libpq URL base."""
    root.mkdir(mode=0o755)
    shutil.chown(root, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(root / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    options = " ".join(f"-c {setting}" for setting in PG_SETTINGS)
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(root / "db"), "-w", "-l", str(root / "log"),
                    "-o", f"-k {root} {options}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@/%s?host={root}"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(root / "db"), "-m", "fast", "stop"],
                       capture_output=True)


def build(root: Path, pg: str, rows: int, proposals: int) -> Catalogue:
    """A database and storage root holding `rows` catalogue rows; the timed listings on them."""
    start = time.perf_counter()
    name = f"catalogue{rows}"
    with psycopg.connect(pg % "postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    root.mkdir(mode=0o755)
    (root / "storage").mkdir(mode=0o755)
    url = (pg % name).replace("postgresql://", "postgresql+psycopg://")
    services = build_services(Settings(state_dir=root / "state", storage_root=root / "storage", database_url=url,
                                       manage_system_accounts=False, uid_min=152000, uid_max=152100))
    user = services.identity.create_user("benchcat", by=ADMIN)
    member = services.identity.principal_of(user)  # as a credential of theirs is resolved
    now = datetime.now(UTC)
    proposal = services.data.create(ADMIN, ProposalCreate(
        id=QUERIED, title="bench", beamline="b1", beamtime_start=now - timedelta(days=1), beamtime_end=now,
        members=[{"username": user.username}]))
    folder = services.data.proposal_dir(proposal)
    for real in ("a000", "big/q0500"):
        write_files(folder / real, PAGE)
        services.registration.register(ADMIN, proposal.id, real)
    fill(pg % name, user.id, rows, proposals)
    browse, data = services.browse, services.data
    cases = {"member page, root": lambda: browse.files(member, QUERIED, "", None, PAGE),
             "admin page, root": lambda: browse.files(ADMIN, QUERIED, "", None, PAGE),
             "member page, folder": lambda: browse.files(member, QUERIED, "big/q0500", None, PAGE),
             "admin page, folder": lambda: browse.files(ADMIN, QUERIED, "big/q0500", None, PAGE),
             "proposals list": lambda: data.list(member, None, 50)}
    for label, case in cases.items():
        answer = case()
        assert len(answer) == 10 if label == "proposals list" else len(answer[0]) == PAGE, f"{label} is short"
    return Catalogue(rows, proposals, services, member, cases, time.perf_counter() - start, table_sizes(pg % name),
                     statements(services, cases))


def statements(services: Services, cases: dict[str, Callable[[], Any]]) -> dict[str, int]:
    """SQL statements one call of each case sends."""
    sent: list[str] = []

    def count(*_: Any) -> None:
        sent.append("")

    event.listen(services.db.engine, "before_cursor_execute", count)
    try:
        counts = {}
        for label, case in cases.items():
            sent.clear()
            case()
            counts[label] = len(sent)
        return counts
    finally:
        event.remove(services.db.engine, "before_cursor_execute", count)


def write_files(folder: Path, count: int) -> None:
    """count 1-byte files f0000.h5 ... in folder (made with its parents)."""
    folder.mkdir(parents=True)
    for n in range(count):
        (folder / f"f{n:04d}.h5").write_bytes(b"x")


def fill(dsn: str, user_id: int, rows: int, proposals: int) -> None:
    """proposals - 1 more proposals (the member in 9), and `rows` synthetic file rows: a tenth in the queried
    proposal's dataset `big` (folders of FOLDER_ROWS), the rest spread over the others, folders of 100."""
    mine, others = rows // 10, rows - rows // 10
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")  # no foreign-key trigger per synthetic row
        conn.execute("SET synchronous_commit = off")
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'data_files' AND "
                               "indexname NOT LIKE '%pkey'").fetchall()
        for index, _ in indexes:
            conn.execute(f'DROP INDEX "{index}"')
        conn.execute("INSERT INTO proposals (id, title, beamline, tier, beamtime_start, beamtime_end, acl_version, "
                     "acl_applied_version, created_at) SELECT '2023-' || lpad(n::text, 5, '0'), 't', "
                     "'b' || (n %% 14), 'hot', now(), now(), 1, 1, now() FROM generate_series(1, %s) AS n",
                     (proposals - 1,))
        conn.execute("INSERT INTO proposal_members (proposal_id, user_id, role, added_at) SELECT '2023-' || "
                     "lpad(n::text, 5, '0'), %s, 'member', now() FROM generate_series(1, %s, %s) AS n LIMIT 9",
                     (user_id, proposals - 1, max(1, (proposals - 1) // 9)))
        conn.execute("INSERT INTO data_files (proposal_id, relpath, parent, size, mtime_ns, tier, registered_at) "
                     "SELECT %s, 'big/q' || lpad(k::text, 4, '0') || '/f' || lpad(j::text, 4, '0'), "
                     "'big/q' || lpad(k::text, 4, '0'), 1, 1, 'hot', now() FROM generate_series(0, %s) AS k, "
                     "generate_series(0, %s) AS j WHERE k <> 500",  # 500 holds the real files; one folder more instead
                     (QUERIED, max(0, mine // FOLDER_ROWS - 1) + (mine > 500 * FOLDER_ROWS), FOLDER_ROWS - 1))
        conn.execute("UPDATE datasets SET (file_count, total_bytes) = (SELECT count(*), sum(size) FROM data_files "
                     "WHERE proposal_id = %s AND relpath LIKE 'big/%%') WHERE proposal_id = %s AND name = 'big'",
                     (QUERIED, QUERIED))
        each = -(-others // (proposals - 1))  # rows of each other proposal, written proposal after proposal
        conn.execute("INSERT INTO data_files (proposal_id, relpath, parent, size, mtime_ns, tier, registered_at) "
                     "SELECT '2023-' || lpad((1 + i / %(each)s)::text, 5, '0'), 's/d' || "
                     "lpad((i %% %(each)s / 100)::text, 6, '0') || '/f' || i, 's/d' || "
                     "lpad((i %% %(each)s / 100)::text, 6, '0'), 1, 1, 'hot', now() "
                     "FROM generate_series(0, %(last)s) AS i", {"each": each, "last": others - 1})
        for _, definition in indexes:
            conn.execute(definition)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) data_files")  # the visibility map, for index-only pages
        conn.execute("ANALYZE")


def table_sizes(dsn: str) -> dict[str, int]:
    """Rows, heap bytes and index bytes of data_files (heap: main fork, its TOAST, visibility and free space maps)."""
    with psycopg.connect(dsn) as conn:
        count, heap, index = conn.execute(
            "SELECT (SELECT count(*) FROM data_files), pg_table_size('data_files'), "
            "pg_indexes_size('data_files')").fetchone()
    return {"rows": count, "heap": heap, "index": index}


def one_run(catalogues: list[Catalogue], requests: int) -> dict[tuple[str, int], list[float]]:
    """Milliseconds of `requests` calls of every listing at every size, round robin call by call (a burst of the
    host's other load hits every case alike), every other round in the opposite order."""
    cases = [(name, cat.rows, case) for name in catalogues[0].cases for cat in catalogues
             for case in (cat.cases[name],)]
    for _, _, case in cases:
        case()  # untimed: caches
    times: dict[tuple[str, int], list[float]] = {(name, rows): [] for name, rows, _ in cases}
    for n in range(requests):
        for name, rows, case in cases[::-1] if n % 2 else cases:  # no case always follows the same one
            start = time.perf_counter()
            case()
            times[name, rows].append((time.perf_counter() - start) * 1000)
    return times


def registrations(big: Catalogue, run: int) -> dict[str, float]:
    """Milliseconds of registering NEW_FILES new files into `big` and NEW_FILES into a new dataset."""
    folder = big.services.data.proposal_dir(big.services.data.get(ADMIN, QUERIED))
    times = {}
    order = [("register 1,000 into big", f"big/new{run:02d}"), ("register 1,000 into empty", f"new{run:02d}")]
    for case, relative in order[::-1] if run % 2 else order:  # each goes first in every other run
        write_files(folder / relative, NEW_FILES)
        start = time.perf_counter()
        result = big.services.registration.register(ADMIN, QUERIED, relative)
        times[case] = (time.perf_counter() - start) * 1000
        assert result.files == NEW_FILES, result
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ratio(top: list[list[float]], bottom: list[list[float]], q: float = 0.5) -> str:
    """The median (range) over runs of each run's ratio of the q-quantiles."""
    per_run = [percentile(a, q) / percentile(b, q) for a, b in zip(top, bottom, strict=True)]
    return f"{statistics.median(per_run):.2f} ({min(per_run):.2f}-{max(per_run):.2f})"


def report(samples: dict[tuple[str, int], list[list[float]]], registered: dict[str, list[float]],
           catalogues: list[Catalogue]) -> None:
    """The table: p50/p90/p99 per listing and size, growth ratios; registration; member/admin; sizes."""
    sizes = [cat.rows for cat in catalogues]
    small, large = sizes
    print(f"\n{'listing':<28}" + "".join(f"{f'{n:,} rows p50/p90/p99 ms':>31}" for n in sizes)
          + f"{'growth p50':>20}{'p99 all':>9}{'p99 per run':>20}")
    for case in dict.fromkeys(c for c, _ in samples):
        cells = "".join(f"{percentile(sum(samples[case, n], []), q):>10.2f}" for n in sizes for q in (.5, .9, .99))
        label = f"{case} ({catalogues[0].proposals:,}/{catalogues[1].proposals:,})" if "proposals" in case else case
        pooled = percentile(sum(samples[case, large], []), .99) / percentile(sum(samples[case, small], []), .99)
        print(f"{label:<28}{cells}{ratio(samples[case, large], samples[case, small]):>20}{pooled:>9.2f}"
              f"{ratio(samples[case, large], samples[case, small], .99):>20}")
    for where in ("root", "folder"):
        for n in sizes:
            print(f"member/admin page, {where}, at {n:,} rows (p50): "
                  f"{ratio(samples[f'member page, {where}', n], samples[f'admin page, {where}', n])}")
    print("SQL statements a call: " + ", ".join(f"{label} {n}" for label, n in catalogues[1].statements.items()))
    big, empty = registered["register 1,000 into big"], registered["register 1,000 into empty"]
    per_run = [b / e for b, e in zip(big, empty, strict=True)]
    print(f"register 1,000 files into `big` ({catalogues[1].rows // 10:,} rows): p50 {statistics.median(big):.0f} ms;"
          f" into an empty dataset: p50 {statistics.median(empty):.0f} ms; big/empty {statistics.median(per_run):.2f}"
          f" ({min(per_run):.2f}-{max(per_run):.2f})")
    for cat in catalogues:
        heap, index = cat.sizes["heap"] / cat.sizes["rows"], cat.sizes["index"] / cat.sizes["rows"]
        print(f"{cat.sizes['rows']:,} rows built in {cat.build_seconds:.0f} s: heap {cat.sizes['heap'] / 2**30:.2f} "
              f"GiB ({heap:.0f} B/row), indexes {cat.sizes['index'] / 2**30:.2f} GiB ({index:.0f} B/row); "
              f"at 10^9 rows: heap {heap * 1e9 / 2**40:.2f} TiB, indexes {index * 1e9 / 2**40:.2f} TiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=100, help="per listing, size and run")
    parser.add_argument("--sizes", type=int, nargs=2, default=SIZES, metavar=("SMALL", "LARGE"),
                        help="catalogue rows of the two databases (proposals: 10 at the small one, 10^4 at the large)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="beamhub-bench-catalogue-") as tmp, ExitStack() as stack:
        Path(tmp).chmod(0o755)
        pg = stack.enter_context(postgres(Path(tmp) / "pg"))
        catalogues = [build(Path(tmp) / str(n), pg, n, proposals) for n, proposals in zip(args.sizes, (10, 10_000),
                                                                                            strict=True)]
        print("real files exist only for the two pages queried (100 each) and the files registered; every other "
              "row is synthetic")
        samples: dict[tuple[str, int], list[list[float]]] = {}
        registered: dict[str, list[float]] = {}
        for run in range(args.runs):
            for key, times in one_run(catalogues, args.requests).items():
                samples.setdefault(key, []).append(times)
            for name, ms in registrations(catalogues[1], run).items():
                registered.setdefault(name, []).append(ms)
        report(samples, registered, catalogues)
        for cat in catalogues:
            cat.services.db.dispose()


if __name__ == "__main__":
    os.umask(0o022)
    main()
