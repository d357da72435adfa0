"""The ROUTER sockets beamhub binds for live frames: the DAQ's and the subscribers'."""

from __future__ import annotations

from collections.abc import Iterable

import zmq
import zmq.asyncio

SOCKET_BUFFER = 4 * 2**20
"""The kernel's buffer of each TCP connection (capped by net.core.rmem_max): fewer, larger reads of a big frame."""


def bind_router(endpoint: str, options: Iterable[tuple[int, int]]) -> tuple[zmq.asyncio.Context, zmq.asyncio.Socket]:
    """A ROUTER socket with these options bound at `endpoint`, and its context (zmq.ZMQError if it cannot be had,
    nothing left open)."""
    context = zmq.asyncio.Context()
    socket = context.socket(zmq.ROUTER)
    try:
        for option, value in options:
            socket.setsockopt(option, value)
        socket.bind(endpoint)
    except zmq.ZMQError:
        close(context, socket)
        raise
    return context, socket


def close(context: zmq.asyncio.Context, socket: zmq.asyncio.Socket) -> None:
    """Close a socket of bind_router and its context."""
    socket.close()
    context.term()
