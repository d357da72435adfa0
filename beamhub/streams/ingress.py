"""Where the DAQ's frames come in: a ZeroMQ ROUTER socket beamhub binds at `stream_bind`.

A DAQ connects a DEALER and sends each frame as [publish token, header JSON, bytes] (see frames.py). The token is
checked for each frame against a memory of the last seconds' decisions (a refused one too, so that a wrong token
does not become a database round trip per frame); a refusal is answered with one JSON message
`{"error": ..., "code": ..., "status": 401|403|404|422, "frame": n}` to that DEALER. The socket's receive queue is a few
messages deep and ZMQ_MAXMSGSIZE bounds a message, so a DAQ faster than the subscribers (block policy) waits in
ZeroMQ's own flow control, not in beamhub's memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging

import zmq

from beamhub.cache import TtlCache
from beamhub.errors import BeamhubError, Invalid
from beamhub.metrics import STREAM_FRAMES_REFUSED
from beamhub.streams.frames import BadFrame, parse_header
from beamhub.streams.relay import Relay
from beamhub.streams.service import StreamService
from beamhub.streams.sockets import SOCKET_BUFFER, bind_router, close, keep_frame_memory

log = logging.getLogger(__name__)

DECISION_SECONDS = 2.0
"""How long a publish token's decision is kept: a revoked token stops publishing within it."""
RECEIVE_QUEUE = 4
"""Messages ZeroMQ keeps for beamhub per DAQ connection before the DAQ's sends wait."""

Decision = BeamhubError | None


class Ingress:
    """The DAQ's endpoint: receives frames, admits their publishers, hands them to the relay."""

    def __init__(self, endpoint: str, relay: Relay, streams: StreamService, max_frame_bytes: int) -> None:
        self.endpoint = endpoint
        self.relay = relay
        self.streams = streams
        self.max_frame_bytes = max_frame_bytes
        self.decisions: TtlCache[tuple[str, str], tuple[Decision]] = TtlCache(DECISION_SECONDS,
                                                                              epoch=streams.identity.epoch)

    def bind(self) -> None:
        """Bind the DAQ's endpoint (zmq.ZMQError if it cannot be had); freed frames' memory is kept for the next."""
        self.context, self.socket = bind_router(self.endpoint, (
            (zmq.RCVHWM, RECEIVE_QUEUE), (zmq.MAXMSGSIZE, self.max_frame_bytes), (zmq.LINGER, 0),
            (zmq.RCVBUF, SOCKET_BUFFER)))
        log.info("stream relay: the DAQ publishes to %s (frame memory kept: %s)", self.endpoint, keep_frame_memory())

    async def run_forever(self) -> None:
        """Receive and relay the DAQ's frames until cancelled (after bind)."""
        try:
            while True:
                parts = await self.socket.recv_multipart(copy=False)
                try:
                    await self._answer(parts)
                except Exception:  # one bad message never stops the DAQ's endpoint
                    log.exception("stream relay: a message from a DAQ failed")
        finally:
            close(self.context, self.socket)

    async def _answer(self, parts: list[zmq.Frame]) -> None:
        """Relay one message from the DAQ, or send its DAQ the refusal."""
        refusal = await self._relay(parts)
        if refusal is not None:
            await self.socket.send_multipart([parts[0].bytes, refusal], flags=zmq.NOBLOCK)

    async def _relay(self, parts: list[zmq.Frame]) -> bytes | None:
        """Relay one message from the DAQ; the refusal to send back, if it is refused."""
        if len(parts) != 4:
            return self._refusal("malformed", Invalid("a frame is [token, header, bytes]"), None)
        _, token, raw_header, data = parts
        try:
            header = parse_header(raw_header.bytes, len(data))
        except BadFrame as exc:
            return self._refusal("malformed", Invalid(str(exc)), None)
        decision = await self._decide(token.bytes, header.proposal)
        if decision is not None:
            return self._refusal("refused", decision, header.frame)
        await self.relay.publish(header, data)  # ZeroMQ's message itself: shared, never copied
        return None

    async def _decide(self, token: bytes, proposal: str) -> Decision:
        key = (hashlib.sha256(token).hexdigest(), proposal)
        kept = self.decisions.get(key)
        if kept is not None:
            return kept[0]
        try:
            await asyncio.to_thread(self.streams.publisher, token.decode(errors="replace"), proposal)
            decision: Decision = None
        except BeamhubError as exc:
            decision = exc
        self.decisions.put(key, (decision,))
        return decision

    @staticmethod
    def _refusal(reason: str, error: BeamhubError, frame: int | None) -> bytes:
        STREAM_FRAMES_REFUSED.labels(reason).inc()
        return json.dumps({"error": str(error), "code": error.code, "status": error.status_code,
                           "frame": frame}).encode()
