"""Registering many small files: `beamhub data register` (ACLs + SHA-256 catalogue) against bare `setfacl -R -m`.

Run as root: /opt/beamhub/venv/bin/python bench/ingest.py [--files 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from download import remove_accounts
from spawn import BEAMHUB, BenchError

PER_DIR, FILE_SIZE = 1000, 1024


@dataclass(frozen=True)
class Proposal:
    """The proposal whose folder holds both trees, and the reader both ways write into the ACLs."""

    id: str
    folder: Path
    uid: int
    gid: int  # the beamline staff group's


@dataclass(frozen=True)
class Step:
    """One timed command and its wall time."""

    label: str
    seconds: float


def cli_env(tmp: Path, storage: Path, names: list[str]) -> dict[str, str]:
    """The beamhub CLI's environment: temp state (SQLite) and storage, a UID block and a group of its own."""
    base = 100_000 + 1000 * secrets.randbelow(800)  # a block concurrent test runs are unlikely to share
    everyone = f"benchin{secrets.token_hex(3)}"
    names.append(everyone)
    return {**os.environ, "BEAMHUB_STATE_DIR": str(tmp / "state"), "BEAMHUB_STORAGE_ROOT": str(storage),
            "BEAMHUB_UID_MIN": str(base), "BEAMHUB_UID_MAX": str(base + 999), "BEAMHUB_ALL_USERS_GROUP": everyone}


def beamhub_cli(env: dict[str, str], *args: str) -> str:
    """Run `beamhub ARGS`; its stdout, or BenchError with its stderr."""
    out = subprocess.run([str(BEAMHUB), *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"beamhub {' '.join(args)} exited {out.returncode}: {(out.stderr or out.stdout)[-800:]}")
    return out.stdout


def create_proposal(env: dict[str, str], storage: Path, names: list[str]) -> Proposal:
    """A member (in the beamline's staff group, so the ACL names one user and one group) and their proposal."""
    beamline = f"bi{secrets.token_hex(3)}"  # its staff group is new: removed at the end
    member, staff = f"benchin{secrets.token_hex(3)}", f"{beamline}-staff"
    names.extend([member, staff])
    beamhub_cli(env, "user", "create", member, "--group", staff)
    now = datetime.now(UTC)
    proposal = f"2099-{secrets.randbelow(10**5):05d}"
    beamhub_cli(env, "proposal", "create", proposal, "--title", "ingest benchmark", "--beamline", beamline,
                "--start", (now - timedelta(days=1)).isoformat(), "--end", now.isoformat(), "--member", member)
    folder = storage / "hot" / beamline / proposal
    if not folder.is_dir():
        raise BenchError(f"beamhub proposal create made no folder {folder}")
    return Proposal(proposal, folder, pwd.getpwnam(member).pw_uid, grp.getgrnam(staff).gr_gid)


def build_tree(root: Path, files: int) -> None:
    """`files` files of FILE_SIZE bytes, PER_DIR to a directory (d0000/f0000.dat ...), each with other bytes."""
    block = os.urandom(FILE_SIZE)
    root.mkdir(mode=0o755)
    for index in range(files):
        directory = root / f"d{index // PER_DIR:04d}"
        if index % PER_DIR == 0:
            directory.mkdir(mode=0o755)
        fd = os.open(directory / f"f{index % PER_DIR:04d}.dat", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, index.to_bytes(8, "little") + block[8:])
        finally:
            os.close(fd)


def make_trees(staging: Path, proposal: Proposal, files: int) -> tuple[Path, Path]:
    """Two identical trees with no ACL, built outside the proposal (whose default ACL they would inherit),
    then renamed into its folder; written back to disk so no writeback runs while a step is timed."""
    trees = []
    for name in ("by-setfacl", "by-beamhub"):
        build_tree(staging / name, files)
        os.rename(staging / name, proposal.folder / name)
        trees.append(proposal.folder / name)
    os.sync()
    return trees[0], trees[1]


def timed(label: str, argv: list[str], env: dict[str, str]) -> tuple[Step, str]:
    """Run argv, timed from the exec to the exit; the step and the command's stdout."""
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"{argv[0]} exited {out.returncode}: {(out.stderr or out.stdout)[-800:]}")
    return Step(label, seconds), out.stdout


def check_acl(path: Path, proposal: Proposal) -> None:
    """BenchError unless the ACL of path names the member and the staff group (a step did its work)."""
    acl = subprocess.run(["getfacl", "-nc", str(path)], capture_output=True, text=True, check=True).stdout
    for entry in (f"user:{proposal.uid}:r", f"group:{proposal.gid}:r"):
        if entry not in acl:
            raise BenchError(f"{path} has no ACL entry {entry}:\n{acl}")


def check_register(stdout: str, files: int, fresh: bool) -> None:
    """BenchError unless register catalogued every file: all added (fresh) or all unchanged (again)."""
    counts = re.search(r"(\d+) files:\s+(\d+) added,\s+\d+ updated,\s+(\d+) unchanged", stdout)
    want = (files, files, 0) if fresh else (files, 0, files)
    if counts is None or tuple(int(c) for c in counts.groups()) != want:
        raise BenchError(f"beamhub data register: expected {want} (files, added, unchanged), got: {stdout.strip()}")


def measure(env: dict[str, str], proposal: Proposal, trees: tuple[Path, Path], files: int) -> list[Step]:
    """setfacl on one tree, register on the other, then each again on its (now ACLed) tree."""
    by_setfacl, by_beamhub = trees
    spec = f"u:{proposal.uid}:rX,g:{proposal.gid}:rX"
    setfacl = ["setfacl", "-R", "-m", spec, str(by_setfacl)]
    register = [str(BEAMHUB), "data", "register", str(by_beamhub), "-p", proposal.id]
    steps = []
    for again in (False, True):
        suffix = "again, same tree" if again else "fresh tree, no ACL"
        step, _ = timed(f"setfacl -R -m ({suffix})", setfacl, env)
        check_acl(by_setfacl / "d0000" / "f0000.dat", proposal)
        steps.append(step)
        step, stdout = timed(f"beamhub data register ({'again, nothing changed' if again else suffix})",
                             register, env)
        check_register(stdout, files, fresh=not again)
        check_acl(by_beamhub / "d0000" / "f0000.dat", proposal)
        steps.append(step)
        print("  ".join(f"{s.label} {s.seconds:.2f} s" for s in steps[-2:]), file=sys.stderr, flush=True)
    return steps


def print_table(runs: list[list[Step]], files: int) -> None:
    """Per step: median seconds (and range) over the runs, files/s, and the median (and range) of the per-run
    ratios to that run's fresh setfacl: each run compares its steps side by side, the table never divides the
    medians of different runs."""
    columns = list(zip(*runs, strict=True))
    print(f"\n{files} files of {FILE_SIZE} B in {-(-files // PER_DIR)} directories; page cache warm; SQLite catalogue; "
          f"median of {len(runs)} runs, each on new trees")
    print(f"{'step':<50}{'seconds':>9}{'range':>13}{'files/s':>10}{'x setfacl':>11}{'range':>13}")
    for column in columns:
        seconds = [step.seconds for step in column]
        ratios = [step.seconds / run[0].seconds for step, run in zip(column, runs, strict=True)]
        median = statistics.median(seconds)
        print(f"{column[0].label:<50}{median:>9.2f}{f'{min(seconds):.2f}-{max(seconds):.2f}':>13}"
              f"{files / median:>10.0f}{statistics.median(ratios):>11.2f}{f'{min(ratios):.2f}-{max(ratios):.2f}':>13}")
    register = statistics.median(run[1].seconds / run[0].seconds for run in runs)
    print(f"target: register within 3x of setfacl -R (fresh), median of per-run ratios: {register:.2f}x "
          f"{'met' if register <= 3 else 'MISSED'}")


def run(tmp: Path, files: int, runs: int) -> None:
    """For each run: new accounts, proposal and trees, each step timed; then the table."""
    storage, staging = tmp / "storage", tmp / "staging"
    for folder in (storage, staging, tmp / "state"):
        folder.mkdir(mode=0o755)
    names: list[str] = []
    results = []
    try:
        env = cli_env(tmp, storage, names)
        for number in range(1, runs + 1):
            proposal = create_proposal(env, storage, names)
            print(f"run {number}/{runs}: building two trees of {files} files", file=sys.stderr, flush=True)
            trees = make_trees(staging, proposal, files)
            results.append(measure(env, proposal, trees, files))
            for tree in trees:
                shutil.rmtree(tree)
        print_table(results, files)
    finally:
        remove_accounts(names)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """--files N, --runs N (each >= 1)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=100_000, help=f"files per tree, {PER_DIR} a directory "
                                                              "(default 100000)")
    p.add_argument("--runs", type=int, default=5, help="runs, each on new trees; the table shows medians (default 5)")
    args = p.parse_args(argv)
    if args.files < 1 or args.runs < 1:
        p.error("--files and --runs must be at least 1")
    return args


def main(argv: list[str]) -> int:
    """Check prerequisites, run in a temp dir that is always removed."""
    args = parse_args(argv)
    missing = [what for what, ok in (("run as root (beamhub creates system accounts)", os.geteuid() == 0),
                                     (f"{BEAMHUB}: run `bash scripts/install.sh`", os.access(BEAMHUB, os.X_OK)),
                                     ("setfacl/getfacl: apt-get install acl", shutil.which("getfacl"))) if not ok]
    if missing:
        print("ingest benchmark cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: accounts and trees removed
    tmp = Path(os.path.realpath(tempfile.mkdtemp(prefix="beamhub-bench-in-")))
    tmp.chmod(0o755)
    try:
        run(tmp, args.files, args.runs)
    except BenchError as exc:
        print(f"ingest benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
