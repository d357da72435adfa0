"""A short memory of decisions, so that hot paths skip the database; nothing correctness needs lives only here."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values remembered for `ttl` seconds, at most `size` of them (expired ones are swept when it is full)."""

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._values: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        kept = self._values.get(key)
        return kept[1] if kept is not None and kept[0] > time.monotonic() else None

    def clear(self) -> None:
        self._values.clear()

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Remember a value for the cache's ttl, or for `ttl` seconds if shorter (nothing if it is not positive)."""
        ttl = self.ttl if ttl is None else min(ttl, self.ttl)
        if ttl <= 0:
            return
        now = time.monotonic()
        if len(self._values) >= self.size:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
            if len(self._values) >= self.size:
                self._values.clear()
        self._values[key] = (now + ttl, value)
