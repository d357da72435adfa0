"""What carries a subscription: beamhub's ZeroMQ endpoint (pyzmq), or its websocket (the `websockets` library)."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import zmq
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from beamhub_stream.subscription import Message, StreamRefused

SILENCE_SECONDS = 15.0
"""beamhub probes a ZeroMQ subscriber every 2 s: this long without a message, it is gone."""
SOCKET_BUFFER = 4 * 2**20
"""The kernel's buffer of the TCP connection (capped by net.core.rmem_max): fewer, larger reads of a big frame."""
MAX_MESSAGE = 2**30
"""The largest websocket message taken (beamhub's own limit on a frame is stream_max_frame_bytes)."""


class ZeroMQ:
    """A DEALER socket to beamhub's stream_subscribe_bind: a frame is [header, bytes], the bytes received once and
    never copied; beamhub sends at most `window` frames ahead of those taken."""

    def __init__(self, endpoint: str, token: str, proposal: str, window: int) -> None:
        self.window = window
        self._taken = 0
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        for option, value in ((zmq.LINGER, 1000), (zmq.RCVBUF, SOCKET_BUFFER), (zmq.HEARTBEAT_IVL, 5000),
                              (zmq.HEARTBEAT_TIMEOUT, 15000), (zmq.IPV6, 1)):
            self.socket.setsockopt(option, value)
        self.socket.connect(endpoint)
        self.socket.send_multipart([b"subscribe", token.encode(), proposal.encode(), str(window).encode()])

    def receive(self, timeout: float | None) -> Message | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = SILENCE_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.socket.poll(int(wait * 1000)):
                if deadline is None:
                    raise ConnectionError(f"beamhub sent nothing for {SILENCE_SECONDS:.0f} s")
                raise TimeoutError(f"no frame within {timeout} s")
            parts = self.socket.recv_multipart(copy=False)
            fields = json.loads(parts[0].bytes)
            if fields.get("type") != "ping":
                return fields, parts[1].buffer if len(parts) > 1 else None

    def took(self) -> None:
        self._taken += 1
        if self._taken >= max(1, self.window // 2):
            with contextlib.suppress(zmq.Again):  # beamhub is gone: the silence will tell
                self.socket.send_multipart([b"credit", str(self._taken).encode()], flags=zmq.NOBLOCK)
            self._taken = 0

    def close(self) -> None:
        if not self.socket.closed:
            with contextlib.suppress(zmq.ZMQError):
                self.socket.send(b"cancel", flags=zmq.NOBLOCK)
            self.socket.close()


class WebSocket:
    """beamhub's websocket route: a frame is its header as text, then its bytes as one binary message."""

    def __init__(self, url: str, token: str, open_timeout: float) -> None:
        self._open = contextlib.ExitStack()  # websockets 17 wants its connection opened as a context
        try:
            self.connection = self._open.enter_context(connect(
                url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=open_timeout,
                max_size=MAX_MESSAGE, compression=None))
        except InvalidStatus as exc:
            raise StreamRefused(exc.response.status_code, _detail(exc.response.body)) from exc

    def receive(self, timeout: float | None) -> Message | None:
        try:
            while isinstance(message := self.connection.recv(timeout), bytes):
                pass  # bytes without their header: not a frame this subscriber can read
            fields = json.loads(message)
            if fields.get("type") != "frame":
                return fields, None
            data = self.connection.recv()  # the bytes follow their header at once: never split a frame
        except ConnectionClosed:
            return None
        return fields, memoryview(data if isinstance(data, bytes) else data.encode())

    def took(self) -> None:
        """The websocket's flow control is TCP's."""

    def close(self) -> None:
        self._open.close()


def _detail(body: bytes | None) -> str:
    try:
        answer: Any = json.loads(body or b"{}")
    except ValueError:
        return (body or b"").decode(errors="replace")
    return str(answer.get("detail", "")) if isinstance(answer, dict) else str(answer)
