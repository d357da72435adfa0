"""Live detector frames of a proposal, from beamhub's stream relay.

In a session (beamhub's address in $BEAMHUB_URL, the user's API token in $BEAMHUB_TOKEN):

    from beamhub_stream import subscribe
    with subscribe("2024-00123") as frames:
        for frame in frames:
            if frame.gap:
                print(f"{frame.gap} frames missed before frame {frame.number}")
            image = frame.array()          # numpy, shape and dtype as the DAQ sent them

The DAQ's side, with a data:ingest token of its service account:

    from beamhub_stream import Publisher
    with Publisher("tcp://beamhub:5560", token) as daq:
        daq.send("2024-00123", 17, image, meta={"exposure": 0.01})
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from beamhub_stream._websocket import Closed, HandshakeRefused, WebSocket

__all__ = ["Frame", "PublishRefused", "Publisher", "StreamEnded", "StreamRefused", "Subscription", "subscribe"]

URL_ENV = "BEAMHUB_URL"
TOKEN_ENV = "BEAMHUB_TOKEN"


class StreamRefused(PermissionError):
    """beamhub refused the subscription (401: no valid token, 404: not a proposal this user may read)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class StreamEnded(ConnectionError):
    """beamhub ended the subscription, e.g. its token was revoked or the user left the proposal."""


class PublishRefused(PermissionError):
    """beamhub refused a frame the DAQ published (a bad token, an unknown proposal, a malformed frame)."""

    def __init__(self, answer: Mapping[str, Any]) -> None:
        super().__init__(f"{answer.get('status')}: {answer.get('error')} (frame {answer.get('frame')})")
        self.status = answer.get("status")
        self.frame = answer.get("frame")


@dataclass(frozen=True)
class Frame:
    """One frame: its number from the DAQ, the relay's sequence number, how to read its bytes, and how many frames
    this subscriber missed just before it (`gap`, never hidden: dropped for a slow reader)."""

    number: int
    seq: int
    shape: tuple[int, ...]
    dtype: str
    data: memoryview
    gap: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def array(self) -> Any:
        """The frame as a numpy array (no copy)."""
        import numpy

        return numpy.frombuffer(self.data, dtype=self.dtype).reshape(self.shape)


def stream_url(base: str, proposal: str) -> str:
    """The websocket address of a proposal's stream on beamhub at `base` (http(s)://host[:port][/prefix])."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"beamhub's address must start with http:// or https://, not {base!r}")
    path = f"{parts.path.rstrip('/')}/api/v1/proposals/{quote(proposal, safe='')}/stream"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def subscribe(proposal: str, url: str | None = None, token: str | None = None,
              open_timeout: float = 10) -> Subscription:
    """Subscribe to a proposal's live frames, as the user whose token this is ($BEAMHUB_URL, $BEAMHUB_TOKEN)."""
    url = url or os.environ.get(URL_ENV)
    token = token or os.environ.get(TOKEN_ENV)
    if not url or not token:
        raise ValueError(f"beamhub's address and an API token are needed: pass url= and token=, or set {URL_ENV} "
                         f"and {TOKEN_ENV}")
    try:
        connection = WebSocket(stream_url(url, proposal), {"Authorization": f"Bearer {token}"}, open_timeout)
    except HandshakeRefused as exc:
        raise StreamRefused(exc.status, exc.detail) from exc
    subscription = Subscription(connection)
    subscription.greeted(open_timeout)
    return subscription


class Subscription:
    """An open subscription: iterate for frames; `missed` counts every frame dropped for this subscriber."""

    def __init__(self, connection: WebSocket) -> None:
        self.connection = connection
        self.hello: dict[str, Any] = {}
        self.received = 0
        self.missed = 0
        self._header: dict[str, Any] | None = None
        self._last_seq: int | None = None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next()) is not None:
            yield frame

    def close(self) -> None:
        self.connection.close()

    def greeted(self, timeout: float | None) -> None:
        """Take beamhub's hello: from then on, every frame published for the proposal reaches this subscriber."""
        try:
            message = self._receive(timeout)
        except TimeoutError:
            message = None
        self.hello = json.loads(message) if isinstance(message, str) else {}
        if self.hello.get("type") != "hello":
            self.close()
            raise ConnectionError("beamhub did not open the subscription")

    def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame (TimeoutError after `timeout` s); None once beamhub closed the stream normally."""
        while (message := self._receive(timeout)) is not None:
            if isinstance(message, str):
                self._control(json.loads(message))
            elif self._header is not None:
                return self._frame(self._header, message)
        return None

    def _receive(self, timeout: float | None) -> str | bytearray | None:
        try:
            return self.connection.recv(timeout)
        except Closed:
            return None

    def _control(self, message: dict[str, Any]) -> None:
        """A text message: the header of the frame whose bytes come next, or the end of the subscription."""
        if message.get("type") == "frame":
            self._header = message
        elif message.get("type") == "end":
            self.connection.close()
            raise StreamEnded(message.get("reason", "beamhub ended the subscription"))

    def _frame(self, header: dict[str, Any], data: bytearray) -> Frame:
        seq, gap = int(header["seq"]), int(header.get("gap", 0))
        if self._last_seq is not None and seq - self._last_seq - 1 > gap:
            gap = seq - self._last_seq - 1  # the sequence numbers know better than the headers
        self._header, self._last_seq = None, seq
        self.received += 1
        self.missed += gap
        return Frame(number=header["frame"], seq=seq, shape=tuple(header["shape"]), dtype=header["dtype"],
                     data=memoryview(data), gap=gap, meta=header.get("meta") or {})


class Publisher:
    """The DAQ's side: frames to beamhub's ZeroMQ endpoint (stream_bind) with a data:ingest token."""

    def __init__(self, endpoint: str, token: str | None = None, copy: bool = True, queue: int = 16,
                 linger: float | None = 30.0) -> None:
        """`queue`: frames ZeroMQ holds for beamhub before send() waits; `linger`: seconds close() waits for them
        to be delivered (None: until they are)."""
        import zmq

        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise ValueError(f"a data:ingest token is needed: pass token= or set {TOKEN_ENV}")
        self._zmq = zmq
        self._token = token.encode()
        self._copy = copy
        self._context = zmq.Context()
        self.socket = self._context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.SNDHWM, queue)
        self.socket.setsockopt(zmq.LINGER, -1 if linger is None else int(linger * 1000))
        self.socket.connect(endpoint)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, proposal: str, number: int, data: Any, shape: tuple[int, ...] | None = None,
             dtype: str | None = None, meta: Mapping[str, Any] | None = None) -> None:
        """Publish frame `number` of the proposal: a numpy array, or bytes with their shape and dtype. Raises
        PublishRefused if beamhub refused an earlier frame."""
        self.check()
        if hasattr(data, "__array_interface__"):
            shape, dtype = tuple(data.shape), data.dtype.str
            data = memoryview(data if data.flags.c_contiguous else data.copy()).cast("B")
        if shape is None or dtype is None:
            raise ValueError("bytes need their shape and dtype (e.g. shape=(512, 1024), dtype='<u2')")
        header = json.dumps({"proposal": proposal, "frame": number, "shape": list(shape), "dtype": dtype,
                             "meta": dict(meta or {})}).encode()
        self.socket.send_multipart([self._token, header, data], copy=self._copy)

    def check(self) -> None:
        """Raise PublishRefused for the first refusal beamhub sent back, if any."""
        if self.socket.poll(0, self._zmq.POLLIN):
            raise PublishRefused(json.loads(self.socket.recv()))

    def close(self) -> None:
        self.socket.close()
        self._context.term()
