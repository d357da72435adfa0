"""Live frames through beamhub's stream relay against raw ZeroMQ PUSH/PULL, to one and to four subscribers.

Each case sends the same frames (a JSON header and --frame-kib of bytes) from one DAQ process: (raw) over one
PUSH socket to each of 1 or 4 PULL processes; (relay) over beamhub_stream.Publisher to a real `beamhub serve`
(stream_policy block, so nothing is dropped and the DAQ runs at the pace of the slowest subscriber) and from it to
1 or 4 subscriber processes (beamhub_stream.subscribe, websockets). Throughput is frames every subscriber got over
the time from the first send to the last frame at the slowest subscriber. Runs interleave the cases; the table
shows medians (range) and the median of the per-run ratios relay/raw.

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
    done.put(time.monotonic())
    socket.close()
    context.term()


def relay_subscriber(url: str, token: str, proposal: str, count: int, ready: mp.Event, done: mp.Queue) -> None:
    """One subscriber of the relay: `count` frames complete and in order, the time of the last."""
    with subscribe(proposal, url=url, token=token) as frames:
        ready.set()
        for _ in range(count):
            frame = frames.next(timeout=60)
            if frame is None or frame.gap:
                raise BenchError(f"the relay lost frames: {frame}")
        done.put(time.monotonic())


def _run(consumers: list[mp.Process], ready: list[mp.Event], done: mp.Queue, send: Callable[[], None]) -> float:
    """Start the consumers, wait until they listen, send; seconds from the first send to the last frame."""
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
    return max(ends) - started


def raw_case(subscribers: int, args: argparse.Namespace) -> float:
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


def relay_case(subscribers: int, args: argparse.Namespace, server: dict[str, str]) -> float:
    ready, done = [mp.Event() for _ in range(subscribers)], mp.Queue()
    consumers = [mp.Process(target=relay_subscriber, args=(server["url"], server["token"], server["proposal"],
                                                          args.frames, event, done)) for event in ready]
    data, shape = os.urandom(args.frame_kib * 1024), shape_of(args.frame_kib)

    def send() -> None:
        with Publisher(server["endpoint"], server["token"], copy=False) as daq:
            for number in range(args.frames):
                daq.send(server["proposal"], number, data, shape=shape, dtype="<u2")
            daq.check()

    return _run(consumers, ready, done, send)


@contextmanager
def beamhub_server(tmp: Path, args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """A `beamhub serve` with the relay (block policy) and a proposal; its URL, DAQ endpoint and admin token."""
    port, token = free_port(), secrets.token_urlsafe(16)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    storage = tmp / "storage"
    storage.mkdir(mode=0o755)
    env = {**os.environ, "BEAMHUB_STATE_DIR": str(tmp / "state"), "BEAMHUB_BIND": f"127.0.0.1:{port}",
           "BEAMHUB_ADMIN_TOKEN": token, "BEAMHUB_STORAGE_ROOT": str(storage), "BEAMHUB_STREAM_BIND": endpoint,
           "BEAMHUB_STREAM_POLICY": "block", "BEAMHUB_STREAM_MAX_FRAME_BYTES": str(args.frame_kib * 1024 + 4096)}
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
        yield {"url": url, "endpoint": endpoint, "token": token, "proposal": "2024-00001"}


def print_table(results: dict[str, list[float]], args: argparse.Namespace) -> bool:
    """The table; whether the target is met."""
    mb = args.frame_kib * 1024 / 1e6
    print(f"\n{args.frames} frames of {args.frame_kib} KiB (uint16 {shape_of(args.frame_kib)}), {args.runs} runs, "
          f"{os.cpu_count()} CPUs; frames/s each subscriber got, MB/s delivered to all of them: median (range)")
    print(f"{'case':<26}{'frames/s':>10}{'(range)':>16}{'MB/s':>9}{'(range)':>16}")
    for subscribers in FANOUT:
        for case in ("raw", "relay"):
            rates = [args.frames / s for s in results[f"{case}{subscribers}"]]
            label = f"{'raw ZeroMQ PUSH/PULL' if case == 'raw' else 'beamhub relay'} x{subscribers}"
            print(f"{label:<26}{statistics.median(rates):>10.0f}{f'({min(rates):.0f}-{max(rates):.0f})':>16}"
                  f"{statistics.median(rates) * mb * subscribers:>9.0f}"
                  f"{f'({min(rates) * mb * subscribers:.0f}-{max(rates) * mb * subscribers:.0f})':>16}")
    print("\nrelay / raw, median of per-run ratios (range)")
    met = True
    for subscribers in FANOUT:
        ratios = [raw / relay for raw, relay in zip(results[f"raw{subscribers}"], results[f"relay{subscribers}"],
                                                    strict=True)]
        median = statistics.median(ratios)
        verdict = ""
        if subscribers == 1:
            met = median >= TARGET
            verdict = f"   target >= {TARGET}x: {'met' if met else 'MISSED'}"
        print(f"  {subscribers} subscriber(s): {median:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}){verdict}")
    return met


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
    results: dict[str, list[float]] = {f"{case}{n}": [] for n in FANOUT for case in ("raw", "relay")}
    try:
        with beamhub_server(tmp, args) as server:
            relay_case(1, argparse.Namespace(**{**vars(args), "frames": 50}), server)  # warm-up, untimed
            for run in range(args.runs):
                for subscribers in FANOUT:
                    results[f"raw{subscribers}"].append(raw_case(subscribers, args))
                    results[f"relay{subscribers}"].append(relay_case(subscribers, args, server))
                print(f"run {run + 1}: " + ", ".join(f"{k} {args.frames / v[-1]:.0f}/s" for k, v in results.items()),
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
