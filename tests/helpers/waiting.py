"""Polling for what happens in another process or thread, with a deadline and a message that says what was awaited."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 10, what: str = "the condition", interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float, log: Callable[[], str]) -> None:
    """Wait until `process` listens on the loopback `port`; fail at once, with its `log()`, if it exits first."""
    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{log()}")
        return listening(port)
    try:
        wait_for(up, timeout, f"{process.args!r} to listen on {port}")
    except AssertionError as error:
        raise RuntimeError(f"{error}:\n{log()}") from None
