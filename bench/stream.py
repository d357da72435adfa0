"""Live frames through beamhub's stream relay against raw ZeroMQ PUSH/PULL, to one and to four subscribers.

Each case sends the same frames (a JSON header and --frame-kib of bytes) from one DAQ process: (raw) over one
PUSH socket to each of 1 or 4 PULL processes; (relay) over beamhub_stream.Publisher to a real `beamhub serve`
(stream_policy block, so nothing is dropped and the DAQ runs at the pace of the slowest subscriber) and from it to
1 or 4 subscriber processes (beamhub_stream.subscribe), over ZeroMQ (stream_subscribe_bind) and over the websocket.
Throughput is frames every subscriber got over the time from the first send to the last frame at the slowest
subscriber. Runs interleave the cases; the table shows medians (range), the CPU a frame cost beamhub and each
subscriber, and the median of the per-run ratios relay/raw.

Run as root: /opt/beamhub/venv/bin/python bench/stream.py [--runs 5] [--frames 1000] [--frame-kib 1024]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import zmq
from spawn import BEAMHUB, BenchError, free_port, process_group, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "beamhub-stream"))
from beamhub_stream import Publisher, subscribe  # noqa: E402  (the client library of this checkout)

TARGET = 0.5
"""The relay's throughput to one subscriber, as a fraction of raw ZeroMQ's."""
FANOUT = (1, 4)
CASES = ("raw", "zeromq", "websocket")
LABELS = {"raw": "raw ZeroMQ PUSH/PULL", "zeromq": "relay, ZeroMQ subscriber", "websocket": "relay, websocket"}


def frame_header(proposal: str, number: int, shape: tuple[int, int]) -> bytes:
    return json.dumps({"proposal": proposal, "frame": number, "shape": list(shape), "dtype": "<u2",
                       "meta": {}}).encode()


def shape_of(kib: int) -> tuple[int, int]:
    """A uint16 frame of `kib` KiB: 512 columns."""
    return (kib * 1024 // 2 // 512, 512)


def raw_puller(port: int, count: int, ready: mp.Event, done: mp.Queue) -> None:
    """One raw consumer: a bound PULL socket, `count` frames, the time of the last."""
    context = zmq.Context()
    socket = context.socket(zmq.PULL)
    socket.bind(f"tcp://127.0.0.1:{port}")
    ready.set()
    for _ in range(count):
        header, data = socket.recv_multipart(copy=False)
        json.loads(header.bytes)
        assert len(data) > 0
    done.put((time.monotonic(), time.process_time()))
    socket.close()
    context.term()


def relay_subscriber(server: dict[str, str], via: str, count: int, ready: mp.Event, done: mp.Queue) -> None:
    """One subscriber of the relay: `count` frames complete and in order, the time of the last, its CPU time."""
    with subscribe(server["proposal"], url=server["url"], token=server["token"], via=via) as frames:
        ready.set()
        started = time.process_time()
        for _ in range(count):
            frame = frames.next(timeout=60)
            if frame is None or frame.gap:
                raise BenchError(f"the relay lost frames: {frame}")
        done.put((time.monotonic(), time.process_time() - started))


def _run(consumers: list[mp.Process], ready: list[mp.Event], done: mp.Queue,
         send: Callable[[], None]) -> tuple[float, float]:
    """Start the consumers, wait until they listen, send; seconds from the first send to the last frame, and the
    consumers' CPU seconds (the median consumer's)."""
    for process in consumers:
        process.start()
    for event in ready:
        if not event.wait(30):
            raise BenchError("a consumer did not start")
    started = time.monotonic()
    send()
    ends = [done.get(timeout=300) for _ in consumers]
    for process in consumers:
        process.join(30)
        if process.exitcode != 0:
            raise BenchError(f"a consumer failed (exit {process.exitcode})")
    return max(end for end, _ in ends) - started, statistics.median(cpu for _, cpu in ends)


def raw_case(subscribers: int, args: argparse.Namespace) -> tuple[float, float]:
    ports = [free_port() for _ in range(subscribers)]
    ready, done = [mp.Event() for _ in ports], mp.Queue()
    consumers = [mp.Process(target=raw_puller, args=(port, args.frames, event, done))
                 for port, event in zip(ports, ready, strict=True)]
    data, shape = os.urandom(args.frame_kib * 1024), shape_of(args.frame_kib)

    def send() -> None:
        context = zmq.Context()
        sockets = [context.socket(zmq.PUSH) for _ in ports]
        for socket, port in zip(sockets, ports, strict=True):
            socket.connect(f"tcp://127.0.0.1:{port}")
        for number in range(args.frames):
            header = frame_header("2024-00001", number, shape)
            for socket in sockets:
                socket.send_multipart([header, data], copy=False)
        for socket in sockets:
            socket.close(linger=-1)
        context.term()

    return _run(consumers, ready, done, send)


def relay_case(via: str, subscribers: int, args: argparse.Namespace, server: dict[str, str]) -> tuple[float, float]:
    ready, done = [mp.Event() for _ in range(subscribers)], mp.Queue()
    consumers = [mp.Process(target=relay_subscriber, args=(server, via, args.frames, event, done)) for event in ready]
    data, shape = os.urandom(args.frame_kib * 1024), shape_of(args.frame_kib)

    def send() -> None:
        with Publisher(server["endpoint"], server["token"], copy=False) as daq:
            for number in range(args.frames):
                daq.send(server["proposal"], number, data, shape=shape, dtype="<u2")
            daq.check()

    return _run(consumers, ready, done, send)


@contextmanager
def beamhub_server(tmp: Path, args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """A `beamhub serve` with the relay (block policy) and a proposal; its URL, DAQ endpoint, admin token, pid."""
    port, token = free_port(), secrets.token_urlsafe(16)
    endpoint, subscribers = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    storage = tmp / "storage"
    storage.mkdir(mode=0o755)
    env = {**os.environ, "BEAMHUB_STATE_DIR": str(tmp / "state"), "BEAMHUB_BIND": f"127.0.0.1:{port}",
           "BEAMHUB_ADMIN_TOKEN": token, "BEAMHUB_STORAGE_ROOT": str(storage), "BEAMHUB_STREAM_BIND": endpoint,
           "BEAMHUB_STREAM_SUBSCRIBE_BIND": subscribers, "BEAMHUB_STREAM_POLICY": "block",
           "BEAMHUB_STREAM_MAX_FRAME_BYTES": str(args.frame_kib * 1024 + 4096)}
    url = f"http://127.0.0.1:{port}"
    with process_group([str(BEAMHUB), "serve"], env, tmp, tmp / "beamhub.log") as proc:
        wait_until(lambda: proc.poll() is None and httpx.get(f"{url}/api/v1/health").status_code == 200,
                   "beamhub to answer", 60)
        now = datetime.now(UTC)
        created = httpx.post(f"{url}/api/v1/proposals", headers={"Authorization": f"Bearer {token}"}, json={
            "id": "2024-00001", "title": "stream bench", "beamline": "b1", "members": [],
            "beamtime_start": now.isoformat(), "beamtime_end": (now + timedelta(hours=1)).isoformat()})
        if created.status_code != 201:
            raise BenchError(f"creating the proposal: {created.status_code} {created.text}")
        yield {"url": url, "endpoint": endpoint, "token": token, "proposal": "2024-00001", "pid": str(proc.pid)}


def cpu_seconds(pid: str) -> float:
    """User and system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_table(results: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace) -> bool:
    """The table; whether the target is met (the ZeroMQ subscriber, one subscriber)."""
    mb = args.frame_kib * 1024 / 1e6
    print(f"\n{args.frames} frames of {args.frame_kib} KiB (uint16 {shape_of(args.frame_kib)}), {args.runs} runs, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; frames/s each subscriber got, MB/s delivered to "
          "all: median (range); CPU ms a frame: beamhub, one subscriber (median)")
    print(f"{'case':<32}{'frames/s':>9}{'(range)':>14}{'MB/s':>7}{'(range)':>14}{'beamhub':>9}{'subscr.':>9}")
    for subscribers in FANOUT:
        for case in CASES:
            rows = results[f"{case}{subscribers}"]
            rates = [args.frames / seconds for seconds, _, _ in rows]
            relay_cpu = f"{statistics.median(c for _, c, _ in rows) * 1e3 / args.frames:.2f}" if case != "raw" else "-"
            print(f"{f'{LABELS[case]} x{subscribers}':<32}{statistics.median(rates):>9.0f}"
                  f"{f'({min(rates):.0f}-{max(rates):.0f})':>14}{statistics.median(rates) * mb * subscribers:>7.0f}"
                  f"{f'({min(rates) * mb * subscribers:.0f}-{max(rates) * mb * subscribers:.0f})':>14}"
                  f"{relay_cpu:>9}{statistics.median(c for _, _, c in rows) * 1e3 / args.frames:>9.2f}")
    print("\nrelay / raw, median of per-run ratios (range)")
    met = True
    for subscribers in FANOUT:
        for case in ("zeromq", "websocket"):
            ratios = [raw[0] / relay[0] for raw, relay in zip(results[f"raw{subscribers}"],
                                                               results[f"{case}{subscribers}"], strict=True)]
            median, verdict = statistics.median(ratios), ""
            if subscribers == 1 and case == "zeromq":
                met = median >= TARGET
                verdict = f"   target >= {TARGET}x: {'met' if met else 'MISSED'}"
            print(f"  {subscribers} subscriber(s), {case:<9}: {median:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                  f"{verdict}")
    return met


def timed(case: str, subscribers: int, args: argparse.Namespace,
          server: dict[str, str]) -> tuple[float, float, float]:
    """Seconds of one case, beamhub's CPU seconds in it (0 for raw), a subscriber's CPU seconds."""
    before = cpu_seconds(server["pid"])
    if case == "raw":
        seconds, subscriber = raw_case(subscribers, args)
        return seconds, 0.0, subscriber
    seconds, subscriber = relay_case(case, subscribers, args, server)
    return seconds, cpu_seconds(server["pid"]) - before, subscriber


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--frame-kib", type=int, default=1024)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/stream.py: run as root (beamhub serve keeps system accounts)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    results: dict[str, list[tuple[float, float, float]]] = {f"{case}{n}": [] for n in FANOUT for case in CASES}
    try:
        with beamhub_server(tmp, args) as server:
            warm_up = argparse.Namespace(**{**vars(args), "frames": 50})
            for via in ("zeromq", "websocket"):
                relay_case(via, 1, warm_up, server)  # untimed
            for run in range(args.runs):
                for subscribers in FANOUT:
                    for case in CASES:
                        results[f"{case}{subscribers}"].append(timed(case, subscribers, args, server))
                print(f"run {run + 1}: " + ", ".join(f"{k} {args.frames / v[-1][0]:.0f}/s" for k, v in results.items()),
                      flush=True)
    except BenchError as exc:
        print(f"bench/stream.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if print_table(results, args) else 1


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main(sys.argv[1:]))
