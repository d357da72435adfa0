"""Live frames through a real beamhub: the DAQ publishes over ZeroMQ, members subscribe with beamhub_stream, over
ZeroMQ (stream_subscribe_bind) and over the websocket, each test on both.

1,000 frames reach two members complete and in order with their metadata; a non-member and an anonymous caller
are refused; so is a DAQ without a data:ingest token of a service account; a slow subscriber of a dropping relay
gets the newest frames with every gap reported while the server's memory stays put; a revoked token ends its
subscription within seconds.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import zmq
from beamhub_stream import Publisher, PublishRefused, StreamEnded, StreamRefused, stream_url, subscribe
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from helpers.http import free_port
from helpers.processes import proc_status

IMAGE = Path("/opt/beamhub/images/default")
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "beamhub-stream"
SHAPE = (64, 64)
MiB = 1024 * 1024


@dataclass
class World:
    server: Any
    proposal: str
    endpoint: str
    subscribers: str
    tokens: dict[str, str]
    names: dict[str, str]

    def subscribe(self, who: str, via: str = "auto", token: str | None = None) -> Any:
        subscription = subscribe(self.proposal, url=self.server.url, token=token or self.tokens[who], via=via)
        assert via == "auto" or subscription.via == via
        return subscription


VIAS = pytest.mark.parametrize("via", ["zeromq", "websocket"])


def frame_of(number: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Frame `number`: its own content, so that a mixed-up or damaged frame shows."""
    return (np.arange(int(np.prod(shape)), dtype="<u2").reshape(shape) + number).astype("<u2")


def _world(factory: Any, uid_env: dict[str, str], storage: Path, **env: str) -> World:
    endpoint, subscribers = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    server = factory(env={**uid_env, "BEAMHUB_STORAGE_ROOT": str(storage), "BEAMHUB_STREAM_BIND": endpoint,
                          "BEAMHUB_STREAM_SUBSCRIBE_BIND": subscribers, **env})
    names, tokens = {}, {}
    for who in ("pi", "member", "stranger"):
        names[who], tokens[who] = server.create_user(username=f"st{secrets.token_hex(3)}")
    names["daq"], _ = server.create_user(username=f"daq{secrets.token_hex(3)}", roles=["service"])
    tokens["daq"] = server.admin.post(f"/api/v1/users/{names['daq']}/tokens",
                                      json={"name": "daq", "scopes": ["data:ingest"]}).json()["token"]
    now = datetime.now(UTC)
    created = server.admin.post("/api/v1/proposals", json={
        "id": f"2024-{secrets.randbelow(10**5):05d}", "title": "Live frames", "beamline": "b3",
        "beamtime_start": (now - timedelta(hours=1)).isoformat(),
        "beamtime_end": (now + timedelta(hours=8)).isoformat(),
        "members": [{"username": names["pi"], "role": "pi"}, {"username": names["member"]}]})
    assert created.status_code == 201, created.text
    return World(server, created.json()["id"], endpoint, subscribers, tokens, names)


def _half(uid_env: dict[str, str], second: bool) -> dict[str, str]:
    """Half of the module's UID block, so that two servers never hand out one UID."""
    low, high = int(uid_env["BEAMHUB_UID_MIN"]), int(uid_env["BEAMHUB_UID_MAX"])
    middle = (low + high) // 2
    return {"BEAMHUB_UID_MIN": str(middle + 1 if second else low), "BEAMHUB_UID_MAX": str(high if second else middle)}


@pytest.fixture(scope="module")
def blocking(module_beamhub_factory: Any, uid_range_env: dict[str, str], storage: Path) -> World:
    """A relay whose publisher waits for its slowest subscriber: nothing is dropped."""
    return _world(module_beamhub_factory, _half(uid_range_env, False), storage, BEAMHUB_STREAM_POLICY="block")


@pytest.fixture(scope="module")
def dropping(module_beamhub_factory: Any, uid_range_env: dict[str, str], storage: Path) -> World:
    """A relay that drops a slow subscriber's oldest frames, 8 frames of queue each."""
    return _world(module_beamhub_factory, _half(uid_range_env, True), storage, BEAMHUB_STREAM_POLICY="drop",
                  BEAMHUB_STREAM_QUEUE_FRAMES="8")


def _read_all(subscription: Any, count: int) -> list[tuple[int, int, int]]:
    """(number, seq, gap) of `count` frames, each checked against what the DAQ sent."""
    seen = []
    with subscription:
        for _ in range(count):
            frame = subscription.next(timeout=30)
            assert frame is not None, "the stream ended early"
            assert frame.shape == SHAPE and frame.dtype == "<u2"
            assert frame.meta == {"exposure": 0.01, "scan": "live"}
            assert np.array_equal(frame.array(), frame_of(frame.number))
            seen.append((frame.number, frame.seq, frame.gap))
    return seen


@VIAS
def test_a_thousand_frames_reach_two_member_subscribers_complete_and_in_order(blocking: World, via: str) -> None:
    subscribers = [blocking.subscribe("pi", via), blocking.subscribe("member", via)]
    with ThreadPoolExecutor(2) as pool:
        readers = [pool.submit(_read_all, s, 1000) for s in subscribers]
        with Publisher(blocking.endpoint, blocking.tokens["daq"]) as daq:
            for number in range(1000):
                daq.send(blocking.proposal, number, frame_of(number), meta={"exposure": 0.01, "scan": "live"})
            seen = [reader.result(timeout=120) for reader in readers]
            daq.check()
    for frames in seen:
        assert [number for number, _, _ in frames] == list(range(1000))
        first = frames[0][1]
        assert [seq for _, seq, _ in frames] == list(range(first, first + 1000))
        assert not any(gap for _, _, gap in frames)


def test_a_zeromq_subscriber_that_vanishes_is_dropped_and_holds_up_the_daq_no_longer(blocking: World) -> None:
    program = ("import sys, time; from beamhub_stream import subscribe; "
               "s = subscribe(sys.argv[1], endpoint=sys.argv[2], token=sys.argv[3], via='zeromq'); "
               "print(s.hello['type'], flush=True); time.sleep(300)")
    silent = subprocess.Popen([sys.executable, "-c", program, blocking.proposal, blocking.subscribers,
                               blocking.tokens["member"]], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(CLIENT)})
    try:
        assert silent.stdout is not None and silent.stdout.readline().strip() == "hello"
        with blocking.subscribe("pi", "zeromq") as watcher, ThreadPoolExecutor(2) as pool, \
                Publisher(blocking.endpoint, blocking.tokens["daq"]) as daq:
            reading = pool.submit(lambda: [frame.number for _, frame in zip(range(100), watcher, strict=False)])
            sending = pool.submit(lambda: [daq.send(blocking.proposal, n, np.zeros((512, 1024), "<u2"))
                                           for n in range(100)])
            time.sleep(2)
            assert not sending.done(), "the DAQ did not wait for a subscriber that reads nothing (block policy)"
            silent.kill()
            sending.result(timeout=20)
            assert reading.result(timeout=20) == list(range(100))
    finally:
        silent.kill()
        silent.wait()


@VIAS
def test_a_non_member_is_refused_as_for_the_proposal_s_files(blocking: World, via: str) -> None:
    with pytest.raises(StreamRefused) as refused:
        blocking.subscribe("stranger", via)
    assert refused.value.status == 404 and blocking.proposal in refused.value.detail
    with pytest.raises(StreamRefused) as unknown:
        subscribe("2099-00000", url=blocking.server.url, token=blocking.tokens["pi"], via=via)
    assert unknown.value.status == 404
    with pytest.raises(StreamRefused) as anonymous:
        subscribe(blocking.proposal, url=blocking.server.url, endpoint=blocking.subscribers, token="nope", via=via)
    assert anonymous.value.status == 401


def test_the_zeromq_endpoint_answers_nonsense_with_422_and_goes_on(blocking: World) -> None:
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as odd:
        odd.setsockopt(zmq.LINGER, 0)
        odd.connect(blocking.subscribers)
        for message in ([b"hello"], [b"credit", b"9" * 5000], [b"subscribe", b"t", b"2024-00001", b"9" * 5000, b"x"]):
            odd.send_multipart(message)
            assert odd.poll(10_000), "no answer"
            answer = json.loads(odd.recv())
            assert answer["type"] == "refused" and answer["status"] == 422
    with blocking.subscribe("member", "zeromq") as watcher:
        assert watcher.hello["type"] == "hello"


def test_the_daq_endpoint_refuses_malformed_headers_with_422_and_goes_on(blocking: World) -> None:
    good = {"proposal": blocking.proposal, "frame": 1, "shape": [2], "dtype": "<u1"}
    start = json.dumps(good)[:-1].encode()
    malformed = [start + b', "serial": ' + b"9" * 5000 + b"}",
                 start + b', "meta": {"a": ' + b"[" * 20000 + b"]" * 20000 + b"}}",
                 start + b', "meta": {"a": NaN}}']
    with blocking.subscribe("member") as watcher, zmq.Context.instance().socket(zmq.DEALER) as daq:
        daq.setsockopt(zmq.LINGER, 0)
        daq.connect(blocking.endpoint)
        for header in malformed:
            daq.send_multipart([blocking.tokens["daq"].encode(), header, b"\x00\x00"])
            assert daq.poll(10_000), "no answer"
            answer = json.loads(daq.recv())
            assert answer["status"] == 422 and answer["code"] == "invalid", answer
        with Publisher(blocking.endpoint, blocking.tokens["daq"]) as publisher:
            publisher.send(blocking.proposal, 5, frame_of(5))
            frame = watcher.next(timeout=30)
    assert frame is not None and frame.number == 5 and np.array_equal(frame.array(), frame_of(5))


def test_an_anonymous_subscriber_is_refused_with_401(blocking: World) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(stream_url(blocking.server.url, blocking.proposal), open_timeout=10)
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["code"] == "unauthenticated"


def test_a_login_cookie_from_another_origin_is_refused(blocking: World) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(stream_url(blocking.server.url, blocking.proposal), origin="http://x.sessions.localhost:1",
                additional_headers={"Cookie": "beamhub-session=whatever"}, open_timeout=10)
    assert refused.value.response.status_code == 403


def test_only_the_daq_publishes_and_only_to_a_proposal_that_exists(blocking: World) -> None:
    with blocking.subscribe("member") as watcher:
        for token, proposal, status in ((blocking.tokens["member"], blocking.proposal, 403),
                                        (blocking.tokens["daq"], "2099-00000", 404),
                                        ("not-a-token", blocking.proposal, 401)):
            with Publisher(blocking.endpoint, token) as daq:
                daq.send(proposal, 0, frame_of(0))
                deadline = time.monotonic() + 10
                with pytest.raises(PublishRefused) as refused:
                    while time.monotonic() < deadline:
                        daq.check()
                        time.sleep(0.05)
                assert refused.value.status == status and refused.value.frame == 0
        with pytest.raises(TimeoutError):
            watcher.next(timeout=1)


@VIAS
def test_a_slow_subscriber_gets_the_newest_frames_with_every_gap_reported_and_memory_stays_bounded(
        dropping: World, via: str) -> None:
    big = (512, 1024)  # 1 MiB a frame
    pid = dropping.server.process.pid
    with dropping.subscribe("member", via) as slow:
        peak_before = int(proc_status(pid)["VmHWM"].split()[0]) * 1024
        with Publisher(dropping.endpoint, dropping.tokens["daq"]) as daq:
            for number in range(300):
                daq.send(dropping.proposal, number, np.full(big, number % 65536, dtype="<u2"))
            daq.check()
        frames = []
        while not frames or frames[-1].number < 299:
            frame = slow.next(timeout=30)
            assert frame is not None
            frames.append(frame)
            time.sleep(0.02)  # a reader slower than the DAQ
        peak_after = int(proc_status(pid)["VmHWM"].split()[0]) * 1024
    numbers = [frame.number for frame in frames]
    assert numbers == sorted(numbers) and numbers[-1] == 299
    assert slow.missed > 0 and slow.received + slow.missed == 300
    for before, after in zip(frames, frames[1:], strict=False):
        assert after.gap == after.number - before.number - 1
    assert all(np.all(frame.array() == frame.number) for frame in frames)
    assert peak_after - peak_before < 64 * MiB, f"the server grew by {(peak_after - peak_before) / MiB:.0f} MiB"


@VIAS
def test_a_revoked_token_ends_its_subscription_within_seconds(dropping: World, via: str) -> None:
    name = dropping.names["member"]
    created = dropping.server.admin.post(f"/api/v1/users/{name}/tokens", json={"name": "notebook"}).json()
    with dropping.subscribe("member", via, token=created["token"]) as watching:
        revoked = dropping.server.admin.delete(f"/api/v1/users/{name}/tokens/{created['id']}")
        assert revoked.status_code == 200, revoked.text
        started = time.monotonic()
        with pytest.raises(StreamEnded, match="no longer stands"):
            watching.next(timeout=15)
        assert time.monotonic() - started < 6


@VIAS
def test_a_member_removed_from_the_proposal_stops_watching_within_seconds(dropping: World, via: str) -> None:
    name, token = dropping.server.create_user(username=f"st{secrets.token_hex(3)}")
    members = f"/api/v1/proposals/{dropping.proposal}/members/{name}"
    assert dropping.server.admin.put(members, json={"role": "member"}).status_code == 200
    with dropping.subscribe("member", via, token=token) as watching:
        assert dropping.server.admin.delete(members).status_code == 200
        started = time.monotonic()
        with pytest.raises(StreamEnded, match="refused"):
            watching.next(timeout=15)
        assert time.monotonic() - started < 6
    with pytest.raises(StreamRefused):
        dropping.subscribe("member", via, token=token)


def test_subscribe_takes_beamhub_s_address_and_the_token_from_the_environment(
        dropping: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEAMHUB_URL", dropping.server.url)
    monkeypatch.setenv("BEAMHUB_TOKEN", dropping.tokens["pi"])
    with subscribe(dropping.proposal) as frames:
        assert frames.via == "zeromq"  # the endpoint beamhub names at /api/v1/streams
        assert frames.hello["user"] == dropping.names["pi"]
        assert frames.hello["policy"] == "drop" and frames.hello["queue"] == 8
    assert httpx.get(f"{dropping.server.url}/api/v1/streams").status_code == 401
    monkeypatch.delenv("BEAMHUB_URL")
    monkeypatch.setenv("BEAMHUB_STREAM", dropping.subscribers)
    with subscribe(dropping.proposal) as frames:
        assert frames.via == "zeromq" and frames.hello["user"] == dropping.names["pi"]


def test_the_default_image_has_the_client_library() -> None:
    python = IMAGE / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no default image at {IMAGE}: run scripts/install.sh")
    program = "import beamhub_stream, numpy, websockets, zmq; print(beamhub_stream.__file__)"
    found = subprocess.run([str(python), "-c", program], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert str(IMAGE) in found.stdout
