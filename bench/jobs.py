"""Batch job submission: 200 through beamhub's API against 200 bare `sbatch` calls as the same user.

Both cases submit `true` to the test cluster's `hold` partition (State=DOWN: Slurm accepts and queues the job but never
starts it), so only submission is measured. The bare case is sbatch as root would start it for the user by hand,
with nothing in between: forked, setgid/setgroups/setuid to the user's GID and groups (the ones beamhub gives the job),
then exec sbatch with the options beamhub passes. Each run does both cases, 200 submissions back to back each (the
throughput of a script that submits a batch), alternating which goes first, and yields its own ratios; with
--interleave the cases take turns submission by submission instead (each submission then follows one of the other
case: no warm streak). The table shows the median of the per-run ratios and their range.

Run as root: /opt/beamhub/venv/bin/python bench/jobs.py [--runs 5] [--count 200] [--interleave]
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "scripts" / "slurm-cluster.sh"
SLURM_CONF = Path(os.environ.get("BEAMHUB_SLURM_DIR", "/var/lib/beamhub-slurm")) / "slurm.conf"
BEAMHUB = Path(os.environ.get("BENCH_BEAMHUB", "/opt/beamhub/venv/bin/beamhub"))
USER = "benchjobs"


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, round(0.99 * (len(values) - 1)))]


@contextmanager
def beamhub_server(state: Path) -> Iterator[tuple[str, str]]:
    """A `beamhub serve` that submits to the test cluster; its URL and admin token."""
    port, token = 18000 + secrets.randbelow(2000), secrets.token_urlsafe(16)
    env = {**os.environ, "BEAMHUB_STATE_DIR": str(state), "BEAMHUB_BIND": f"127.0.0.1:{port}",
           "BEAMHUB_ADMIN_TOKEN": token, "BEAMHUB_SLURM_CONF": str(SLURM_CONF)}
    with open(state / "server.log", "ab") as log:
        server = subprocess.Popen([str(BEAMHUB), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"beamhub did not start; see {state / 'server.log'}")
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=15)


def api_case(client: httpx.Client) -> Callable[[], float]:
    def submit() -> float:
        start = time.perf_counter()
        response = client.post("/api/v1/jobs", json={"command": "true", "partition": "hold", "memory": "100M",
                                                     "minutes": 5})
        elapsed = time.perf_counter() - start
        if response.status_code != 201:
            raise SystemExit(f"API submission failed: {response.status_code} {response.text}")
        return elapsed

    return submit


def sbatch_case(home: Path) -> Callable[[], float]:
    """sbatch run as the user, by hand, with the options beamhub passes."""
    account = pwd.getpwnam(USER)
    groups = os.getgrouplist(USER, account.pw_gid)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "USER": USER, "SLURM_CONF": str(SLURM_CONF)}
    argv = ["sbatch", "--parsable", "--partition=hold", "--mem=100M", "--time=5", "--cpus-per-task=1",
            f"--output={home}/beamhub-jobs/bare-%j.out", f"--error={home}/beamhub-jobs/bare-%j.err", "--wrap=true"]

    def submit() -> float:
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, cwd=home, user=account.pw_uid,
                              group=account.pw_gid, extra_groups=groups, umask=0o077)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"sbatch failed: {done.stderr.decode()}")
        return elapsed

    return submit


def back_to_back(cases: dict[str, Callable[[], float]], count: int, index: int) -> dict[str, list[float]]:
    """`count` submissions of one case, then of the other (which goes first alternates by run): each latency."""
    order = list(cases) if index % 2 == 0 else list(reversed(cases))
    return {name: [cases[name]() for _ in range(count)] for name in order}


def interleaved(cases: dict[str, Callable[[], float]], count: int, index: int) -> dict[str, list[float]]:
    """`count` submissions of each case, one of each in turn (the first of each pair alternating): each latency."""
    latencies: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(count):
        for name in (list(cases) if (i + index) % 2 == 0 else list(reversed(cases))):
            latencies[name].append(cases[name]())
    return latencies


def clear_queue() -> None:
    subprocess.run(["scancel", "--partition=hold"], env={**os.environ, "SLURM_CONF": str(SLURM_CONF)}, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--interleave", action="store_true", help="take turns submission by submission")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it starts the Slurm test cluster and submits as a user)")
    subprocess.run([str(CLUSTER), "start"], check=True)
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp, beamhub_server(Path(tmp)) as (url, token):
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        subprocess.run(["userdel", "-r", USER], capture_output=True)
        if admin.post("/api/v1/users", json={"username": USER}).status_code != 201:
            raise SystemExit("could not create the bench user")
        user_token = admin.post(f"/api/v1/users/{USER}/tokens", json={"name": "bench"}).json()["token"]
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {user_token}"}, timeout=60)
        cases = {"api": api_case(client), "sbatch": sbatch_case(Path(pwd.getpwnam(USER).pw_dir))}
        cases["api"]()  # makes ~/beamhub-jobs for the bare case too, and warms both paths
        cases["sbatch"]()
        rows = [run_once(cases, args.count, i, args.interleave) for i in range(args.runs)]
        clear_queue()
        subprocess.run(["userdel", "-r", USER], capture_output=True)
    report(rows, args.count, "interleaved" if args.interleave else "back to back")


def run_once(cases: dict[str, Callable[[], float]], count: int, index: int, interleave: bool) -> dict[str, list[float]]:
    result = (interleaved if interleave else back_to_back)(cases, count, index)
    clear_queue()
    return result


def report(rows: list[dict[str, list[float]]], count: int, mode: str) -> None:
    def ratios(metric: Callable[[list[float]], float]) -> str:
        values = [metric(row["api"]) / metric(row["sbatch"]) for row in rows]
        return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"

    print(f"{count} submissions per case, {len(rows)} runs, {mode}")
    print(f"{'case':8} {'jobs/s (median)':>16} {'mean ms':>8} {'p99 ms':>8}")
    for name in ("sbatch", "api"):
        rates = [len(row[name]) / sum(row[name]) for row in rows]
        means = [statistics.mean(row[name]) * 1000 for row in rows]
        p99s = [p99(row[name]) * 1000 for row in rows]
        print(f"{name:8} {statistics.median(rates):16.1f} {statistics.median(means):8.1f} "
              f"{statistics.median(p99s):8.1f}")
    print(f"API / sbatch, per submission (median of runs, range): mean {ratios(statistics.mean)}, p99 {ratios(p99)}; "
          "target <= 1.5x")


if __name__ == "__main__":
    sys.exit(main())
