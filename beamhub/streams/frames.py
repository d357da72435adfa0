"""The wire format of live frames.

From the DAQ (ZeroMQ, one multipart message a frame): the publish token, a JSON header
`{"proposal": "2024-00123", "frame": 17, "shape": [512, 1024], "dtype": "<u2", "meta": {...}}`, the raw bytes.
To a subscriber (websocket): two messages a frame, its header as text (`{"type": "frame", ...}`: the DAQ's fields,
`seq`, the relay's count of the proposal's frames, and `gap`, how many frames were dropped for this subscriber just
before this one) and then its bytes as one binary message, as they came from the DAQ (never copied between
subscribers); other text messages are `{"type": "hello", ...}` first and `{"type": "end", "reason": ...}` before
the relay closes the websocket.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beamhub.data.proposals.schemas import PROPOSAL_PATTERN

PROPOSAL = re.compile(PROPOSAL_PATTERN)
MAX_HEADER_BYTES = 64 * 1024
NUMERIC_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex: what a detector frame may hold
MAX_META_DEPTH = 32
"""How deeply a frame's meta may nest objects and lists."""


class BadFrame(ValueError):
    """A message from the DAQ that is not a frame; the message says why."""


@dataclass(frozen=True)
class Header:
    """What a frame says of itself: whose it is, its number and how to read its bytes."""

    proposal: str
    frame: int
    shape: tuple[int, ...]
    dtype: str
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self, seq: int) -> str:
        """The header a subscriber gets, with the relay's sequence number and no gap."""
        return json.dumps({"type": "frame", "proposal": self.proposal, "frame": self.frame, "seq": seq,
                           "shape": list(self.shape), "dtype": self.dtype, "meta": self.meta, "gap": 0},
                          separators=(",", ":"))


def with_gap(header: str, gap: int) -> str:
    """A subscriber's copy of an encoded header that says how many frames it missed just before this one."""
    return header if gap == 0 else json.dumps({**json.loads(header), "gap": gap}, separators=(",", ":"))


def parse_header(raw: bytes, size: int) -> Header:
    """The DAQ's header of a frame of `size` bytes; BadFrame unless it is complete and matches the bytes."""
    if len(raw) > MAX_HEADER_BYTES:
        raise BadFrame(f"header of {len(raw)} bytes (at most {MAX_HEADER_BYTES})")
    try:
        fields = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # not UTF-8 or JSON, NaN or Infinity, a huge number, deep nesting
        raise BadFrame(f"header is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(fields, dict):
        raise BadFrame("header is not a JSON object")
    proposal, frame, shape, meta = fields.get("proposal"), fields.get("frame"), fields.get("shape"), fields.get("meta")
    if not isinstance(proposal, str) or not PROPOSAL.match(proposal):
        raise BadFrame("header needs proposal, a proposal id")
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        raise BadFrame("header needs frame, a number >= 0")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63
                                              for n in shape) or len(shape) > 32:
        raise BadFrame("header needs shape, a list of at most 32 sizes >= 0 (and < 2**63)")
    if meta is not None and not isinstance(meta, dict):
        raise BadFrame("meta, if given, is a JSON object")
    if _depth(meta) > MAX_META_DEPTH:
        raise BadFrame(f"meta nests more than {MAX_META_DEPTH} levels deep")
    dtype = _dtype(fields.get("dtype"))
    if math.prod(shape) * dtype.itemsize != size:
        raise BadFrame(f"shape {shape} of {dtype.str} is {math.prod(shape) * dtype.itemsize} bytes, "
                       f"the frame has {size}")
    return Header(proposal, frame, tuple(shape), dtype.str, meta or {})


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: object) -> int:
    """How deeply objects and lists nest in a parsed JSON value (0 for a scalar), without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _dtype(value: object) -> np.dtype[Any]:
    if not isinstance(value, str) or len(value) > 16:
        raise BadFrame("header needs dtype, a numpy type string such as <u2")
    try:
        dtype = np.dtype(value)
    except TypeError as exc:
        raise BadFrame(f"dtype {value!r} is not a numpy type") from exc
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise BadFrame(f"dtype {value!r} is not a plain numeric type")
    return dtype


def control_message(kind: str, **fields: Any) -> str:
    """One text websocket message that is no frame: the hello, the end of the subscription."""
    return json.dumps({"type": kind, **fields})
