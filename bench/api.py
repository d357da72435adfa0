"""REST API throughput with 1,000 users and real database tokens: beamhub against JupyterHub 6.

Run as root: /opt/beamhub/venv/bin/python bench/api.py [--rounds 5] [--seconds 2] [--clients 200] [--users 1000]
             [--workers 1]   (beamhub's `workers` setting; JupyterHub's hub is one process)
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from download import remove_accounts
from load import Result, get, measure, tcp
from spawn import BEAMHUB, HUB_CONFIG, IMAGE, SETUP, _expect, free_port, process_group, wait_until

LIST_LIMIT = 100
"""Users per listing page on both sides (JupyterHub's API pages at 200 at most by default)."""
CASES = {
    "user": ("GET one user (own token)", "GET /api/v1/users/{name}", "GET /hub/api/users/{name}"),
    "list": (f"list users ({LIST_LIMIT}, admin)", f"GET /api/v1/users?limit={LIST_LIMIT}",
             f"GET /hub/api/users?limit={LIST_LIMIT}"),
    "mine": ("list my sessions (own token)", "GET /api/v1/sessions", "GET /hub/api/users/{name} (servers field)"),
}
TARGETS = {"user": 3.0, "list": 2.0, "mine": 2.0}
P99_MS = 250.0
PARALLEL = 8
"""Connections that create the users and tokens (setup only)."""
SETTLE = 1.0
"""Seconds between two measured windows: what a server still does after its window (answers already queued, its
own bookkeeping) must not weigh on the next server's window."""


def names(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def in_parallel(fn: Callable[[httpx.Client, str], str], client_args: dict, items: list[str]) -> list[str]:
    """fn(client, item) for every item over PARALLEL keep-alive connections, results in order."""
    chunks = [items[i::PARALLEL] for i in range(PARALLEL)]

    def run(chunk: list[str]) -> list[str]:
        with httpx.Client(**client_args) as client:
            return [fn(client, item) for item in chunk]

    with ThreadPoolExecutor(PARALLEL) as pool:
        done = list(pool.map(run, chunks))
    out = [""] * len(items)
    for i, chunk in enumerate(done):
        out[i::PARALLEL] = chunk
    return out


@contextmanager
def beamhub_server(tmp: Path, users: list[str], accounts: list[str], workers: int) -> Iterator[dict[str, list[bytes]]]:
    """beamhub serve with the users, each with a token, and an admin user with one; the requests of every case.
    No system accounts (BEAMHUB_MANAGE_SYSTEM_ACCOUNTS=false): 1,000 useradd calls would be the setup's cost."""
    port, admin = free_port(), secrets.token_urlsafe(24)
    state = tmp / "beamhub-state"
    state.mkdir()
    base = 100_000 + 1000 * secrets.randbelow(800)
    everyone = f"benchapi{secrets.token_hex(3)}"
    accounts.append(everyone)
    env = {**os.environ, "BEAMHUB_STATE_DIR": str(state), "BEAMHUB_BIND": f"127.0.0.1:{port}",
           "BEAMHUB_ADMIN_TOKEN": admin, "BEAMHUB_MANAGE_SYSTEM_ACCOUNTS": "false", "BEAMHUB_UID_MIN": str(base),
           "BEAMHUB_UID_MAX": str(base + 9999), "BEAMHUB_ALL_USERS_GROUP": everyone,
           "BEAMHUB_WORKERS": str(workers)}
    log = tmp / "beamhub.log"
    with process_group([str(BEAMHUB), "serve"], env, tmp, log) as proc:
        client_args = {"base_url": f"http://127.0.0.1:{port}", "timeout": 60,
                       "headers": {"Authorization": f"Bearer {admin}"}}
        with httpx.Client(**client_args) as api:
            wait_until(lambda: proc.poll() is None and api.get("/api/v1/users").status_code < 500,
                       "beamhub serve to answer", 60)

        def create(client: httpx.Client, name: str) -> str:
            roles = ["admin"] if name == "benchadmin" else ["user"]
            _expect(client.post("/api/v1/users", json={"username": name, "roles": roles}), 201)
            return _expect(client.post(f"/api/v1/users/{name}/tokens", json={"name": "bench"}), 201).json()["token"]

        t0 = time.perf_counter()
        tokens = in_parallel(create, client_args, [*users, "benchadmin"])
        print(f"beamhub: {len(users)} users + tokens in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        host, bearer = f"127.0.0.1:{port}", [{"Authorization": f"Bearer {t}"} for t in tokens]
        yield {"port": port,  # type: ignore[dict-item]
               "user": [get(f"/api/v1/users/{u}", host, h) for u, h in zip(users, bearer, strict=False)],
               "list": [get(f"/api/v1/users?limit={LIST_LIMIT}", host, bearer[-1])],
               "mine": [get("/api/v1/sessions", host, h) for h in bearer[:-1]]}


@contextmanager
def jupyterhub_server(tmp: Path, users: list[str]) -> Iterator[dict[str, list[bytes]]]:
    """JupyterHub 6 (SQLite, like beamhub here) with the users, a token each, and an admin service token.
    Requests go to the hub's own port, not through its configurable-http-proxy: hub against beamhub."""
    hub_dir = tmp / "jupyterhub"
    hub_dir.mkdir(mode=0o700)
    port, hub_port, admin = free_port(), free_port(), secrets.token_hex(24)
    config = HUB_CONFIG.format(port=port, hub_port=hub_port, proxy_api_port=free_port(), image=IMAGE, admin=admin,
                               user="benchhub")
    config = config.replace('"read:users"]', '"read:users", "list:users"]')
    # users made through the API, no system accounts: the dummy authenticator (the default PAM one wants accounts)
    config += 'c.JupyterHub.authenticator_class = "dummy"\nc.Authenticator.allow_all = True\n'
    (hub_dir / "jupyterhub_config.py").write_text(config)
    env = {**os.environ, "PATH": f"{IMAGE}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    log = tmp / "jupyterhub.log"
    with process_group([f"{IMAGE}/bin/jupyterhub", "-f", str(hub_dir / "jupyterhub_config.py")], env, hub_dir,
                       log) as proc:
        client_args = {"base_url": f"http://127.0.0.1:{hub_port}", "timeout": 60,
                       "headers": {"Authorization": f"token {admin}"}}
        with httpx.Client(**client_args) as api:
            wait_until(lambda: proc.poll() is None and api.get("/hub/api/").status_code == 200,
                       "jupyterhub to answer", 60)
            t0 = time.perf_counter()
            for i in range(0, len(users), 250):
                _expect(api.post("/hub/api/users", json={"usernames": users[i:i + 250]}), 201)

        def token(client: httpx.Client, name: str) -> str:
            r = client.post(f"/hub/api/users/{name}/tokens", json={"note": "bench"})
            return _expect(r, 200, 201).json()["token"]

        tokens = in_parallel(token, client_args, users)
        print(f"jupyterhub: {len(users)} users + tokens in {time.perf_counter() - t0:.1f} s", file=sys.stderr,
              flush=True)
        host, auth = f"127.0.0.1:{hub_port}", [{"Authorization": f"token {t}"} for t in tokens]
        yield {"port": hub_port,  # type: ignore[dict-item]
               "user": [get(f"/hub/api/users/{u}", host, h) for u, h in zip(users, auth, strict=True)],
               "list": [get(f"/hub/api/users?limit={LIST_LIMIT}", host, {"Authorization": f"token {admin}"})],
               "mine": [get(f"/hub/api/users/{u}", host, h) for u, h in zip(users, auth, strict=True)]}


def run_rounds(sides: dict[str, dict], args: argparse.Namespace) -> dict[tuple[str, str], list[Result]]:
    """Per round, per case: beamhub then JupyterHub (interleaved), each with the same client."""
    results: dict[tuple[str, str], list[Result]] = {(c, s): [] for c in CASES for s in sides}
    for n in range(args.rounds):
        for case in CASES:
            for side, reqs in sides.items():
                results[case, side].append(measure(tcp("127.0.0.1", reqs["port"]), reqs[case], args.clients,
                                                   args.seconds))
                time.sleep(SETTLE)
        line = "  ".join(f"{c}/{s} {r[-1].rate:.0f}/s" for (c, s), r in results.items())
        print(f"round {n + 1}/{args.rounds}: {line}", file=sys.stderr, flush=True)
    return results


def print_table(results: dict[tuple[str, str], list[Result]], args: argparse.Namespace) -> None:
    print(f"\n{args.users} users with a database token each, {args.clients} concurrent keep-alive clients, "
          f"{args.rounds} interleaved rounds of {args.seconds:g} s per case (+0.5 s warm-up); client: bench/load.py "
          f"(one uvloop process, raw sockets) for both; loopback on a shared 2-core host; beamhub with "
          f"{args.workers} worker process{'es' if args.workers > 1 else ''}, JupyterHub's hub one process")
    print(f"{'case':<30}{'server':<12}{'req/s':>8}{'(min-max)':>14}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'client cpu':>11}")
    verdicts = []
    for case, (label, beam_req, hub_req) in CASES.items():
        for side in ("beamhub", "jupyterhub"):
            rs = results[case, side]
            rates = [r.rate for r in rs]
            first = next((r.first_error for r in rs if r.first_error), "")
            print(f"{label:<30}{side:<12}{statistics.median(rates):>8.0f}{f'({min(rates):.0f}-{max(rates):.0f})':>14}"
                  f"{statistics.median(r.pct(0.5) for r in rs):>9.1f}{statistics.median(r.pct(0.99) for r in rs):>9.1f}"
                  f"{sum(r.errors for r in rs):>8}{statistics.median(r.client_cpu for r in rs):>10.0%}"
                  + (f"  first error: {first}" if first else ""))
        ratios = [b.rate / h.rate if h.rate else float("inf")
                  for b, h in zip(results[case, "beamhub"], results[case, "jupyterhub"], strict=True)]
        ratio = statistics.median(ratios)
        print(f"{'':<30}{'ratio':<12}{ratio:>7.2f}x{f'({min(ratios):.2f}-{max(ratios):.2f})':>14}"
              f"   beamhub {beam_req}; JupyterHub {hub_req}")
        verdicts.append(f"{label}: beamhub >= {TARGETS[case]:g}x JupyterHub req/s: {ratio:.2f}x "
                        f"{'met' if ratio >= TARGETS[case] else 'MISSED'}")
    p99 = max(statistics.median(r.pct(0.99) for r in results[case, "beamhub"]) for case in CASES)
    errors = sum(r.errors for case in CASES for r in results[case, "beamhub"])
    verdicts.append(f"beamhub p99 < {P99_MS:g} ms at {args.clients} clients (worst case's median): {p99:.1f} ms "
                    f"{'met' if p99 < P99_MS else 'MISSED'}")
    verdicts.append(f"beamhub zero errors: {errors} {'met' if errors == 0 else 'MISSED'}")
    print("ratio: median of per-round ratios beamhub/JupyterHub req/s (range)\n\ntargets:\n  " + "\n  ".join(verdicts))


def check_prereqs() -> list[str]:
    missing = [] if os.geteuid() == 0 else ["run as root"]
    if not os.access(BEAMHUB, os.X_OK):
        missing.append("beamhub missing: run `bash scripts/install.sh` as root")
    for what in (IMAGE / "bin/jupyterhub",):
        if not os.access(what, os.X_OK):
            missing.append(f"{what} missing: {SETUP}")
    if not shutil.which("configurable-http-proxy"):
        missing.append(f"configurable-http-proxy missing (JupyterHub starts it): {SETUP}")
    return missing


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 5, default 5)")
    p.add_argument("--seconds", type=float, default=2.0, help="measured seconds per case, server and round")
    p.add_argument("--clients", type=int, default=200, help="concurrent connections (default 200)")
    p.add_argument("--users", type=int, default=1000, help="users on each side, a token each (default 1000)")
    p.add_argument("--workers", type=int, default=1, help="beamhub's worker processes (default 1)")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with the servers' logs")
    args = p.parse_args(argv)
    if args.rounds < 5:
        p.error("--rounds must be at least 5")
    if (not 0.5 <= args.seconds <= 30 or not 1 <= args.clients <= 1000 or not 10 <= args.users <= 5000
            or not 1 <= args.workers <= 16):
        p.error("--seconds takes 0.5 to 30, --clients 1 to 1000, --users 10 to 5000, --workers 1 to 16")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if missing := check_prereqs():
        print("api benchmark cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="beamhub-bench-api-"))
    tmp.chmod(0o755)
    users, accounts = names(args.users, "bu"), []
    try:
        with ExitStack() as stack:
            sides = {"beamhub": stack.enter_context(beamhub_server(tmp, users, accounts, args.workers)),
                     "jupyterhub": stack.enter_context(jupyterhub_server(tmp, users))}
            print_table(run_rounds(sides, args), args)
    except Exception as exc:  # noqa: BLE001 -- one line and the logs, never a traceback
        print(f"api benchmark failed: {type(exc).__name__}: {exc}\n  logs kept in {tmp}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; logs in {tmp}", file=sys.stderr)
        return 130
    finally:  # beamhub was told not to make accounts: remove any that exist anyway, and its group
        existing = {p.pw_name for p in pwd.getpwall()} | {g.gr_name for g in grp.getgrall()}
        remove_accounts([n for n in [*users, "benchadmin", *accounts] if n in existing])
    if args.keep_logs:
        print(f"logs in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
