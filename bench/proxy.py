"""Proxy overhead on one JupyterLab session: direct Unix socket, configurable-http-proxy, beamhub's proxy.

Run as root: /opt/beamhub/venv/bin/python bench/proxy.py [--rounds 5] [--seconds 2] [--ws 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import websockets
from download import remove_accounts
from load import Result, get, measure, tcp, unix
from spawn import BEAMHUB, IMAGE, SETUP, BenchError, _expect, _session_ready, free_port, process_group, wait_until

CHP = "configurable-http-proxy"
PATH = "api/status"
CONCURRENCY = (1, 50)
TARGETS = "beamhub >= 0.9x CHP req/s at 50 clients; p50 overhead (c)-(a) < 1 ms at 1 client; websocket ~1.0x direct"
WS_TOLERANCE = 1.10
"""A websocket round trip counts as ~1.0x direct up to this ratio."""
CASES = {"a": "(a) lab direct, Unix socket", "b": "(b) configurable-http-proxy", "c": "(c) beamhub proxy"}


@dataclass
class Setup:
    """Everything the rounds need: where each case is reached, with which credential, and whose CPU to count."""

    sid: str
    socket: str
    private: str
    beamhub_port: int
    beamhub_pid: int
    bearer: str
    chp_port: int
    chp_pid: int
    lab_pid: int
    kernel: str


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_lab(sid: str) -> tuple[int, str, str]:
    """The session's jupyter-lab: its PID, its Unix socket, and the private token it trusts."""
    marker = f"--ServerApp.base_url=/s/{sid}/".encode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if marker not in argv:
                    continue
                env = dict(line.partition(b"=")[::2] for line in (entry / "environ").read_bytes().split(b"\0") if line)
            except OSError:
                continue
            sock = next(a for a in argv if a.startswith(b"--ServerApp.sock=")).partition(b"=")[2].decode()
            return int(entry.name), sock, env[b"JUPYTER_TOKEN"].decode()
        time.sleep(0.1)
    raise BenchError(f"no jupyter-lab process found for session {sid}")


def beamhub_env(tmp: Path, admin: str, port: int, names: list[str]) -> dict[str, str]:
    """A UID block and an all-users group of its own (removed at the end), temp state."""
    base = 100_000 + 1000 * secrets.randbelow(800)
    everyone = f"benchpx{secrets.token_hex(3)}"
    names.append(everyone)
    return {**os.environ, "BEAMHUB_STATE_DIR": str(tmp / "state"), "BEAMHUB_BIND": f"127.0.0.1:{port}",
            "BEAMHUB_ADMIN_TOKEN": admin, "BEAMHUB_UID_MIN": str(base), "BEAMHUB_UID_MAX": str(base + 999),
            "BEAMHUB_ALL_USERS_GROUP": everyone}


@contextmanager
def started(tmp: Path, names: list[str]) -> Iterator[Setup]:
    """beamhub with one JupyterLab session and a kernel, and CHP routing /s/<id>/ to the same lab's socket."""
    port, admin = free_port(), secrets.token_urlsafe(24)
    (tmp / "state").mkdir()
    env = beamhub_env(tmp, admin, port, names)
    with ExitStack() as stack:
        log = tmp / "beamhub.log"
        proc = stack.enter_context(process_group([str(BEAMHUB), "serve"], env, tmp, log))
        api = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                               headers={"Authorization": f"Bearer {admin}"}))
        wait_until(lambda: proc.poll() is None and api.get("/api/v1/users").status_code < 500,
                   "beamhub serve to answer", 60)
        user = f"benchpx{secrets.token_hex(3)}"
        names.append(user)
        _expect(api.post("/api/v1/users", json={"username": user}), 201)
        bearer = _expect(api.post(f"/api/v1/users/{user}/tokens", json={"name": "bench"}), 201).json()["token"]
        body = {"user": user, "name": "proxy-bench", "kind": "jupyter", "ncores": os.cpu_count() or 1,
                "memory": "2G", "runtime": 1800}
        sid = _expect(api.post("/api/v1/sessions", json=body), 201).json()["id"]
        stack.callback(_stop_session, api, sid)
        auth = {"Authorization": f"Bearer {bearer}"}
        wait_until(_session_ready(api, sid, f"/s/{sid}/{PATH}", auth), f"beamhub session {sid}")
        lab_pid, sock, private = find_lab(sid)
        kernel = _expect(api.post(f"/s/{sid}/api/kernels", json={"name": "python3"}, headers=auth), 201).json()["id"]

        chp_port, chp_api, chp_token = free_port(), free_port(), secrets.token_hex(16)
        chp = stack.enter_context(process_group(
            [CHP, "--ip", "127.0.0.1", "--port", str(chp_port), "--api-ip", "127.0.0.1", "--api-port", str(chp_api),
             # 5.1.0 joins a unix+http target's path with the request's path again: without this, /s/x/s/x/...
             "--log-level", "warn", "--no-prepend-path"],
            {**os.environ, "CONFIGPROXY_AUTH_TOKEN": chp_token}, tmp, tmp / "chp.log"))
        routes = f"http://127.0.0.1:{chp_api}/api/routes/s/{sid}"
        chp_auth = {"Authorization": f"token {chp_token}"}
        wait_until(lambda: chp.poll() is None and httpx.get(routes, headers=chp_auth).status_code in (200, 404),
                   "configurable-http-proxy to answer", 30)
        target = "unix+http://" + quote(sock, safe="")
        _expect(httpx.post(routes, json={"target": target}, headers=chp_auth), 201)
        r = httpx.get(f"http://127.0.0.1:{chp_port}/s/{sid}/{PATH}", headers={"Authorization": f"token {private}"})
        if r.status_code != 200 or "started" not in r.text:
            raise BenchError(f"CHP -> {target}: {r.status_code} {r.text[:200]}")
        yield Setup(sid, sock, private, port, proc.pid, bearer, chp_port, chp.pid, lab_pid, kernel)


def _stop_session(api: httpx.Client, sid: str) -> None:
    with suppress(httpx.HTTPError):
        api.delete(f"/api/v1/sessions/{sid}")
        with suppress(BenchError):
            wait_until(lambda: api.get(f"/api/v1/sessions/{sid}").json()["state"] in ("stopped", "failed", "expired"),
                       f"session {sid} to stop", 30)


def http_cases(s: Setup) -> dict[str, tuple]:
    """(connect, request, PID of the proxy whose CPU is counted or None) per case."""
    path = f"/s/{s.sid}/{PATH}"
    return {"a": (unix(s.socket), get(path, "localhost", {"Authorization": f"token {s.private}"}), None),
            "b": (tcp("127.0.0.1", s.chp_port),
                  get(path, f"127.0.0.1:{s.chp_port}", {"Authorization": f"token {s.private}"}), s.chp_pid),
            "c": (tcp("127.0.0.1", s.beamhub_port),
                  get(path, f"127.0.0.1:{s.beamhub_port}", {"Authorization": f"Bearer {s.bearer}"}), s.beamhub_pid)}


def ws_cases(s: Setup) -> dict[str, tuple[str, dict[str, str], str | None]]:
    path = f"/s/{s.sid}/api/kernels/{s.kernel}/channels"
    return {"a": (f"ws://localhost{path}", {"Authorization": f"token {s.private}"}, s.socket),
            "b": (f"ws://127.0.0.1:{s.chp_port}{path}", {"Authorization": f"token {s.private}"}, None),
            "c": (f"ws://127.0.0.1:{s.beamhub_port}{path}", {"Authorization": f"Bearer {s.bearer}"}, None)}


def _execute_request(session: str) -> tuple[str, str]:
    msg_id = uuid.uuid4().hex
    msg = {"header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "bench",
                      "date": datetime.now(UTC).isoformat(), "version": "5.3"},
           "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
           "content": {"code": "pass", "silent": False, "store_history": False, "user_expressions": {},
                       "allow_stdin": False, "stop_on_error": True}}
    return msg_id, json.dumps(msg)


async def _ws_round_trips(uri: str, headers: dict[str, str], sock: str | None, n: int, warm: int) -> list[float]:
    """Seconds from sending an execute_request of `pass` to its execute_reply, n times on one connection."""
    kwargs = {"additional_headers": headers, "max_size": None, "open_timeout": 10}
    conn = await (websockets.unix_connect(sock, uri=uri, **kwargs) if sock else websockets.connect(uri, **kwargs))
    session, times = uuid.uuid4().hex, []
    async with conn:
        for i in range(warm + n):
            msg_id, text = _execute_request(session)
            t0 = time.perf_counter()
            await conn.send(text)
            while True:
                reply = json.loads(await asyncio.wait_for(conn.recv(), 10))
                if reply.get("msg_type") == "execute_reply" and reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
            if i >= warm:
                times.append(time.perf_counter() - t0)
    return times


def ws_round_trips(uri: str, headers: dict[str, str], sock: str | None, n: int) -> float:
    """Median round trip in ms."""
    return statistics.median(asyncio.run(_ws_round_trips(uri, headers, sock, n, warm=5))) * 1e3


def run_rounds(s: Setup, args: argparse.Namespace) -> tuple[dict, dict]:
    """Interleaved rounds: per round, per concurrency a, b, c; then the websocket a, b, c."""
    http = http_cases(s)
    results: dict[tuple[int, str], list[tuple[Result, float]]] = {(c, k): [] for c in CONCURRENCY for k in CASES}
    ws: dict[str, list[float]] = {k: [] for k in CASES}
    for n in range(args.rounds):
        for clients in CONCURRENCY:
            for key, (connect, request, pid) in http.items():
                cpu0, t0 = (cpu_seconds(pid) if pid else 0.0), time.perf_counter()
                r = measure(connect, [request], clients, args.seconds)
                proxy_cores = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0) if pid else float("nan")
                results[clients, key].append((r, proxy_cores))
        for key, (uri, headers, sock) in ws_cases(s).items():
            ws[key].append(ws_round_trips(uri, headers, sock, args.ws))
        line = "  ".join(f"{k}{c} {results[c, k][-1][0].rate:.0f}/s" for c in CONCURRENCY for k in CASES)
        print(f"round {n + 1}/{args.rounds}: {line}  ws " + " ".join(f"{k} {v[-1]:.2f}ms" for k, v in ws.items()),
              file=sys.stderr, flush=True)
    return results, ws


def _ratio(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    rs = [x / y for x, y in zip(xs, ys, strict=True)]
    return statistics.median(rs), min(rs), max(rs)


def print_tables(s: Setup, results: dict, ws: dict, args: argparse.Namespace) -> None:
    print(f"\nGET /s/<id>/{PATH} of one JupyterLab session, HTTP/1.1 keep-alive, {args.rounds} interleaved rounds of "
          f"{args.seconds:g} s per case (+0.5 s warm-up); client: bench/load.py (one uvloop process, raw sockets), "
          f"the same for every case; loopback on a shared 2-core host")
    print(f"{'clients':>7}  {'case':<32}{'req/s':>8}{'(min-max)':>16}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
          f"{'proxy cores':>12}{'proxy us/req':>13}{'client cpu':>11}")
    for clients in CONCURRENCY:
        for key, label in CASES.items():
            rows = results[clients, key]
            rates = [r.rate for r, _ in rows]
            cores = statistics.median(c for _, c in rows)
            per_req = statistics.median(c / r.rate * 1e6 if r.rate else float("nan") for r, c in rows)
            errors = sum(r.errors for r, _ in rows)
            first = next((r.first_error for r, _ in rows if r.first_error), "")
            print(f"{clients:>7}  {label:<32}{statistics.median(rates):>8.0f}"
                  f"{f'({min(rates):.0f}-{max(rates):.0f})':>16}{statistics.median(r.pct(0.5) for r, _ in rows):>8.2f}"
                  f"{statistics.median(r.pct(0.99) for r, _ in rows):>8.2f}{errors:>7}"
                  f"{'-' if key == 'a' else f'{cores:.2f}':>12}{'-' if key == 'a' else f'{per_req:.0f}':>13}"
                  f"{statistics.median(r.client_cpu for r, _ in rows):>10.0%}"
                  + (f"  first error: {first}" if first else ""))
    print("\nratios: median of per-round ratios (range)")
    verdicts = []
    for clients in CONCURRENCY:
        rate = {k: [r.rate for r, _ in results[clients, k]] for k in CASES}
        cb, ca, ba = _ratio(rate["c"], rate["b"]), _ratio(rate["c"], rate["a"]), _ratio(rate["b"], rate["a"])
        print(f"  {clients:>2} clients: req/s (c)/(b) {cb[0]:.2f}x ({cb[1]:.2f}-{cb[2]:.2f})   (c)/(a) {ca[0]:.2f}x "
              f"({ca[1]:.2f}-{ca[2]:.2f})   (b)/(a) {ba[0]:.2f}x ({ba[1]:.2f}-{ba[2]:.2f})")
        if clients == 50:
            verdicts.append(f"beamhub >= 0.9x CHP req/s at 50 clients: {cb[0]:.2f}x "
                            f"{'met' if cb[0] >= 0.9 else 'MISSED'}")
    p50 = {k: [r.pct(0.5) for r, _ in results[1, k]] for k in CASES}
    over = [c - a for c, a in zip(p50["c"], p50["a"], strict=True)]
    over_b = [b - a for b, a in zip(p50["b"], p50["a"], strict=True)]
    print(f"  p50 overhead at 1 client, per-round (x)-(a): (c) beamhub {statistics.median(over):.2f} ms "
          f"({min(over):.2f} to {max(over):.2f}); (b) CHP {statistics.median(over_b):.2f} ms "
          f"({min(over_b):.2f} to {max(over_b):.2f})")
    verdicts.append(f"p50 overhead (c)-(a) < 1 ms at 1 client: {statistics.median(over):.2f} ms "
                    f"{'met' if statistics.median(over) < 1 else 'MISSED'}")
    print(f"\nwebsocket kernel round trip (execute_request 'pass' -> execute_reply), median of {args.ws} per round, "
          f"one connection each")
    for key, label in CASES.items():
        ratio = _ratio(ws[key], ws["a"])
        print(f"  {label:<32}{statistics.median(ws[key]):>8.2f} ms ({min(ws[key]):.2f}-{max(ws[key]):.2f})"
              f"   x (a) {ratio[0]:.2f} ({ratio[1]:.2f}-{ratio[2]:.2f})")
    wsr = _ratio(ws["c"], ws["a"])[0]
    verdicts.append(f"websocket round trip ~1.0x direct (<= {WS_TOLERANCE:.2f}x): {wsr:.2f}x "
                    f"{'met' if wsr <= WS_TOLERANCE else 'MISSED'}")
    print("\ntargets:\n  " + "\n  ".join(verdicts))


def check_prereqs() -> list[str]:
    missing = [] if os.geteuid() == 0 else ["run as root (beamhub creates the bench user's system account)"]
    if not os.access(BEAMHUB, os.X_OK) or not os.access(IMAGE / "bin/jupyter-lab", os.X_OK):
        missing.append("beamhub or the default image missing: run `bash scripts/install.sh` as root")
    if not shutil.which(CHP):
        missing.append(f"{CHP} missing: {SETUP}")
    return missing


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 5, default 5)")
    p.add_argument("--seconds", type=float, default=2.0, help="measured seconds per case and round (default 2)")
    p.add_argument("--ws", type=int, default=50, help="websocket round trips per case and round (default 50)")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with the servers' logs")
    args = p.parse_args(argv)
    if args.rounds < 5:
        p.error("--rounds must be at least 5")
    if not 0.5 <= args.seconds <= 30 or not 10 <= args.ws <= 1000:
        p.error("--seconds takes 0.5 to 30, --ws 10 to 1000")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if missing := check_prereqs():
        print("proxy benchmark cannot run:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="beamhub-bench-proxy-"))
    tmp.chmod(0o755)
    names: list[str] = []
    try:
        with started(tmp, names) as setup:
            print(f"session {setup.sid} ready; {args.rounds} rounds", file=sys.stderr, flush=True)
            results, ws = run_rounds(setup, args)
            print_tables(setup, results, ws, args)
    except Exception as exc:  # noqa: BLE001 -- one line and the logs, never a traceback
        print(f"proxy benchmark failed: {type(exc).__name__}: {exc}\n  logs kept in {tmp}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; logs in {tmp}", file=sys.stderr)
        return 130
    finally:
        remove_accounts(names)
    if args.keep_logs:
        print(f"logs in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
