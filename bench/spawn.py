"""Median time from request to a JupyterLab that answers HTTP: plain lab, beamhub, JupyterHub; and on the Slurm test
cluster, beamhub's Slurm backend against JupyterHub's batchspawner (bench/spawn_slurm.py).

Run as root: /opt/beamhub/venv/bin/python bench/spawn.py [--runs 7] [--cases lab,beamhub,jupyterhub]
  Slurm cases (scripts/slurm-cluster.sh start first): --cases lab,beamhub-slurm,batchspawner
"""

from __future__ import annotations

import argparse
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import spawn_slurm

IMAGE = Path(os.environ.get("BENCH_IMAGE", "/opt/beamhub/images/default"))
BEAMHUB = Path(os.environ.get("BENCH_BEAMHUB", "/opt/beamhub/venv/bin/beamhub"))
LAB_USER, HUB_USER, BEAMHUB_USER = "benchlab", "benchhub", "benchuser"
POLL, TIMEOUT, WARMUP = 0.05, 120.0, 1  # WARMUP: untimed first starts per case (page cache, first login)
SETUP = "run `bash bench/setup.sh` as root (after scripts/install.sh)"


class BenchError(Exception):
    """A failure the benchmark reports as one line, never as a traceback."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_jupyter_status(r: httpx.Response) -> bool:
    """True for a jupyter_server /api/status answer (200 with a JSON body naming `started`)."""
    if r.status_code != 200:
        return False
    try:
        return "started" in r.json()
    except ValueError:
        return False


def wait_until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Call `check` every POLL seconds until it is true; connection errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(POLL)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def process_group(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen]:
    """Run argv in its own session; on exit TERM (then KILL) its whole process group."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL whatever of it is left after `grace` seconds."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(POLL)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def check_prereqs(cases: list[str]) -> list[str]:
    """One line per thing that is missing, with the setup that provides it."""
    install, users = "run `bash scripts/install.sh` as root", {p.pw_name for p in pwd.getpwall()}
    exe, account = (lambda path: os.access(path, os.X_OK)), (lambda name: name in users)
    need = {"lab": [(IMAGE / "bin/jupyter-lab", exe, install), (LAB_USER, account, SETUP),
                    ("setpriv", shutil.which, "apt-get install util-linux")],
            "beamhub": [(BEAMHUB, exe, install)],
            "jupyterhub": [(IMAGE / "bin/jupyterhub", exe, SETUP),
                           (IMAGE / "bin/jupyterhub-singleuser", exe, SETUP),
                           ("configurable-http-proxy", shutil.which, SETUP), (HUB_USER, account, SETUP)],
            "beamhub-slurm": [(BEAMHUB, exe, install), *spawn_slurm.NEEDS],
            "batchspawner": [(IMAGE / "bin/batchspawner-singleuser", exe, SETUP), (HUB_USER, account, SETUP),
                             ("configurable-http-proxy", shutil.which, SETUP), *spawn_slurm.NEEDS]}
    missing = [] if os.geteuid() == 0 else ["run the benchmark as root (it starts servers as other users)"]
    for case in cases:
        missing += [f"{case}: {what} missing: {how}" for what, ok, how in need[case] if not ok(what)]
    return missing


@contextmanager
def lab_case(tmp: Path) -> Iterator[Callable[[], float]]:
    """(a) jupyter-lab started directly as LAB_USER, until /api/status answers 200."""
    pw = pwd.getpwnam(LAB_USER)
    env = {"HOME": pw.pw_dir, "USER": LAB_USER, "LOGNAME": LAB_USER, "LANG": "C.UTF-8",
           "PATH": f"{IMAGE}/bin:/usr/bin:/bin"}
    log = tmp / "lab.log"
    with httpx.Client(timeout=5) as client:
        def run() -> float:
            port, token = free_port(), secrets.token_hex(16)
            argv = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--",
                    f"{IMAGE}/bin/jupyter-lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                    f"--IdentityProvider.token={token}"]
            url, headers = f"http://127.0.0.1:{port}/api/status", {"Authorization": f"token {token}"}
            t0 = time.perf_counter()
            with process_group(argv, env, Path(pw.pw_dir), log) as proc:
                wait_until(lambda: _alive(proc, "jupyter-lab", log)
                           and is_jupyter_status(client.get(url, headers=headers)), "jupyter-lab")
                return time.perf_counter() - t0
        yield run


def _alive(proc: subprocess.Popen, what: str, log: Path) -> bool:
    """True while proc runs; raise with the log's tail once it has exited."""
    if proc.poll() is None:
        return True
    tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
    raise BenchError(f"{what} exited with {proc.returncode}; log {log}:\n  " + "\n  ".join(tail))


@contextmanager
def beamhub_case(tmp: Path, extra_env: dict[str, str] | None = None, username: str = BEAMHUB_USER
                 ) -> Iterator[Callable[[], float]]:
    """(b) beamhub's local backend (or, with extra_env, another): POST a session, until /s/{id}/api/status
    answers 200."""
    port, admin = free_port(), secrets.token_hex(24)
    base, state = f"http://127.0.0.1:{port}", tmp / f"beamhub-state-{port}"
    state.mkdir()
    env = {**os.environ, "BEAMHUB_STATE_DIR": str(state), "BEAMHUB_BIND": f"127.0.0.1:{port}",
           "BEAMHUB_ADMIN_TOKEN": admin, **(extra_env or {})}
    log = tmp / f"beamhub-{port}.log"
    with process_group([str(BEAMHUB), "serve"], env, tmp, log) as proc, \
            httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {admin}"}) as api:
        wait_until(lambda: _alive(proc, "beamhub serve", log) and api.get("/api/v1/users").status_code < 500,
                   "beamhub serve to answer", 60)
        # beamhub adopts no host account: the one an earlier run made goes, and a fresh state dir makes it anew
        subprocess.run(["userdel", "--remove", username], capture_output=True)
        _expect(api.post("/api/v1/users", json={"username": username}), 201)
        r = api.post(f"/api/v1/users/{username}/tokens", json={"name": "bench"})
        token = _expect(r, 201).json()["token"]
        names = (f"bench-{n}" for n in itertools.count())
        yield lambda: _beamhub_run(api, {"Authorization": f"Bearer {token}"}, next(names), username)


def _beamhub_run(api: httpx.Client, user: dict[str, str], name: str, username: str) -> float:
    """One timed session start; the session is then deleted, also when the start fails."""
    # The whole node, as the directly started JupyterLab has it: the same resources for both.
    body = {"user": username, "name": name, "kind": "jupyter", "ncores": os.cpu_count() or 1, "memory": "2G",
            "runtime": 600}
    t0 = time.perf_counter()
    session = _expect(api.post("/api/v1/sessions", json=body), 201).json()
    sid = session["id"]
    status_url = (session.get("url") or f"/s/{sid}/").rstrip("/") + "/api/status"
    try:
        wait_until(_session_ready(api, sid, status_url, user), f"beamhub session {sid}")
    except BaseException:
        with suppress(httpx.HTTPError):
            api.delete(f"/api/v1/sessions/{sid}")  # best effort: do not leave it running
        raise
    elapsed = time.perf_counter() - t0
    _expect(api.delete(f"/api/v1/sessions/{sid}"), 200, 202, 204)
    wait_until(lambda: api.get(f"/api/v1/sessions/{sid}").json()["state"] in ("stopped", "failed", "expired"),
               f"beamhub session {sid} to stop", 60)
    return elapsed


def _session_ready(api: httpx.Client, sid: str, status_url: str, user: dict[str, str]) -> Callable[[], bool]:
    """A wait_until check: lab answers through the proxy; each 10th poll raises if the session ended."""
    polls = itertools.count()

    def check() -> bool:
        if next(polls) % 10 == 0:
            s = api.get(f"/api/v1/sessions/{sid}").json()
            if s.get("state") in ("failed", "stopped", "expired"):
                raise BenchError(f"beamhub session {sid} ended {s.get('state')}: {s.get('reason')}")
        return is_jupyter_status(api.get(status_url, headers=user))
    return check


def _expect(r: httpx.Response, *codes: int) -> httpx.Response:
    """r if its status is one of codes, else a BenchError naming the request."""
    if r.status_code not in codes:
        raise BenchError(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:300]}")
    return r


HUB_CONFIG = """\
# run with the hub dir as cwd: database, cookie secret and pid files land there
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.spawner_class = "localprocess"
c.Authenticator.allowed_users = {{"{user}"}}
c.Spawner.cmd = ["{image}/bin/jupyterhub-singleuser"]
c.JupyterHub.services = [{{"name": "bench", "api_token": "{admin}"}}]
c.JupyterHub.load_roles = [{{"name": "bench", "services": ["bench"],
    "scopes": ["admin:users", "admin:servers", "tokens", "read:users"]}}]
"""


@contextmanager
def jupyterhub_case(tmp: Path, spawner_config: str = "", extra_env: dict[str, str] | None = None
                    ) -> Iterator[Callable[[], float]]:
    """(c) JupyterHub + LocalProcessSpawner (or the spawner spawner_config sets): POST the server until
    /user/{name}/api/status answers 200."""
    port, admin = free_port(), secrets.token_hex(24)
    hub_dir = tmp / f"jupyterhub-{port}"
    hub_dir.mkdir(mode=0o700)
    (hub_dir / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
        port=port, hub_port=free_port(), proxy_api_port=free_port(), image=IMAGE, admin=admin, user=HUB_USER)
        + spawner_config.format(image=IMAGE))
    env = {**os.environ, "PATH": f"{IMAGE}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}", **(extra_env or {})}
    log, base = tmp / "jupyterhub.log", f"http://127.0.0.1:{port}"
    argv = [f"{IMAGE}/bin/jupyterhub", "-f", str(hub_dir / "jupyterhub_config.py")]
    with process_group(argv, env, hub_dir, log) as proc, \
            httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"token {admin}"}) as api:
        wait_until(lambda: _alive(proc, "jupyterhub", log) and api.get("/hub/api/").status_code == 200,
                   "jupyterhub to answer", 60)
        users = f"/hub/api/users/{HUB_USER}"
        _expect(api.post(users), 201, 409)
        token = _expect(api.post(f"{users}/tokens", json={"note": "bench"}), 200, 201).json()["token"]
        yield lambda: _hub_run(api, proc, log, users, {"Authorization": f"token {token}"})


def _hub_run(api: httpx.Client, proc: subprocess.Popen, log: Path, users: str, user: dict[str, str]) -> float:
    """One timed single-user server start, then its stop (waited for)."""
    t0 = time.perf_counter()
    _expect(api.post(f"{users}/server"), 201, 202)
    wait_until(lambda: _alive(proc, "jupyterhub", log)
               and is_jupyter_status(api.get(f"/user/{HUB_USER}/api/status", headers=user)),
               "the JupyterHub single-user server")
    elapsed = time.perf_counter() - t0
    _expect(api.delete(f"{users}/server"), 202, 204)
    wait_until(lambda: not _expect(api.get(users), 200).json().get("servers"),
               "the JupyterHub single-user server to stop", 60)
    return elapsed


CASES: dict[str, tuple[str, Callable[[Path], AbstractContextManager[Callable[[], float]]]]] = {
    "lab": ("(a) jupyter-lab directly", lab_case),
    "beamhub": ("(b) beamhub local backend", beamhub_case),
    "jupyterhub": ("(c) JupyterHub 6 LocalProcessSpawner", jupyterhub_case),
    "beamhub-slurm": ("(d) beamhub on Slurm", lambda tmp: beamhub_case(tmp, spawn_slurm.beamhub_env(), "benchslurm")),
    "batchspawner": ("(e) JupyterHub 6 + SlurmSpawner",
                     lambda tmp: jupyterhub_case(tmp, spawn_slurm.SLURM_SPAWNER, spawn_slurm.slurm_env())),
}
PAIRS = [("beamhub-slurm", "batchspawner"), ("beamhub", "jupyterhub")]
"""Cases also compared with each other, run by run."""


def print_table(results: dict[str, list[float]]) -> None:
    """Median, min, max, and the median (and range) of the per-round ratios to plain jupyter-lab's, one row per case
    (each round runs every case side by side)."""
    ref = results.get("lab")
    print(f"\n{'case':<40}{'runs':>5}{'median s':>10}{'min s':>8}{'max s':>8}{'x (a)':>8}{'range':>13}")
    for case, times in results.items():
        ratios = [t / r for t, r in zip(times, ref, strict=False)] if ref else []  # a failed round leaves one short
        ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        print(f"{CASES[case][0]:<40}{len(times):>5}{statistics.median(times):>10.2f}{min(times):>8.2f}"
              f"{max(times):>8.2f}{ratio:>8}{spread:>13}")
    for ours, theirs in PAIRS:
        if results.get(ours) and results.get(theirs):
            ratios = [a / b for a, b in zip(results[ours], results[theirs], strict=False)]
            print(f"{CASES[ours][0]} / {CASES[theirs][0]}: median of per-run ratios {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f})")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """--runs N (>= 5), --cases, --keep-logs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7, help="timed runs per case (at least 5, default 7)")
    p.add_argument("--cases", default="lab,beamhub,jupyterhub", help=f"comma-separated, of: {','.join(CASES)}")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with every server's log")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.runs < 5:
        p.error("--runs must be at least 5")
    if not args.cases or set(args.cases) - CASES.keys():
        p.error(f"--cases takes names from {','.join(CASES)}")
    return args


def main(argv: list[str]) -> int:
    """Check prerequisites, start every case, warm each up, time them in turn, print the table."""
    args = parse_args(argv)
    if missing := check_prereqs(args.cases):
        print("spawn benchmark cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: every server gets stopped
    tmp = Path(tempfile.mkdtemp(prefix="beamhub-bench-"))
    tmp.chmod(0o755)
    results: dict[str, list[float]] = {case: [] for case in args.cases}
    try:
        with ExitStack() as stack:
            print("starting " + ", ".join(args.cases) + f"; {WARMUP} untimed run each", file=sys.stderr, flush=True)
            runs = {case: stack.enter_context(CASES[case][1](tmp)) for case in args.cases}
            for run in runs.values():
                for _ in range(WARMUP):
                    run()
            for n in range(args.runs):  # round robin: a drift in the host's load hits every case alike
                for case, run in runs.items():
                    results[case].append(run())
                print(f"run {n + 1}/{args.runs}: " + "  ".join(f"{c} {t[-1]:.2f}" for c, t in results.items()),
                      file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 -- one line and the logs, never a traceback
        print(f"spawn benchmark failed: {type(exc).__name__}: {exc}\n  logs kept in {tmp}", file=sys.stderr)
        if all(results.values()):
            print_table(results)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; logs in {tmp}", file=sys.stderr)
        return 130
    print_table(results)
    if args.keep_logs:
        print(f"logs in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
