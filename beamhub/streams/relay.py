"""The relay of one beamhub process: each proposal's frames, as they arrive, to each of its subscribers.

Every subscriber has a queue of at most `limit` frames. A frame's header is encoded once and its bytes (as ZeroMQ
received them) are shared by all queues, so the relay holds at most (subscribers x limit) frames of at most
stream_max_frame_bytes (and a ZeroMQ subscriber's window in flight, see egress.py). When a queue is full, the
`drop` policy drops its oldest frame and counts it against the next one the subscriber gets (a gap, always
reported); the `block` policy makes the publisher wait until every subscriber has room.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import zmq

from beamhub.metrics import STREAM_FRAMES_DROPPED, STREAM_FRAMES_RELAYED
from beamhub.streams.frames import Header

Policy = Literal["drop", "block"]
Payload = memoryview | bytes | zmq.Frame
Frame = tuple[str, Payload]
"""A frame as subscribers get it: its encoded header and its bytes (the DAQ's ZeroMQ message itself)."""


class Subscription:
    """One subscriber's bounded queue: (frames missed just before it, the frame)."""

    def __init__(self, limit: int, policy: Policy) -> None:
        self.limit = limit
        self.policy = policy
        self.dropped = 0
        self.closed = False
        self._items: deque[tuple[int, Frame]] = deque()
        self._missed = 0  # dropped while the queue was empty: counted against the next frame
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, message: Frame) -> None:
        """Queue a frame; a full queue drops its oldest frame and remembers the gap."""
        if len(self._items) >= self.limit:
            missed, _ = self._items.popleft()
            self.dropped += 1
            STREAM_FRAMES_DROPPED.inc()
            if self._items:
                head_missed, head = self._items[0]
                self._items[0] = (head_missed + missed + 1, head)
            else:
                self._missed += missed + 1
        self._items.append((self._missed, message))
        self._missed = 0
        self._ready.set()
        if len(self._items) >= self.limit:
            self._room.clear()

    async def put(self, message: Frame) -> None:
        """Queue a frame, waiting for room (the block policy); nothing once the subscriber has left."""
        while len(self._items) >= self.limit and not self.closed:
            self._room.clear()
            await self._room.wait()
        if not self.closed:
            self.offer(message)

    def close(self) -> None:
        """The subscriber left: a publisher waiting for its room goes on."""
        self.closed = True
        self._items.clear()
        self._room.set()

    async def get(self) -> tuple[int, Frame]:
        """The next frame and how many frames were dropped just before it."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        self._room.set()
        return item


class Relay:
    """Frames by proposal to the subscriptions of that proposal, in the order they arrive."""

    def __init__(self, limit: int, policy: Policy) -> None:
        self.limit = limit
        self.policy = policy
        self._subscribers: dict[str, set[Subscription]] = {}
        self._seq: dict[str, int] = {}

    @contextmanager
    def subscribe(self, proposal: str) -> Iterator[Subscription]:
        """A subscription to the proposal's frames from now on, for as long as the block lasts."""
        subscription = Subscription(self.limit, self.policy)
        self._subscribers.setdefault(proposal, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscription.close()
            subscribers = self._subscribers.get(proposal, set())
            subscribers.discard(subscription)
            if not subscribers:
                self._subscribers.pop(proposal, None)

    def subscribers(self, proposal: str) -> int:
        return len(self._subscribers.get(proposal, ()))

    async def publish(self, header: Header, data: Payload) -> int:
        """Hand a frame to every subscriber of its proposal; how many got it (none: the frame is not kept)."""
        subscribers = self._subscribers.get(header.proposal)
        if not subscribers:
            return 0
        seq = self._seq.get(header.proposal, 0)
        self._seq[header.proposal] = seq + 1
        message = (header.encode(seq), data)
        waiting = []
        for subscription in list(subscribers):
            if self.policy == "block" and len(subscription) >= subscription.limit:
                waiting.append(subscription.put(message))
            else:
                subscription.offer(message)
        if waiting:
            await asyncio.gather(*waiting)
        STREAM_FRAMES_RELAYED.inc(len(subscribers))
        return len(subscribers)
