"""The DAQ's side of live frames: each frame to beamhub's ZeroMQ endpoint (stream_bind) with a data:ingest token."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

TOKEN_ENV = "BEAMHUB_TOKEN"


class PublishRefused(PermissionError):
    """beamhub refused a frame the DAQ published (a bad token, an unknown proposal, a malformed frame)."""

    def __init__(self, answer: Mapping[str, Any]) -> None:
        super().__init__(f"{answer.get('status')}: {answer.get('error')} (frame {answer.get('frame')})")
        self.status = answer.get("status")
        self.frame = answer.get("frame")


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
