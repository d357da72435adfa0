"""HTTP in tests: a free loopback port, and the shape of beamhub's JSON errors."""

from __future__ import annotations

import socket

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_error(response: httpx.Response, status: int, *fragments: str) -> str:
    """A JSON error with the expected status whose detail mentions each fragment; returns the detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers["content-type"]
    body = response.json()
    assert isinstance(body.get("code"), str) and body["code"], body  # a machine code beside the English words
    detail = str(body["detail"])
    for fragment in fragments:
        assert fragment in detail, detail
    return detail
