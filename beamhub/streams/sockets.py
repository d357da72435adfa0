"""The ROUTER sockets beamhub binds for live frames: the DAQ's and the subscribers', and the memory their frames
live in."""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

import zmq
import zmq.asyncio

SOCKET_BUFFER = 4 * 2**20
"""The kernel's buffer of each TCP connection (capped by net.core.rmem_max): fewer, larger reads of a big frame."""
FRAME_MEMORY_KEPT = 256 * 2**20
"""Freed memory the process keeps for the next frames instead of handing it back to the kernel."""
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
LARGEST_HEAP_BLOCK = 32 * 2**20
"""glibc's highest mmap threshold: a frame up to this size is allocated from the heap, a larger one is mapped."""


def keep_frame_memory() -> bool:
    """Have the C allocator (glibc's) keep freed frames' memory for the next frames; False where it cannot be told.

    ZeroMQ receives every frame into a new buffer. By default glibc hands a freed frame's memory back to the kernel
    once more than 2 MiB lie free at the top of a heap, so the next frame's buffer is faulted in and zeroed again
    page by page (1 MiB frames: ~23 page faults each; kept, beamhub's receiving thread spends ~0.15 ms of CPU a
    frame instead of ~0.21, bench/README.md). Kept, the
    memory is reused: the process stays at its high-water mark of frames in flight (which the relay bounds), up to
    FRAME_MEMORY_KEPT of it free, instead of shrinking after each burst. Process-wide: called only where the relay
    runs."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own policy
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK)) and bool(mallopt(M_TRIM_THRESHOLD, FRAME_MEMORY_KEPT))


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
