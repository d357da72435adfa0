"""HDF5 slicing: beamhub's /h5 routes (member's token, ACL checked) against h5grove's own FastAPI app, same file.

Run as root: /opt/beamhub/venv/bin/python bench/h5.py [--runs 5] [--seconds 3] [--frames 100] [--keep-seconds 0]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import h5py
import httpx
import load
import numpy as np
from download import BEAMHUB, beamhub, beamhub_env, remove_accounts
from spawn import BenchError, free_port, process_group, wait_until
from spawn import _expect as expect

RELPATH, STACK, LINE = "scan/data.h5", "/entry/data/stack", "/entry/data/line"
FRAME = 1024  # the stack's frames are FRAME x FRAME uint16
TARGET = 0.8  # the target for data slices, as a fraction of h5grove's throughput
# h5grove's router under uvicorn with the same settings as `beamhub serve` (one process, access log at info)
H5GROVE_APP = """
import sys, uvicorn
from fastapi import FastAPI
from h5grove.fastapi_utils import router, settings
settings.base_dir = sys.argv[1]
app = FastAPI()
app.include_router(router)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="info")
"""


@dataclass(frozen=True)
class Case:
    """One measured request: its label, route, query and number of concurrent clients; `target` if judged."""

    label: str
    route: str
    query: dict[str, str]
    clients: int
    target: bool


CASES = [
    Case("data frame bin (2 MiB), 1 client", "data", {"path": STACK, "selection": "5", "format": "bin"}, 1, True),
    Case("data frame bin (2 MiB), 8 clients", "data", {"path": STACK, "selection": "5", "format": "bin"}, 8, True),
    Case("data 100 floats json, 1 client", "data", {"path": LINE, "selection": "1000:1100", "format": "json"}, 1,
         True),
    Case("meta of the stack, 1 client", "meta", {"path": STACK}, 1, False),
]


@dataclass(frozen=True)
class Server:
    """Where a server answers and how its requests are built."""

    name: str
    port: int
    prefix: str  # the routes' prefix: beamhub's is under the proposal
    headers: dict[str, str]

    def path(self, route: str, query: dict[str, str]) -> str:
        return f"{self.prefix}/{route}?{urlencode({'file': RELPATH, **query})}"

    def request(self, case: Case) -> bytes:
        return load.get(self.path(case.route, case.query), f"127.0.0.1:{self.port}", self.headers)


def write_h5(path: Path, frames: int) -> None:
    """A 3-D uint16 stack (frames x FRAME x FRAME, contiguous) and a 1-D float64 line, fsynced."""
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        stack = f.create_dataset(STACK, shape=(frames, FRAME, FRAME), dtype="uint16")
        base = np.arange(FRAME * FRAME, dtype="uint16").reshape(FRAME, FRAME)
        for i in range(frames):
            stack[i] = base + i
        stack.attrs["units"] = "counts"
        f.create_dataset(LINE, data=np.linspace(0.0, 1.0, 100_000))
    with open(path, "rb") as fd:
        os.fsync(fd.fileno())


def create_data(api: httpx.Client, frames: int, names: list[str]) -> tuple[str, Path, str]:
    """A member with an API token, a proposal of theirs holding the HDF5 file, registered: (id, folder, token)."""
    member = f"benchh5{secrets.token_hex(3)}"
    names.append(member)
    expect(api.post("/api/v1/users", json={"username": member}), 201)
    token = expect(api.post(f"/api/v1/users/{member}/tokens", json={"name": "bench"}), 201).json()["token"]
    now = datetime.now(UTC)
    proposal = expect(api.post("/api/v1/proposals", json={
        "id": f"2099-{secrets.randbelow(10**5):05d}", "title": "h5 benchmark", "beamline": "bench",
        "beamtime_start": (now - timedelta(days=1)).isoformat(), "beamtime_end": now.isoformat(),
        "members": [{"username": member}]}), 201).json()
    folder = Path(proposal["path"])
    write_h5(folder / RELPATH, frames)
    registered = expect(api.post(f"/api/v1/proposals/{proposal['id']}/register", json={"path": RELPATH}), 200)
    if registered.json()["files"] != 1:
        raise BenchError(f"register did not catalogue the file: {registered.text}")
    return proposal["id"], folder, token


@contextmanager
def h5grove(base_dir: Path, log: Path) -> Iterator[int]:
    """h5grove's FastAPI router under uvicorn (one process), serving base_dir without authentication."""
    port = free_port()
    argv = [sys.executable, "-c", H5GROVE_APP, str(base_dir), str(port)]
    with process_group(argv, dict(os.environ), log.parent, log) as proc:
        def listening() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"h5grove exited with {proc.returncode}; log {log}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        wait_until(listening, f"h5grove on port {port}", 60)
        yield port


def check_same_bytes(servers: list[Server], frame: np.ndarray) -> None:
    """Case 1's bytes from every server equal numpy's frame; BenchError otherwise."""
    case = CASES[0]
    for server in servers:
        r = httpx.get(f"http://127.0.0.1:{server.port}{server.path(case.route, case.query)}",
                      headers=server.headers, timeout=60)
        if r.status_code != 200 or r.content != frame.tobytes():
            raise BenchError(f"{server.name}: {case.label} gave HTTP {r.status_code}, {len(r.content)} bytes, "
                             f"not the frame's {frame.nbytes} bytes")
    print(f"case 1 bytes identical from {', '.join(s.name for s in servers)} ({frame.nbytes} bytes, = numpy)",
          file=sys.stderr, flush=True)


Results = dict[tuple[int, str], list[load.Result]]


def measure(servers: list[Server], runs: int, seconds: float) -> Results:
    """Each run measures every case on both servers back to back (order swapped every run); failures abort."""
    results: Results = {(i, s.name): [] for i in range(len(CASES)) for s in servers}
    for n in range(runs):
        order = servers if n % 2 == 0 else servers[::-1]
        for i, case in enumerate(CASES):
            for server in order:
                result = load.measure(load.tcp("127.0.0.1", server.port), [server.request(case)], case.clients,
                                      seconds)
                if result.errors or not result.latencies:
                    raise BenchError(f"{server.name}, {case.label}: {result.errors} errors "
                                     f"({result.statuses}, {result.first_error})")
                results[(i, server.name)].append(result)
        print(f"run {n + 1}/{runs}: " + "  ".join(
            f"{i + 1}:{results[(i, servers[0].name)][-1].rate:.0f}/{results[(i, servers[1].name)][-1].rate:.0f}"
            for i in range(len(CASES))), file=sys.stderr, flush=True)
    return results


def print_table(results: Results, runs: int, seconds: float) -> None:
    """Per case: median req/s of each server, the median (range) of per-run ratios, p50/p99 (median over runs)."""
    print(f"\n{runs} runs of {seconds:g} s per case and server, interleaved; req/s and p50/p99 ms are medians "
          f"over runs; ratio = beamhub / h5grove req/s per run; load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':<36}{'beamhub req/s':>14}{'h5grove req/s':>14}{'ratio':>7}{'range':>12}"
          f"{'beamhub p50/p99':>17}{'h5grove p50/p99':>17}  target")
    for i, case in enumerate(CASES):
        ours, theirs = results[(i, "beamhub")], results[(i, "h5grove")]
        ratios = [a.rate / b.rate for a, b in zip(ours, theirs, strict=True)]
        ratio = statistics.median(ratios)
        verdict = f">= {TARGET} {'met' if ratio >= TARGET else 'MISSED'}" if case.target else ""
        print(f"{case.label:<36}{_median_rate(ours):>14.0f}{_median_rate(theirs):>14.0f}{ratio:>7.2f}"
              f"{f'{min(ratios):.2f}-{max(ratios):.2f}':>12}{_latency(ours):>17}{_latency(theirs):>17}  {verdict}")


def _median_rate(results: list[load.Result]) -> float:
    return statistics.median(r.rate for r in results)


def _latency(results: list[load.Result]) -> str:
    return (f"{statistics.median(r.pct(0.5) for r in results):.2f}/"
            f"{statistics.median(r.pct(0.99) for r in results):.2f}")


def run(tmp: Path, args: argparse.Namespace) -> None:
    """Start beamhub and h5grove, create the file, check case 1's bytes, measure, print the table."""
    storage = tmp / "storage"
    storage.mkdir(mode=0o755)
    (tmp / "state").mkdir()
    names: list[str] = []
    admin = secrets.token_urlsafe(24)
    env = beamhub_env(tmp, storage, admin, names)
    if args.keep_seconds is not None:
        env["BEAMHUB_H5_KEEP_SECONDS"] = str(args.keep_seconds)
    try:
        with ExitStack() as stack:
            ours = stack.enter_context(beamhub(env, tmp / "beamhub.log", accel=False))
            api = stack.enter_context(httpx.Client(base_url=ours.url, timeout=600,
                                                   headers={"Authorization": f"Bearer {admin}"}))
            print(f"writing and registering a {args.frames}x{FRAME}x{FRAME} uint16 stack", file=sys.stderr,
                  flush=True)
            proposal, folder, token = create_data(api, args.frames, names)
            port = stack.enter_context(h5grove(folder, tmp / "h5grove.log"))
            servers = [Server("beamhub", int(ours.url.rsplit(":", 1)[1]), f"/api/v1/proposals/{proposal}/h5",
                              {"Authorization": f"Bearer {token}"}),
                       Server("h5grove", port, "", {})]
            with h5py.File(folder / RELPATH, "r") as f:
                check_same_bytes(servers, f[STACK][5])
            print_table(measure(servers, args.runs, args.seconds), args.runs, args.seconds)
            kept = "the default" if args.keep_seconds is None else args.keep_seconds
            print(f"beamhub's h5_keep_seconds: {kept} (0: it opens the file on every request, as h5grove does)")
    finally:
        remove_accounts(names)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """--runs (>= 3), --seconds, --frames, --keep-logs, --keep-seconds."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs, each measuring every case (at least 3, default 5)")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per case and server (default 3)")
    p.add_argument("--frames", type=int, default=100, help="frames of 1024x1024 uint16 in the stack (default 100)")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (the data file is removed)")
    p.add_argument("--keep-seconds", type=float, help="beamhub's h5_keep_seconds (0: open the file on every request, "
                                                      "as h5grove does; default: the setting's default)")
    args = p.parse_args(argv)
    if args.runs < 3:
        p.error("--runs must be at least 3")
    if args.frames < 6 or args.seconds <= 0:
        p.error("--frames must be at least 6 and --seconds positive")
    if args.keep_seconds is not None and args.keep_seconds < 0:
        p.error("--keep-seconds must not be negative")
    return args


def main(argv: list[str]) -> int:
    """Check prerequisites, run in a temp dir that is removed afterwards (logs kept on failure)."""
    args = parse_args(argv)
    if os.geteuid() != 0 or not os.access(BEAMHUB, os.X_OK):
        print(f"h5 benchmark cannot run: run as root, with {BEAMHUB} installed (scripts/install.sh)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: servers stopped, accounts removed
    tmp = Path(os.path.realpath(tempfile.mkdtemp(prefix="beamhub-bench-h5-")))
    tmp.chmod(0o755)
    keep = args.keep_logs
    try:
        run(tmp, args)
    except BenchError as exc:
        print(f"h5 benchmark failed: {exc}\n  logs kept in {tmp}", file=sys.stderr)
        keep = True
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp / "storage", ignore_errors=True)
        if keep:
            print(f"logs in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
