"""A small websocket client (RFC 6455) for reading a stream of large binary messages with one copy each.

Frames from the server are read straight into the message's own buffer (recv_into), so a megabyte frame costs the
kernel's copy and nothing more; pings are answered while reading; only what a subscriber sends (pongs, the close)
is masked. No extensions, no subprotocols: exactly what beamhub's stream route speaks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import ssl
import struct
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
MAX_HEAD = 64 * 1024


class HandshakeRefused(Exception):
    """The server answered the handshake with an HTTP status other than 101."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Closed(Exception):
    """The connection is closed."""


class WebSocket:
    """A client connection: recv() gives each message whole, as str (text) or bytearray (binary)."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host, port = parts.hostname or "", parts.port or (443 if secure else 80)
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = (ssl.create_default_context().wrap_socket(raw, server_hostname=host)
                                    if secure else raw)
        self._buffer = bytearray()
        self.closed = False
        try:
            self._handshake(parts.netloc, parts.path or "/", headers)
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(None)

    def _handshake(self, netloc: str, path: str, headers: dict[str, str]) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {netloc}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self._buffer:
            self._fill(MAX_HEAD)
        head, _, self._buffer[:] = self._buffer.partition(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        answer = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
        if status != 101:
            raise HandshakeRefused(status, self._detail(answer))
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if answer.get("sec-websocket-accept") != accept:
            raise Closed("the server's handshake does not answer ours")

    def _detail(self, answer: dict[str, str]) -> str:
        """The JSON `detail` of a refused handshake's body (or the body itself)."""
        length = int(answer.get("content-length", "0") or 0)
        while len(self._buffer) < min(length, MAX_HEAD):
            if not self._fill(MAX_HEAD):
                break
        body = bytes(self._buffer[:length])
        try:
            return str(json.loads(body)["detail"])
        except (ValueError, KeyError, TypeError):
            return body.decode(errors="replace")

    def _fill(self, size: int) -> int:
        chunk = self.sock.recv(size)
        if not chunk:
            raise Closed("the server closed the connection")
        self._buffer += chunk
        return len(chunk)

    def _read_exact(self, n: int) -> bytearray:
        """n bytes: what is buffered, the rest received straight into the result."""
        out = bytearray(n)
        have = min(n, len(self._buffer))
        out[:have] = self._buffer[:have]
        del self._buffer[:have]
        view = memoryview(out)
        while have < n:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise Closed("the server closed the connection")
            have += got
        return out

    def _wait(self, timeout: float | None) -> None:
        """Until a byte can be read, or TimeoutError."""
        if self._buffer or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return
        if not select.select([self.sock], [], [], timeout)[0]:
            raise TimeoutError(f"no message in {timeout} s")

    def recv(self, timeout: float | None = None) -> str | bytearray:
        """The next message; Closed once the connection is closed."""
        parts: list[bytearray] = []
        kind = None
        while True:
            if self.closed:
                raise Closed("the connection is closed")
            self._wait(timeout)
            fin, opcode, payload = self._frame()
            if opcode == PING:
                self._send(PONG, bytes(payload))
            elif opcode == CLOSE:
                self._close_answered(payload)
            elif opcode != PONG:
                kind = kind if opcode == CONTINUATION else opcode
                parts.append(payload)
                if fin:
                    message = parts[0] if len(parts) == 1 else bytearray().join(parts)
                    return message.decode() if kind == TEXT else message

    def _frame(self) -> tuple[bool, int, bytearray]:
        first, second = self._read_exact(2)
        length = second & 0x7F
        if second & 0x80:
            raise Closed("the server masked a frame")
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        return bool(first & 0x80), first & 0x0F, self._read_exact(length)

    def _close_answered(self, payload: bytearray) -> None:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        reason = payload[2:].decode(errors="replace")
        self.close()
        raise Closed(f"closed by the server ({code}{': ' + reason if reason else ''})")

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))  # control frames: under 126 bytes
        self.sock.sendall(head + mask + masked)

    def close(self) -> None:
        """Say goodbye (1000) and close the socket; nothing if already closed."""
        if self.closed:
            return
        self.closed = True
        try:
            self._send(CLOSE, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()
