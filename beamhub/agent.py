"""The session agent: runs a session's program as the user and tells beamhub how it goes.

Started by a backend as `python -m beamhub.agent --session ID --callback URL --socket PATH
[--ready-path PATH] -- PROGRAM ARGS...`, with the per-session secret in $BEAMHUB_AGENT_SECRET.
It starts the program, waits until it answers HTTP on the session's Unix socket (when a ready path
is given; the socket lives in a directory only the user and beamhub may enter, so no other user's
process can stand in for the program),
reports "ready", sends activity heartbeats, and reports the program's exit. Stdlib only: it
runs inside whatever environment the session's image provides.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

SECRET_ENV = "BEAMHUB_AGENT_SECRET"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="beamhub.agent")
    parser.add_argument("--session", required=True)
    parser.add_argument("--callback", required=True, help="beamhub's base URL")
    parser.add_argument("--socket", required=True, help="the Unix socket the program answers on")
    parser.add_argument("--ready-path", default="", help="HTTP path that answers once the program is up")
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.program[:1] == ["--"]:
        args.program = args.program[1:]
    if not args.program:
        parser.error("no program to run")
    return args


class Reporter:
    """Posts the agent's events to beamhub; failures are retried by the caller."""

    def __init__(self, callback: str, session: str, secret: str) -> None:
        self.url = f"{callback.rstrip('/')}/api/v1/sessions/{session}/agent"
        self.secret = secret

    def send(self, event: dict[str, object]) -> bool:
        request = urllib.request.Request(
            self.url, data=json.dumps(event).encode(), method="POST",
            headers={"Content-Type": "application/json", "X-Beamhub-Agent-Secret": self.secret},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status < 300
        except (urllib.error.URLError, OSError):
            return False


def answers_http(socket_path: str, path: str) -> bool:
    """True once the program answers its session-specific path on the Unix socket.

    Any status counts (JupyterLab answers 403 without its token) except 404: a program that
    does not know the session's path is not the session's program.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1)
            conn.connect(socket_path)
            conn.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            status_line = conn.recv(16)
    except OSError:
        return False
    return status_line.startswith(b"HTTP/") and status_line[9:12] != b"404"


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU time of every process in a process group (kernels included)."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def send_with_retries(reporter: Reporter, event: dict[str, object], attempts: int = 5) -> None:
    for attempt in range(attempts):
        if reporter.send(event):
            return
        time.sleep(0.2 * (attempt + 1))


def supervise(args: argparse.Namespace, reporter: Reporter) -> int:
    """Run the program until it exits or the agent is told to stop; return its status."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    child = subprocess.Popen(args.program, env=env, stdin=subprocess.DEVNULL)
    if stopping:
        child.send_signal(signal.SIGTERM)
    ready_sent = False
    next_heartbeat = 0.0
    while True:
        try:
            child.wait(timeout=0.03 if not ready_sent else 0.5)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        if not ready_sent and (not args.ready_path or answers_http(args.socket, args.ready_path)):
            ready_sent = reporter.send({"event": "ready"})
        elif ready_sent and now >= next_heartbeat:
            reporter.send({"event": "activity", "cpu_seconds": group_cpu_seconds(os.getpgid(0))})
            next_heartbeat = now + args.heartbeat
    status = child.returncode
    if stopping:
        return 0
    send_with_retries(reporter, {"event": "exited", "status": status})
    return status if status >= 0 else 128 - status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        print(f"beamhub.agent: ${SECRET_ENV} is not set", file=sys.stderr)
        return 2
    return supervise(args, Reporter(args.callback, args.session, secret))


if __name__ == "__main__":
    sys.exit(main())
