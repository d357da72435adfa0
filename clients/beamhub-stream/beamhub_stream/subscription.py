"""An open subscription to a proposal's live frames, whatever carries them (ZeroMQ or the websocket)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = tuple[dict[str, Any], memoryview | None]
"""A message from beamhub: its JSON fields and, for a frame, its bytes."""


class StreamRefused(PermissionError):
    """beamhub refused the subscription (401: no valid token, 404: not a proposal this user may read)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class StreamEnded(ConnectionError):
    """beamhub ended the subscription, e.g. its token was revoked or the user left the proposal."""


class Transport(Protocol):
    """How the messages of one subscription arrive."""

    def receive(self, timeout: float | None) -> Message | None:
        """The next message (TimeoutError after `timeout` s); None once beamhub closed the stream normally."""

    def took(self) -> None:
        """A frame was handed to the reader: beamhub may send another."""

    def close(self) -> None:
        """End the subscription."""


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


class Subscription:
    """An open subscription: iterate for frames; `missed` counts every frame dropped for this subscriber; `via`
    says what carries it ("zeromq" or "websocket")."""

    def __init__(self, transport: Transport, via: str) -> None:
        self.transport = transport
        self.via = via
        self.hello: dict[str, Any] = {}
        self.received = 0
        self.missed = 0
        self._last_seq: int | None = None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next()) is not None:
            yield frame

    def close(self) -> None:
        self.transport.close()

    def greeted(self, timeout: float | None) -> None:
        """Take beamhub's hello: from then on, every frame published for the proposal reaches this subscriber."""
        try:
            message = self.transport.receive(timeout)
        except TimeoutError:
            message = None
        self.hello = message[0] if message is not None else {}
        if self.hello.get("type") == "refused":
            self.close()
            raise StreamRefused(int(self.hello.get("status", 0)), str(self.hello.get("detail", "")))
        if self.hello.get("type") != "hello":
            self.close()
            raise ConnectionError("beamhub did not open the subscription")

    def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame (TimeoutError after `timeout` s); None once beamhub closed the stream normally."""
        while (message := self.transport.receive(timeout)) is not None:
            fields, data = message
            if fields.get("type") == "frame" and data is not None:
                return self._frame(fields, data)
            if fields.get("type") == "end":
                self.close()
                raise StreamEnded(fields.get("reason", "beamhub ended the subscription"))
        return None

    def _frame(self, header: dict[str, Any], data: memoryview) -> Frame:
        seq, gap = int(header["seq"]), int(header.get("gap", 0))
        if self._last_seq is not None and seq - self._last_seq - 1 > gap:
            gap = seq - self._last_seq - 1  # the sequence numbers know better than the headers
        self._last_seq = seq
        self.received += 1
        self.missed += gap
        self.transport.took()
        return Frame(number=header["frame"], seq=seq, shape=tuple(header["shape"]), dtype=header["dtype"],
                     data=data, gap=gap, meta=header.get("meta") or {})
