"""System calls of a member's ACL check over a page of 1,000 files: per file (may_read), per folder (FolderWalks).

Builds /tmp/beamhub-aclwalk/<6 levels>/d0..d9/f000..f099 (ACLs naming UID 61500), then, for each
mode, runs itself under `strace -c -f` once checking the page and once doing nothing else, and
prints the difference per system call; then times each mode in this process (median of 21 pages, no strace).
Run as root; `bash bench/setup.sh` installs strace.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import posix1e

from beamhub.data.access import Caller, FolderWalks, may_read

ROOT = Path("/tmp/beamhub-aclwalk")
DEEP = ROOT / "storage" / "hot" / "b7" / "2024-00123" / "scan1"
CALLER = Caller(uid=61500, gids=frozenset({61500}))
FOLDERS, FILES = 10, 100


def build() -> list[Path]:
    """The tree (ACL: user 61500 r-x on folders, r-- on files, mask set, owner root), its files in page order."""
    shutil.rmtree(ROOT, ignore_errors=True)
    files = []
    for d in range(FOLDERS):
        folder = DEEP / f"d{d}"
        folder.mkdir(parents=True)
        for f in range(FILES):
            (folder / f"f{f:03d}.h5").write_bytes(b"x")
            files.append(folder / f"f{f:03d}.h5")
    for path in [ROOT, *ROOT.rglob("*")]:
        posix1e.ACL(text="u::rwx,g::---,o::---,u:61500:r-x,m::r-x").applyto(str(path))
    return files


def pages(files: list[Path], mode: str) -> int:
    """Check the page in the given mode; how many files the caller may read."""
    if mode == "per-file":
        return sum(may_read(path, CALLER) for path in files)
    if mode == "per-folder":
        walks = FolderWalks(CALLER)
        return sum(walks.may_read(path) for path in files)
    return 0


def page_time(files: list[Path], mode: str) -> float:
    """Seconds of one page's check in the given mode, the median of 21 (after one untimed)."""
    pages(files, mode)
    times = []
    for _ in range(21):
        start = time.perf_counter()
        pages(files, mode)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def syscalls(mode: str) -> dict[str, int]:
    """Calls by name of one run of this script under strace in the given mode."""
    out = subprocess.run(["strace", "-c", "-f", "-o", "/dev/stdout", sys.executable, __file__, "--check", mode],
                         capture_output=True, text=True, check=True).stdout
    rows = (re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line) for line in out.splitlines())
    return {m.group(2): int(m.group(1)) for m in rows if m and m.group(2) != "total"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", choices=["per-file", "per-folder", "none"])
    args = parser.parse_args()
    files = sorted(p for p in ROOT.rglob("*.h5")) if args.check else build()
    if args.check:
        readable = pages(files, args.check)
        assert args.check == "none" or readable == len(files), readable
        return
    base = syscalls("none")
    print(f"system calls over a page of {len(files)} files, path depth {len(files[0].parts) - 1}:")
    for mode in ("per-file", "per-folder"):
        calls = {name: n - base.get(name, 0) for name, n in syscalls(mode).items()}
        total = sum(n for n in calls.values() if n > 0)
        top = ", ".join(f"{name} {n}" for name, n in sorted(calls.items(), key=lambda kv: -kv[1]) if n > 0)
        print(f"  {mode:10} {total:6} ({total / len(files):.1f} a file): {top}")
    for mode in ("per-file", "per-folder"):
        print(f"  {mode:10} {page_time(files, mode) / len(files) * 1e6:.1f} µs a file (median of 21 pages)")
    shutil.rmtree(ROOT, ignore_errors=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
