"""Where Python subscribers read live frames: a ZeroMQ ROUTER socket beamhub binds at `stream_subscribe_bind`.

A subscriber connects a DEALER and sends `[b"subscribe", token, proposal, window]`; beamhub answers one JSON
message, `{"type": "refused", "status": 401|403|404|422, "detail", "code"}` or `{"type": "hello", ...}`, and after
the hello each frame as two parts, its header (as on the websocket, with `gap`) and its bytes, the very ZeroMQ
message the DAQ sent (shared, never copied). Credit-based flow: beamhub sends a subscriber at most `window` frames
(at most MAX_WINDOW) beyond those it acknowledged with `[b"credit", n]`; the others wait in its bounded queue of the
relay, where the drop or block policy applies, so memory stays what the relay allows plus the windows in flight.
Every RECHECK_SECONDS the token and the data domain's read rule are asked again (as for the websocket) and a
`{"type": "ping"}` probes the subscriber: one that is gone (ROUTER_MANDATORY's EHOSTUNREACH, ZeroMQ's heartbeats
drop a silent TCP peer) is dropped; `{"type": "end", "reason"}` ends a subscription beamhub ends;
`[b"cancel"]` is the subscriber's own end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

import zmq

from beamhub.errors import BeamhubError, Invalid
from beamhub.streams.frames import control_message, with_gap
from beamhub.streams.relay import Relay, Subscription
from beamhub.streams.service import StreamService
from beamhub.streams.sockets import SOCKET_BUFFER, bind_router, close

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0
"""How often a subscription's credential and read right are asked again, and its subscriber probed."""
MAX_WINDOW = 8
"""The most frames a subscriber may have in flight beyond its queue."""
IDLE_SECONDS = 40.0
"""Under the block policy, a subscriber that acknowledges nothing this long while frames wait for it is ended."""
NO_LONGER_STANDS = "the credential of this subscription no longer stands"


class Gone(Exception):
    """The subscriber is no longer connected."""


@dataclass
class Peer:
    """One subscriber's connection: its routing id, its credit of frames and when it was last heard."""

    identity: bytes
    credit: int
    heard: float = field(default_factory=time.monotonic)
    granted: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def grant(self, frames: int) -> None:
        """The subscriber took `frames` frames: as many more may be sent."""
        self.credit = min(self.credit + frames, MAX_WINDOW)
        self.heard = time.monotonic()
        self.granted.set()

    async def spend(self) -> None:
        """Wait for credit for one frame, and take it."""
        while self.credit <= 0:
            self.granted.clear()
            await self.granted.wait()
        self.credit -= 1


class Egress:
    """The subscribers' endpoint: admits subscriptions and sends each its frames from the relay."""

    def __init__(self, endpoint: str, relay: Relay, streams: StreamService) -> None:
        self.endpoint = endpoint
        self.relay = relay
        self.streams = streams
        self.peers: dict[bytes, Peer] = {}

    def bind(self) -> None:
        """Bind the subscribers' endpoint (zmq.ZMQError if it cannot be had)."""
        self.context, self.socket = bind_router(self.endpoint, (
            (zmq.ROUTER_MANDATORY, 1), (zmq.SNDHWM, MAX_WINDOW + 64), (zmq.RCVHWM, 64), (zmq.MAXMSGSIZE, 64 * 1024),
            (zmq.LINGER, 0), (zmq.SNDBUF, SOCKET_BUFFER), (zmq.HEARTBEAT_IVL, 5000), (zmq.HEARTBEAT_TIMEOUT, 15000)))
        log.info("stream relay: subscribers read from %s", self.endpoint)

    async def run_forever(self) -> None:
        """Take the subscribers' requests until cancelled (after bind)."""
        try:
            while True:
                parts = await self.socket.recv_multipart(copy=False)
                try:
                    await self._request(parts)
                except Exception:  # one bad message never stops the subscribers' endpoint
                    log.exception("stream relay: a message from a subscriber failed")
        finally:
            tasks = [peer.task for peer in self.peers.values() if peer.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            close(self.context, self.socket)

    async def _request(self, parts: list[zmq.Frame]) -> None:
        """One message of a subscriber: subscribe, credit or cancel."""
        identity, verb, args = parts[0].bytes, parts[1].bytes if len(parts) > 1 else b"", parts[2:]
        peer = self.peers.get(identity)
        if verb == b"subscribe" and len(args) == 3 and peer is None:
            peer = self.peers[identity] = Peer(identity, max(1, min(_count(args[2].bytes) or 1, MAX_WINDOW)))
            address = parts[1].get("Peer-Address") or ""
            peer.task = asyncio.create_task(self._subscription(peer, args[0].bytes.decode(errors="replace"),
                                                               args[1].bytes.decode(errors="replace"), address))
        elif verb == b"credit" and peer is not None and len(args) == 1 and (taken := _count(args[0].bytes)) is not None:
            peer.grant(taken)
        elif verb == b"cancel" and peer is not None and peer.task is not None:
            peer.task.cancel()
        else:
            with contextlib.suppress(Gone, zmq.Again):
                await self._send(identity, _refusal(Invalid("a subscriber sends [subscribe, token, proposal, "
                                                            "window] once, then [credit, n] or [cancel]")))

    async def _subscription(self, peer: Peer, token: str, proposal: str, address: str) -> None:
        """Admit the subscriber, then send it frames until it leaves, vanishes or may no longer watch."""
        try:
            principal = await asyncio.to_thread(self.streams.identity.authenticate, token, address)
            await asyncio.to_thread(self.streams.check_subscriber, principal, proposal)
        except BeamhubError as exc:
            with contextlib.suppress(Gone, zmq.Again):
                await self._send(peer.identity, _refusal(exc))
            self.peers.pop(peer.identity, None)
            return
        try:
            with self.relay.subscribe(proposal) as subscription:
                await self._send(peer.identity, control_message("hello", proposal=proposal, user=principal.username,
                                                                queue=self.relay.limit, policy=self.relay.policy,
                                                                window=peer.credit).encode())
                await self._serve(peer, subscription, token, proposal)
        except Gone:
            log.info("stream relay: a subscriber of %s is gone", proposal)
        except zmq.Again:
            log.warning("stream relay: a subscriber of %s is dropped: its pipe is full", proposal)
        finally:
            self.peers.pop(peer.identity, None)

    async def _serve(self, peer: Peer, subscription: Subscription, token: str, proposal: str) -> None:
        tasks = (asyncio.create_task(self._send_frames(peer, subscription)),
                 asyncio.create_task(self._until_refused(peer, subscription, token, proposal)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if isinstance(reason := task.result(), str):
                await self._send(peer.identity, control_message("end", reason=reason).encode())

    async def _send_frames(self, peer: Peer, subscription: Subscription) -> None:
        while True:
            await peer.spend()
            missed, (header, data) = await subscription.get()
            await self._send(peer.identity, with_gap(header, missed).encode(), data)

    async def _until_refused(self, peer: Peer, subscription: Subscription, token: str, proposal: str) -> str:
        """Why the subscriber may no longer watch, asked afresh every RECHECK_SECONDS (see the websocket's)."""
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            if reason := await asyncio.to_thread(self._recheck, token, proposal):
                return reason
            if (self.relay.policy == "block" and len(subscription) and peer.credit <= 0
                    and time.monotonic() - peer.heard > IDLE_SECONDS):
                return f"no frame taken for {IDLE_SECONDS:.0f} s while the DAQ waited"
            with contextlib.suppress(zmq.Again):
                await self._send(peer.identity, b'{"type":"ping"}')

    def _recheck(self, token: str, proposal: str) -> str | None:
        try:
            principal = self.streams.identity.authenticate(token)
        except BeamhubError:
            return NO_LONGER_STANDS
        try:
            self.streams.check_subscriber(principal, proposal)
        except BeamhubError as exc:
            return f"refused: {exc}"
        return None

    async def _send(self, identity: bytes, *parts: bytes | memoryview | zmq.Frame) -> None:
        """Send without waiting; Gone if the subscriber is not connected or ZeroMQ fails otherwise (logged), zmq.Again
        if its pipe is full."""
        try:
            await self.socket.send_multipart([identity, *parts], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                log.warning("stream relay: sending to a subscriber failed, it is dropped: %s", exc)
            raise Gone from exc


def _count(raw: bytes) -> int | None:
    """A count a subscriber sent (a few decimal digits), or None."""
    return int(raw) if raw.isdigit() and len(raw) <= 6 else None


def _refusal(error: BeamhubError) -> bytes:
    return json.dumps({"type": "refused", "status": error.status_code, "detail": str(error),
                       "code": error.code}).encode()
