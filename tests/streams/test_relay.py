"""The relay's queues on their own: a slow subscriber's queue stays bounded and its gaps add up; block waits."""

from __future__ import annotations

import asyncio

import pytest

from beamhub.streams.frames import BadFrame, Header, parse_header
from beamhub.streams.relay import Relay

FRAME = b"\x00" * 8


def header(number: int, proposal: str = "2024-00001") -> Header:
    return Header(proposal, number, (2, 2), "<u2")


def test_drop_policy_keeps_the_newest_frames_and_counts_every_dropped_one() -> None:
    async def run() -> None:
        relay = Relay(limit=4, policy="drop")
        with relay.subscribe("2024-00001") as slow:
            for number in range(100):
                await relay.publish(header(number), FRAME)
                assert len(slow) <= 4
            got = [await slow.get() for _ in range(4)]
        assert [missed for missed, _ in got] == [96, 0, 0, 0]
        assert slow.dropped == 96
        assert all(f'"frame":{n},' in header for n, (_, (header, _)) in zip(range(96, 100), got, strict=True))

    asyncio.run(run())


def test_a_gap_counts_against_the_frame_after_it_even_when_the_queue_emptied() -> None:
    async def run() -> None:
        relay = Relay(limit=1, policy="drop")
        with relay.subscribe("2024-00001") as slow:
            for number in range(3):
                await relay.publish(header(number), FRAME)
            assert (await slow.get())[0] == 2
            await relay.publish(header(3), FRAME)
            assert (await slow.get())[0] == 0

    asyncio.run(run())


def test_block_policy_makes_the_publisher_wait_for_the_slowest_subscriber() -> None:
    async def run() -> None:
        relay = Relay(limit=2, policy="block")
        with relay.subscribe("2024-00001") as slow:
            await relay.publish(header(0), FRAME)
            await relay.publish(header(1), FRAME)
            third = asyncio.create_task(relay.publish(header(2), FRAME))
            await asyncio.sleep(0.05)
            assert not third.done()
            assert (await slow.get())[0] == 0
            assert await asyncio.wait_for(third, 1) == 1
            assert len(slow) == 2 and slow.dropped == 0

    asyncio.run(run())


def test_a_subscriber_that_leaves_releases_a_blocked_publisher() -> None:
    async def run() -> None:
        relay = Relay(limit=1, policy="block")
        with relay.subscribe("2024-00001"):
            await relay.publish(header(0), FRAME)
            blocked = asyncio.create_task(relay.publish(header(1), FRAME))
            await asyncio.sleep(0.05)
        await asyncio.wait_for(blocked, 1)
        assert relay.subscribers("2024-00001") == 0
        assert await relay.publish(header(2), FRAME) == 0

    asyncio.run(run())


@pytest.mark.parametrize(("raw", "size", "reason"), [
    (b"not json", 8, "not JSON"),
    (b'{"proposal": "../x", "frame": 0, "shape": [2, 2], "dtype": "<u2"}', 8, "proposal"),
    (b'{"proposal": "2024-00001", "frame": -1, "shape": [2, 2], "dtype": "<u2"}', 8, "frame"),
    (b'{"proposal": "2024-00001", "frame": 0, "shape": [2, 2], "dtype": "O"}', 8, "plain numeric"),
    (b'{"proposal": "2024-00001", "frame": 0, "shape": [2, 2], "dtype": "<u2"}', 9, "the frame has 9"),
    (b'{"proposal": "2024-00001", "frame": ' + b"9" * 5000 + b', "shape": [2, 2], "dtype": "<u2"}', 8, "not JSON"),
    (b'{"proposal": "2024-00001", "frame": 0, "shape": [' + b"1" * 4000 + b", " + b"1" * 4000 + b'], "dtype": "<u2"}',
     8, "shape"),
    (b'{"proposal": "2024-00001", "frame": 0, "shape": [2, 2], "dtype": "<u2", "meta": {"a": '
     + b"[" * 30000 + b"]" * 30000 + b"}}", 8, "not JSON"),
    (b'{"proposal": "2024-00001", "frame": 0, "shape": [2, 2], "dtype": "<u2", "meta": {"a": '
     + b"[" * 40 + b"]" * 40 + b"}}", 8, "nests more than 32"),
    (b'{"proposal": "2024-00001", "frame": 0, "shape": [2, 2], "dtype": "<u2", "meta": {"a": NaN}}', 8, "NaN"),
    (b'{"proposal": "2024-00001", "frame": 0, "shape": [2, 2], "dtype": "<u2", "meta": {"a": -Infinity}}', 8,
     "Infinity"),
])
def test_a_header_that_does_not_describe_its_bytes_is_refused(raw: bytes, size: int, reason: str) -> None:
    with pytest.raises(BadFrame, match=reason):
        parse_header(raw, size)


def test_a_header_keeps_shape_dtype_number_and_metadata() -> None:
    parsed = parse_header(b'{"proposal": "2024-00001", "frame": 7, "shape": [2, 3], "dtype": "float32", '
                          b'"meta": {"exposure": 0.01}}', 24)
    assert parsed == Header("2024-00001", 7, (2, 3), "<f4", {"exposure": 0.01})
