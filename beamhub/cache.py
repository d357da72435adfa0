"""A short memory of decisions, so that hot paths skip the database; nothing correctness needs lives only here."""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SharedEpoch:
    """A number that every process of this host reads from one small file, mapped in memory: moved when a credential
    or a right may have ended, so that each worker process forgets what it kept at its next look, not seconds later."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)

    def value(self) -> int:
        return int.from_bytes(self._map[:8], "little")

    def move(self) -> None:
        self._map[:8] = time.time_ns().to_bytes(8, "little")


class TtlCache(Generic[K, V]):
    """Values remembered for `ttl` seconds, at most `size` of them (expired ones are swept when it is full), and
    forgotten whenever `epoch` moves."""

    def __init__(self, ttl: float, size: int = 10_000, epoch: SharedEpoch | None = None) -> None:
        self.ttl = ttl
        self.size = size
        self.epoch = epoch
        self._seen = epoch.value() if epoch is not None else 0
        self._values: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        if self.epoch is not None and (now := self.epoch.value()) != self._seen:
            self._values.clear()
            self._seen = now
        kept = self._values.get(key)
        return kept[1] if kept is not None and kept[0] > time.monotonic() else None

    def version(self) -> int:
        """Where the epoch stands now (0 without one): taken before a value is read, for put's `read_at`."""
        return self.epoch.value() if self.epoch is not None else 0

    def put(self, key: K, value: V, ttl: float | None = None, read_at: int | None = None) -> None:
        """Remember a value for the cache's ttl, or for `ttl` seconds if shorter (nothing if it is not positive,
        nor if the epoch moved since `read_at`: the value may have been read before a revocation)."""
        ttl = self.ttl if ttl is None else min(ttl, self.ttl)
        if ttl <= 0 or (read_at is not None and read_at != self.version()):
            return
        now = time.monotonic()
        if len(self._values) >= self.size:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
            if len(self._values) >= self.size:
                self._values.clear()
        self._values[key] = (now + ttl, value)
