"""Throughput of one large file: `cat`, nginx static, beamhub itself, beamhub behind nginx (X-Accel-Redirect).

Run as root: /opt/beamhub/venv/bin/python bench/download.py [--size-mib 1024] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from spawn import BEAMHUB, BenchError, free_port, process_group, wait_until
from spawn import _expect as expect

NGINX = Path("/usr/sbin/nginx")
SITE = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "beamhub.conf"
ACCEL_PREFIX, STATIC_PREFIX = "/_beamhub_files", "/static"
BLOCK = 16 * 1024 * 1024  # one os.urandom block, written over and over
BEAMLINE, RELPATH = "bench", "scan/data.bin"
TARGETS = {"beamhub": 0.5, "accel": 0.95}  # the targets, as a fraction of nginx static


@dataclass(frozen=True)
class Data:
    """The file every variant reads, and how beamhub names it."""

    path: Path
    size: int
    proposal: str
    token: str  # the member's API token


@dataclass(frozen=True)
class Server:
    """A running server: its base URL and its process group (the one whose CPU time is counted)."""

    url: str
    pgid: int


Sample = tuple[float, float, float]
"""One full read: GB/s, the CPU seconds the serving side spent on it, and seconds to the first byte."""


def beamhub_env(tmp: Path, storage: Path, admin: str, names: list[str]) -> dict[str, str]:
    """`beamhub serve`'s environment: temp state and storage, a UID block of its own, a group only it uses."""
    base = 100_000 + 1000 * secrets.randbelow(800)  # a block concurrent test runs are unlikely to share
    everyone = f"benchdl{secrets.token_hex(3)}"
    names.append(everyone)
    return {**os.environ, "BEAMHUB_STATE_DIR": str(tmp / "state"), "BEAMHUB_STORAGE_ROOT": str(storage),
            "BEAMHUB_ADMIN_TOKEN": admin, "BEAMHUB_UID_MIN": str(base), "BEAMHUB_UID_MAX": str(base + 999),
            "BEAMHUB_ALL_USERS_GROUP": everyone}


@contextmanager
def beamhub(env: dict[str, str], log: Path, accel: bool) -> Iterator[Server]:
    """A `beamhub serve` on a free port (X-Accel-Redirect answers if `accel`)."""
    port = free_port()
    env = {**env, "BEAMHUB_BIND": f"127.0.0.1:{port}"}
    if accel:
        env["BEAMHUB_DOWNLOAD_ACCEL_PREFIX"] = ACCEL_PREFIX
    base = f"http://127.0.0.1:{port}"
    with process_group([str(BEAMHUB), "serve"], env, log.parent, log) as proc:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"beamhub serve exited with {proc.returncode}; log {log}")
            return httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200
        wait_until(healthy, f"beamhub serve on port {port}", 60)
        yield Server(base, proc.pid)


def render_site(upstream: str, port: int, storage: Path) -> str:
    """deploy/nginx/beamhub.conf with its placeholders filled; fails if one is left."""
    text = SITE.read_text()
    for name, value in {"LISTEN": f"127.0.0.1:{port}", "SERVER_NAME": "localhost", "BEAMHUB": upstream,
                        "ACCEL_PREFIX": ACCEL_PREFIX, "STORAGE_ROOT": str(storage)}.items():
        text = text.replace(f"@{name}@", value)
    if re.search(r"@[A-Z_]+@", text):
        raise BenchError(f"{SITE} has a placeholder this benchmark does not fill")
    return text


def static_site(port: int, storage: Path) -> str:
    """A plain server aliasing the storage root, with the same file settings as the site's internal location."""
    return (f"server {{\n    listen 127.0.0.1:{port};\n    server_name localhost;\n"
            f"    location ^~ {STATIC_PREFIX}/ {{\n        alias {storage}/;\n"
            "        disable_symlinks on from=$document_root;\n        sendfile on;\n        tcp_nopush on;\n"
            "    }\n}\n")


def nginx_conf(tmp: Path, sites: list[Path]) -> str:
    """A whole nginx.conf around the sites; the worker runs as root (see bench/README.md); all state in tmp."""
    temp = "".join(f"    {kind}_temp_path {tmp / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
    include = "".join(f"    include {site};\n" for site in sites)
    return (f"user root;\ndaemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\n"
            f"error_log {tmp / 'error.log'} notice;\nevents {{ worker_connections 64; }}\nhttp {{\n"
            f"    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n"
            f"    access_log {tmp / 'access.log'};\n{temp}{include}}}\n")


@contextmanager
def nginx(tmp: Path, upstream: str, storage: Path) -> Iterator[tuple[Server, Server]]:
    """Debian's nginx: the shipped site in front of `upstream`, plus a static server (same process)."""
    tmp.mkdir()
    site_port, static_port = free_port(), free_port()
    (tmp / "beamhub.conf").write_text(render_site(upstream, site_port, storage))
    (tmp / "static.conf").write_text(static_site(static_port, storage))
    (tmp / "nginx.conf").write_text(nginx_conf(tmp, [tmp / "beamhub.conf", tmp / "static.conf"]))
    argv = [str(NGINX), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")]
    site, static = f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{static_port}"
    with process_group(argv, dict(os.environ), tmp, tmp / "nginx.out") as proc:
        def listening() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"nginx exited with {proc.returncode}; see {tmp}/error.log and nginx.out")
            return httpx.get(f"{static}/", timeout=2).status_code == 404
        wait_until(listening, "nginx", 10)
        yield Server(site, proc.pid), Server(static, proc.pid)


def create_data(api: httpx.Client, size_mib: int, names: list[str]) -> Data:
    """A member, a proposal of theirs, a file of size_mib MiB in its folder, registered by the admin."""
    member = f"benchdl{secrets.token_hex(3)}"
    names.append(member)
    expect(api.post("/api/v1/users", json={"username": member}), 201)
    token = expect(api.post(f"/api/v1/users/{member}/tokens", json={"name": "bench"}), 201).json()["token"]
    now = datetime.now(UTC)
    proposal = expect(api.post("/api/v1/proposals", json={
        "id": f"2099-{secrets.randbelow(10**5):05d}", "title": "download benchmark", "beamline": BEAMLINE,
        "beamtime_start": (now - timedelta(days=1)).isoformat(), "beamtime_end": now.isoformat(),
        "members": [{"username": member}]}), 201).json()
    path = Path(proposal["path"]) / RELPATH
    path.parent.mkdir()
    write_file(path, size_mib)
    registered = expect(api.post(f"/api/v1/proposals/{proposal['id']}/register", json={"path": RELPATH}), 200)
    if registered.json()["files"] != 1:
        raise BenchError(f"register did not catalogue the file: {registered.text}")
    return Data(path, path.stat().st_size, proposal["id"], token)


def write_file(path: Path, size_mib: int) -> None:
    """size_mib MiB: one 16 MiB block of os.urandom written again and again, then fsynced."""
    block = os.urandom(BLOCK)
    with open(path, "wb") as out:
        left = size_mib * 1024 * 1024
        while left > 0:
            left -= out.write(block[:left])
        out.flush()
        os.fsync(out.fileno())


def group_cpu(pgids: set[int]) -> float:
    """CPU seconds (user + system) used so far by the live processes of these process groups."""
    ticks = 0
    for entry in os.scandir("/proc"):
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:  # gone meanwhile
            continue
        if fields and int(fields[2]) in pgids:  # after "pid (comm)": state ppid pgrp ... utime(11) stime(12)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cat_sample(data: Data) -> Sample:
    """`cat FILE > /dev/null`, timed from the exec to the exit; its own CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["cat", str(data.path)], stdout=subprocess.DEVNULL, check=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return data.size / seconds / 1e9, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 0.0


def curl_sample(url: str, data: Data, token: str | None, servers: list[Server]) -> Sample:
    """curl_rate of url, the CPU time the servers' process groups spent meanwhile, and its first byte."""
    pgids = {server.pgid for server in servers}
    before = group_cpu(pgids)
    rate, first_byte = curl_rate(url, data, token)
    return rate, group_cpu(pgids) - before, first_byte


def curl_rate(url: str, data: Data, token: str | None) -> tuple[float, float]:
    """GB/s of one `curl -o /dev/null` of url (curl's own time_total) and seconds to its first byte; the whole
    file with 200, or BenchError."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_starttransfer} "
            "%{time_total}", url]
    if token:
        argv[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    try:
        code, size, first_byte, seconds = out.stdout.split()
    except ValueError:
        raise BenchError(f"curl {url} failed: {out.stderr.strip()}") from None
    if (code, int(size)) != ("200", data.size):
        raise BenchError(f"curl {url}: HTTP {code}, {size} of {data.size} bytes")
    return data.size / float(seconds) / 1e9, float(first_byte)


Cases = dict[str, tuple[str, Callable[[], Sample]]]


def variants(data: Data, storage: Path, direct: Server, behind: Server, site: Server, static: Server) -> Cases:
    """Each measured variant: its label and a function doing one full read."""
    download = f"/api/v1/proposals/{data.proposal}/files/{RELPATH}"
    static_url = f"{static.url}{STATIC_PREFIX}/{data.path.relative_to(storage)}"
    return {"cat": ("(a) cat FILE > /dev/null", lambda: cat_sample(data)),
            "static": ("(b) nginx static (sendfile)", lambda: curl_sample(static_url, data, None, [static])),
            "beamhub": ("(c) beamhub direct (ACL checked)",
                        lambda: curl_sample(direct.url + download, data, data.token, [direct])),
            "accel": ("(d) nginx + beamhub X-Accel-Redirect",
                      lambda: curl_sample(site.url + download, data, data.token, [site, behind]))}


def measure(cases: Cases, runs: int) -> dict[str, list[Sample]]:
    """One untimed read per variant, then `runs` rounds in turn (a drift in the host's load hits all alike)."""
    for _, run in cases.values():
        run()
    results: dict[str, list[Sample]] = {key: [] for key in cases}
    for n in range(runs):
        for key, (_, run) in cases.items():
            results[key].append(run())
        print(f"run {n + 1}/{runs}: " + "  ".join(f"{k} {v[-1][0]:.2f}" for k, v in results.items()),
              file=sys.stderr, flush=True)
    return results


def print_table(cases: Cases, results: dict[str, list[Sample]], size: int) -> None:
    """Per variant: median, min, max GB/s; the median (and range) of its per-run ratios to nginx static (each round
    measures every variant side by side); server CPU s per GB; the target, judged on the median ratio."""
    static = [rate for rate, _, _ in results["static"]]
    print(f"\n{size / 2**20:.0f} MiB file, page cache warm, {len(static)} runs; GB = 1e9 bytes; "
          "CPU = the serving processes' user+system seconds per GB sent (median); 1st byte = curl's "
          "time_starttransfer (median)")
    print(f"{'variant':<40}{'median GB/s':>12}{'min':>7}{'max':>7}{'x static':>10}{'range':>13}{'CPU s/GB':>10}"
          f"{'1st byte ms':>13}  target")
    for key, samples in results.items():
        rates = [rate for rate, _, _ in samples]
        ratios = [rate / ref for rate, ref in zip(rates, static, strict=True)]
        ratio, target = statistics.median(ratios), TARGETS.get(key)
        cpu = statistics.median(cpu for _, cpu, _ in samples) / (size / 1e9)
        first_byte = statistics.median(first for _, _, first in samples) * 1000
        verdict = f">= {target:.2f} {'met' if ratio >= target else 'MISSED'}" if target else ""
        print(f"{cases[key][0]:<40}{statistics.median(rates):>12.2f}{min(rates):>7.2f}{max(rates):>7.2f}"
              f"{ratio:>10.2f}{f'{min(ratios):.2f}-{max(ratios):.2f}':>13}{cpu:>10.2f}{first_byte:>13.1f}  {verdict}")


def remove_accounts(names: list[str]) -> None:
    """userdel -r and groupdel every account and group the benchmark made (beamhub creates both)."""
    for name in names:
        subprocess.run(["userdel", "-r", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def check_prereqs() -> list[str]:
    """One line per thing that is missing."""
    missing = [] if os.geteuid() == 0 else ["run as root (beamhub creates system accounts, nginx runs as root)"]
    for what, ok in ((BEAMHUB, os.access(BEAMHUB, os.X_OK)), (NGINX, NGINX.exists()),
                     ("curl", shutil.which("curl")), ("setfacl", shutil.which("setfacl"))):
        if not ok:
            missing.append(f"{what} missing: run `bash scripts/install.sh` (Debian: nginx curl acl)")
    return missing


def run(tmp: Path, args: argparse.Namespace) -> None:
    """Start both beamhubs and nginx, create the data, warm the cache, measure, print the table."""
    storage = tmp / "storage"
    storage.mkdir(mode=0o755)
    names: list[str] = []
    admin = secrets.token_urlsafe(24)
    env = beamhub_env(tmp, storage, admin, names)
    (tmp / "state").mkdir()
    try:
        with ExitStack() as stack:
            direct = stack.enter_context(beamhub(env, tmp / "beamhub-direct.log", accel=False))
            behind = stack.enter_context(beamhub(env, tmp / "beamhub-accel.log", accel=True))
            site, static = stack.enter_context(nginx(tmp / "nginx", behind.url.removeprefix("http://"), storage))
            api = stack.enter_context(httpx.Client(base_url=direct.url, timeout=600,
                                                   headers={"Authorization": f"Bearer {admin}"}))
            print(f"writing and registering a {args.size_mib} MiB file", file=sys.stderr, flush=True)
            data = create_data(api, args.size_mib, names)
            cases = variants(data, storage, direct, behind, site, static)
            print_table(cases, measure(cases, args.runs), data.size)
    finally:
        remove_accounts(names)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """--size-mib, --runs (>= 3), --keep-logs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=1024, help="size of the file in MiB (default 1024)")
    p.add_argument("--runs", type=int, default=5, help="timed reads per variant (at least 3, default 5)")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (the data file is removed)")
    args = p.parse_args(argv)
    if args.runs < 3:
        p.error("--runs must be at least 3")
    if args.size_mib < 1:
        p.error("--size-mib must be at least 1")
    return args


def main(argv: list[str]) -> int:
    """Check prerequisites, run in a temp dir that is removed afterwards (logs kept on failure)."""
    args = parse_args(argv)
    if missing := check_prereqs():
        print("download benchmark cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: servers stopped, accounts removed
    tmp = Path(os.path.realpath(tempfile.mkdtemp(prefix="beamhub-bench-dl-")))
    tmp.chmod(0o755)
    keep = args.keep_logs
    try:
        run(tmp, args)
    except BenchError as exc:
        print(f"download benchmark failed: {exc}\n  logs kept in {tmp}", file=sys.stderr)
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
