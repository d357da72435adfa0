"""Live frames through beamhub's stream relay against raw ZeroMQ PUSH/PULL, to one and to four subscribers.

Each case sends the same frames (a JSON header and --frame-kib of bytes) from one DAQ process: (raw) over one
PUSH socket to each of 1 or 4 PULL processes; (relay) over beamhub_stream.Publisher to a real `beamhub serve`
(stream_policy block, so nothing is dropped and the DAQ runs at the pace of the slowest subscriber) and from it to
1 or 4 subscriber processes (beamhub_stream.subscribe), over ZeroMQ (stream_subscribe_bind) and over the websocket.
Throughput is frames every subscriber got over the time from the first send to the last frame at the slowest
subscriber. A fourth case, one subscriber only, is the ceiling of any relay built on ZeroMQ on this host: the same
DAQ PUSH and PULL consumer with a process between them that forwards each frame in libzmq's own C loop (zmq.proxy,
PULL to PUSH, no Python a frame, no checks), its queues bounded and its frames' memory kept as beamhub's. Runs
interleave the cases; the table shows medians (range), the CPU a frame cost the DAQ, the relay's process (beamhub's
ZeroMQ I/O threads apart) and each subscriber, and the median of the per-run ratios to raw and to the ideal relay.

Run as root: /opt/beamhub/venv/bin/python bench/stream.py [--runs 5] [--frames 1000] [--frame-kib 1024]
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import NamedTuple

import httpx
import zmq
from spawn import BEAMHUB, BenchError, free_port, process_group, wait_until

from beamhub.streams.sockets import keep_frame_memory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "beamhub-stream"))
from beamhub_stream import Publisher, subscribe  # noqa: E402  (the client library of this checkout)

TARGET = 0.5
"""The relay's throughput to one subscriber, as a fraction of raw ZeroMQ's."""
FANOUT = (1, 4)
CASES = ("raw", "ideal", "zeromq", "websocket")
LABELS = {"raw": "raw ZeroMQ PUSH/PULL", "ideal": "ideal relay (zmq.proxy, C)", "zeromq": "relay, ZeroMQ subscriber",
          "websocket": "relay, websocket"}


class Row(NamedTuple):
    """One case in one run: its seconds, and the CPU seconds of the DAQ, of the relay's process (0 for raw), of its
    ZeroMQ I/O threads (beamhub's only) and of a subscriber (the median one)."""

    seconds: float
    daq: float
    relay: float
    io: float
    subscriber: float


IDEAL_QUEUE = 8
"""Frames the ideal relay queues each way: bounded as beamhub's relay is, so that it reuses its frames' memory."""
IDEAL_FANOUT = 1
"""zmq.proxy forwards PULL to PUSH, which deals frames out instead of copying them: the ideal relay has one
consumer."""


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
         send: Callable[[], None]) -> tuple[float, float, float]:
    """Start the consumers, wait until they listen, send; seconds from the first send to the last frame, the DAQ's
    CPU seconds (this process, its ZeroMQ I/O thread included) and the consumers' (the median consumer's)."""
    for process in consumers:
        process.start()
    for event in ready:
        if not event.wait(30):
            raise BenchError("a consumer did not start")
    started, daq = time.monotonic(), time.process_time()
    send()
    daq = time.process_time() - daq
    ends = [done.get(timeout=300) for _ in consumers]
    for process in consumers:
        process.join(30)
        if process.exitcode != 0:
            raise BenchError(f"a consumer failed (exit {process.exitcode})")
    return max(end for end, _ in ends) - started, daq, statistics.median(cpu for _, cpu in ends)


def push(ports: list[int], args: argparse.Namespace) -> Callable[[], None]:
    """The raw DAQ: each frame over one PUSH socket to each of these ports, as ZeroMQ alone does it."""
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

    return send


def raw_case(subscribers: int, args: argparse.Namespace) -> tuple[float, float, float]:
    ports = [free_port() for _ in range(subscribers)]
    ready, done = [mp.Event() for _ in ports], mp.Queue()
    consumers = [mp.Process(target=raw_puller, args=(port, args.frames, event, done))
                 for port, event in zip(ports, ready, strict=True)]
    return _run(consumers, ready, done, push(ports, args))


def ideal_relay(front: int, back: int, ready: mp.Event) -> None:
    """The ideal relay: a bound PULL's frames to a PUSH connected to the consumer, forwarded in libzmq's C loop, with
    beamhub's policy for frames' memory."""
    keep_frame_memory()
    pull, push_ = zmq.Context().socket(zmq.PULL), zmq.Context().socket(zmq.PUSH)  # an I/O thread each, as beamhub
    pull.setsockopt(zmq.RCVHWM, IDEAL_QUEUE)
    push_.setsockopt(zmq.SNDHWM, IDEAL_QUEUE)
    push_.setsockopt(zmq.RECONNECT_IVL, 1)  # the consumer binds after this connects: reach it within a millisecond
    pull.bind(f"tcp://127.0.0.1:{front}")
    push_.connect(f"tcp://127.0.0.1:{back}")
    ready.set()
    zmq.proxy(pull, push_)  # until the bench kills the process


def ideal_case(args: argparse.Namespace) -> Row:
    """The raw DAQ's frames through the ideal relay to one raw consumer."""
    front, back, relay_ready = free_port(), free_port(), mp.Event()
    ready, done = [mp.Event()], mp.Queue()
    consumers = [mp.Process(target=raw_puller, args=(back, args.frames, ready[0], done))]
    relay = mp.Process(target=ideal_relay, args=(front, back, relay_ready))
    relay.start()
    try:
        if not relay_ready.wait(30):
            raise BenchError("the ideal relay did not start")
        seconds, daq, subscriber = _run(consumers, ready, done, push([front], args))
        return Row(seconds, daq, cpu_seconds(str(relay.pid)), 0.0, subscriber)
    finally:
        relay.kill()
        relay.join(30)


def relay_case(via: str, subscribers: int, args: argparse.Namespace,
               server: dict[str, str]) -> tuple[float, float, float]:
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
    return _ticks(Path(f"/proc/{pid}/stat")) / os.sysconf("SC_CLK_TCK")


def io_cpu_seconds(pid: str) -> float:
    """User and system CPU seconds of a process's ZeroMQ I/O threads so far."""
    ticks = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if (task / "comm").read_text().startswith("ZMQbg/IO"):
                ticks += _ticks(task / "stat")
    return ticks / os.sysconf("SC_CLK_TCK")


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])




def cases(subscribers: int) -> tuple[str, ...]:
    return CASES if subscribers == IDEAL_FANOUT else tuple(case for case in CASES if case != "ideal")


def ratios(results: dict[str, list[Row]], case: str, base: str, subscribers: int) -> str:
    """The median (range) of the per-run ratios of `case`'s throughput to `base`'s."""
    each = [b.seconds / c.seconds
            for b, c in zip(results[f"{base}{subscribers}"], results[f"{case}{subscribers}"], strict=True)]
    return f"{statistics.median(each):.2f}x ({min(each):.2f}-{max(each):.2f})"


def print_table(results: dict[str, list[Row]], args: argparse.Namespace) -> bool:
    """The table; whether the target is met (the ZeroMQ subscriber, one subscriber)."""
    mb, per_frame = args.frame_kib * 1024 / 1e6, 1e3 / args.frames
    print(f"\n{args.frames} frames of {args.frame_kib} KiB (uint16 {shape_of(args.frame_kib)}), {args.runs} runs, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; frames/s each subscriber got, MB/s delivered to "
          "all: median (range); CPU ms a frame (medians): the DAQ, the relay's process and of it ZeroMQ's I/O "
          "threads, one subscriber, and all of them (the DAQ, the relay, every subscriber)")
    print(f"{'case':<32}{'frames/s':>9}{'(range)':>14}{'MB/s':>7}{'(range)':>14}{'DAQ':>6}{'relay':>7}{'I/O':>6}"
          f"{'subscr.':>8}{'all':>6}")
    for subscribers in FANOUT:
        for case in cases(subscribers):
            rows = results[f"{case}{subscribers}"]
            rates = [args.frames / row.seconds for row in rows]
            cpu = {name: f"{statistics.median(getattr(row, name) for row in rows) * per_frame:.2f}"
                   for name in ("daq", "relay", "io", "subscriber")}
            relay = cpu["relay"] if case != "raw" else "-"
            io = cpu["io"] if case not in ("raw", "ideal") else "-"
            total = statistics.median((row.daq + row.relay + row.subscriber * subscribers) * per_frame for row in rows)
            print(f"{f'{LABELS[case]} x{subscribers}':<32}{statistics.median(rates):>9.0f}"
                  f"{f'({min(rates):.0f}-{max(rates):.0f})':>14}{statistics.median(rates) * mb * subscribers:>7.0f}"
                  f"{f'({min(rates) * mb * subscribers:.0f}-{max(rates) * mb * subscribers:.0f})':>14}"
                  f"{cpu['daq']:>6}{relay:>7}{io:>6}{cpu['subscriber']:>8}{total:>6.2f}")
    print("\nmedian of per-run ratios (range)")
    met = statistics.median(raw.seconds / relay.seconds
                            for raw, relay in zip(results["raw1"], results["zeromq1"], strict=True)) >= TARGET
    print(f"  relay / raw, 1 subscriber, zeromq    : {ratios(results, 'zeromq', 'raw', 1)}   target >= {TARGET}x: "
          f"{'met' if met else 'MISSED'}")
    print(f"  relay / raw, 1 subscriber, websocket : {ratios(results, 'websocket', 'raw', 1)}")
    for case in ("zeromq", "websocket"):
        print(f"  relay / raw, 4 subscribers, {case:<9}: {ratios(results, case, 'raw', 4)}")
    print(f"  ideal relay / raw, 1 subscriber      : {ratios(results, 'ideal', 'raw', 1)}")
    print(f"  relay / ideal relay, 1 subscriber    : {ratios(results, 'zeromq', 'ideal', 1)}")
    return met


def timed(case: str, subscribers: int, args: argparse.Namespace, server: dict[str, str]) -> Row:
    """One case's Row."""
    if case == "raw":
        seconds, daq, subscriber = raw_case(subscribers, args)
        return Row(seconds, daq, 0.0, 0.0, subscriber)
    if case == "ideal":
        return ideal_case(args)
    before, io_before = cpu_seconds(server["pid"]), io_cpu_seconds(server["pid"])
    seconds, daq, subscriber = relay_case(case, subscribers, args, server)
    return Row(seconds, daq, cpu_seconds(server["pid"]) - before, io_cpu_seconds(server["pid"]) - io_before,
               subscriber)


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
    results: dict[str, list[Row]] = {f"{case}{n}": [] for n in FANOUT for case in cases(n)}
    try:
        with beamhub_server(tmp, args) as server:
            warm_up = argparse.Namespace(**{**vars(args), "frames": 50})
            for via in ("zeromq", "websocket"):
                relay_case(via, 1, warm_up, server)  # untimed
            for run in range(args.runs):
                for subscribers in FANOUT:
                    for case in cases(subscribers):
                        results[f"{case}{subscribers}"].append(timed(case, subscribers, args, server))
                print(f"run {run + 1}: " + ", ".join(f"{k} {args.frames / v[-1].seconds:.0f}/s"
                                                     for k, v in results.items()), flush=True)
    except BenchError as exc:
        print(f"bench/stream.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if print_table(results, args) else 1


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main(sys.argv[1:]))
