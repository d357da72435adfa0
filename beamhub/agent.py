"""The session agent: runs a session's program as the user and tells beamhub how it goes.

Started by a backend as `python -m beamhub.agent --session ID --callback URL --socket PATH
[--ready-path PATH] [--log PATH --log-max BYTES] [--listen] -- PROGRAM ARGS...`, with the per-session secret in
$BEAMHUB_AGENT_SECRET. With --listen (a session on another host than beamhub) it also serves the program over TLS on
a port the kernel chooses, with the session's key and certificate from $BEAMHUB_TLS_KEY and $BEAMHUB_TLS_CERT, and
reports that host and port with "ready" (see beamhub.compute.relay).
It starts the program, waits until it answers HTTP on the session's Unix socket (when a ready path
is given; the socket lives in a directory only the user and beamhub may enter, so no other user's
process can stand in for the program),
reports "ready", sends activity heartbeats, and reports the program's exit. The program's output goes to its
log in the user's own space, written by the agent as the user (so the file is theirs, mode 0600), rotated once
at half of --log-max so that both halves together stay under it. Stdlib only: it
runs inside whatever environment the session's image provides.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from beamhub.compute import relay
from beamhub.compute.relay import CERT_ENV, KEY_ENV, PROXY_CERT_ENV

SECRET_ENV = "BEAMHUB_AGENT_SECRET"
PRIVATE_ENV = (SECRET_ENV, KEY_ENV, CERT_ENV, PROXY_CERT_ENV)
"""What the agent alone gets: never passed on to the session's program."""
PROPOSALS_ENV = "BEAMHUB_PROPOSALS"
"""JSON {proposal id: its data folder} of the proposals the user may read, linked into ~/proposals."""
PROPOSALS_README = (
    "Your proposals' data, read-only: each link leads to one proposal's folder. Save results in your home folder.\n"
    "您的课题数据（只读）：每个链接指向一个课题的文件夹。请将结果保存在您的主目录中。\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="beamhub.agent")
    parser.add_argument("--session", required=True)
    parser.add_argument("--callback", required=True, help="beamhub's base URL")
    parser.add_argument("--socket", required=True, help="the Unix socket the program answers on")
    parser.add_argument("--ready-path", default="", help="HTTP path that answers once the program is up")
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("--log", default="", help="where the program's output goes (default: the agent's own)")
    parser.add_argument("--log-max", type=int, default=10 * 2**20, help="bytes the log and its rotation may take")
    parser.add_argument("--listen", action="store_true", help="serve the program over TLS on a port of this node")
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


def open_log(path: str) -> int:
    """The log file, created 0600 in a 0700 directory; a symlink in its place is refused."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


class LogWriter:
    """Copies the program's output into its log; past half the cap, the log becomes LOG.1 and starts anew."""

    def __init__(self, path: str, cap: int) -> None:
        self.path = path
        self.half = max(cap // 2, 1)
        self.fd = open_log(path)
        self.size = os.fstat(self.fd).st_size
        self.copier: threading.Thread | None = None

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self.half:
            self.rotate()
        data = data[-self.half:]
        os.write(self.fd, data)
        self.size += len(data)

    def rotate(self) -> None:
        os.close(self.fd)
        os.replace(self.path, self.path + ".1")
        self.fd = open_log(self.path)
        self.size = 0

    def follow(self, source: int) -> None:
        """Copy from `source` in a thread until its last writer closes it."""
        self.copier = threading.Thread(target=self._copy, args=(source,), daemon=True)
        self.copier.start()

    def _copy(self, source: int) -> None:
        with os.fdopen(source, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                self.write(chunk)

    def drain(self, timeout: float = 2.0) -> None:
        """Wait a little for the last output (a process the program left behind may hold the pipe open)."""
        if self.copier is not None:
            self.copier.join(timeout)


def output_to_log(args: argparse.Namespace) -> LogWriter | None:
    """The program's log, or None (its output then goes where the agent's does) if it cannot be opened."""
    if not args.log:
        return None
    try:
        return LogWriter(args.log, args.log_max)
    except OSError as exc:
        print(f"beamhub.agent: cannot open the session's log {args.log}: {exc}", file=sys.stderr)
        return None


def start_program(args: argparse.Namespace, env: dict[str, str],
                  log: LogWriter | None) -> subprocess.Popen[bytes]:
    """Start the program, its output (stdout and stderr) copied into the log by a thread."""
    if log is None:
        return subprocess.Popen(args.program, env=env, stdin=subprocess.DEVNULL)
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(args.program, env=env, stdin=subprocess.DEVNULL, stdout=write_end,
                                 stderr=write_end)
    except OSError:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    log.follow(read_end)
    return child


def open_endpoint(args: argparse.Namespace) -> dict[str, object]:
    """With --listen, the TLS relay to the program's socket, serving already: its host and port for the "ready"
    report (else nothing to add)."""
    if not args.listen:
        return {}
    context = relay.server_context(os.path.dirname(args.socket), os.environ.get(KEY_ENV, ""),
                                   os.environ.get(CERT_ENV, ""), os.environ.get(PROXY_CERT_ENV, ""))
    endpoint = relay.Relay(relay.facing_address(args.callback), args.socket, context,
                           relay.beamhub_addresses(args.callback))
    endpoint.serve_in_background()
    return {"host": endpoint.host, "port": endpoint.port}


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
    try:
        ready = {"event": "ready", **open_endpoint(args)}
    except (OSError, ValueError) as exc:
        print(f"beamhub.agent: cannot open the session's TLS endpoint: {exc}", file=sys.stderr)
        send_with_retries(reporter, {"event": "exited", "status": 125})
        return 125
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    log = output_to_log(args)
    try:
        child = start_program(args, env, log)
    except OSError as exc:
        return cannot_start(args, reporter, log, exc)
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
            ready_sent = reporter.send(ready)
        elif ready_sent and now >= next_heartbeat:
            reporter.send({"event": "activity", "cpu_seconds": group_cpu_seconds(os.getpgid(0))})
            next_heartbeat = now + args.heartbeat
    status = child.returncode
    if log is not None:
        log.drain()
    if stopping:
        return 0
    send_with_retries(reporter, {"event": "exited", "status": status})
    return status if status >= 0 else 128 - status


def cannot_start(args: argparse.Namespace, reporter: Reporter, log: LogWriter | None, exc: OSError) -> int:
    """Say in the log why the program could not start, and report it as a shell would: 127 not found, 126 not
    runnable."""
    message = f"cannot run {args.program[0]}: {exc.strerror or exc}\n".encode()
    if log is not None:
        log.write(message)
    sys.stderr.buffer.write(message)
    status = 127 if isinstance(exc, FileNotFoundError) else 126
    send_with_retries(reporter, {"event": "exited", "status": status})
    return status


def link_proposals(home: str, listing: str) -> None:
    """Link each proposal in `listing` into HOME/proposals, as the user (never root: no symlink race to win).

    Links made before (named in proposals/.beamhub-links) are kept, re-pointed, or removed once unlisted; a
    `proposals` that is not a folder and any entry beamhub did not make stay untouched. Failures are only printed:
    the session starts regardless.
    """
    folder = os.path.join(home, "proposals")
    manifest = os.path.join(folder, ".beamhub-links")
    made: set[str] = set()
    try:
        wanted = {name: path for name, path in json.loads(listing or "{}").items()
                  if name and not name.startswith(".") and not {"/", "\n"} & set(name) and os.path.isabs(path)}
        if not os.path.lexists(folder):
            os.mkdir(folder, 0o700)
        if os.path.islink(folder) or not os.path.isdir(folder):
            raise OSError(f"{folder} exists and is not a folder; it is left as it is")
        with contextlib.suppress(FileNotFoundError), open(manifest) as made_file:
            made = set(made_file.read().split("\n")) - {""}
        for name in sorted(made | set(wanted)):
            entry = os.path.join(folder, name)
            ours = name in made and os.path.islink(entry)
            if ours and (name not in wanted or os.readlink(entry) != wanted[name]):
                os.unlink(entry)
            if name in wanted and not os.path.lexists(entry):
                os.symlink(wanted[name], entry)
                ours = True
            if ours and name in wanted:
                made.add(name)
            else:
                made.discard(name)
        with open(manifest + ".new", "w") as new_manifest:
            new_manifest.write("".join(f"{name}\n" for name in sorted(made)))
        os.replace(manifest + ".new", manifest)
        if not os.path.lexists(readme := os.path.join(folder, "README.txt")):
            with open(readme, "x", encoding="utf-8") as readme_file:
                readme_file.write(PROPOSALS_README)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        print(f"beamhub.agent: proposals not linked: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        print(f"beamhub.agent: ${SECRET_ENV} is not set", file=sys.stderr)
        return 2
    if PROPOSALS_ENV in os.environ:  # beamhub's sessions always pass it; an agent started by hand links nothing
        link_proposals(os.path.expanduser("~"), os.environ[PROPOSALS_ENV])
    return supervise(args, Reporter(args.callback, args.session, secret))


if __name__ == "__main__":
    sys.exit(main())
