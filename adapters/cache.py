"""In-process cache behind the Cache port (Redis comes with the integrations; never the truth).

Keys are namespaced per system by the caller (``smart0dte:...``); values are bytes with a TTL.
The clock is injectable so expiry can be tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class InProcessCache:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_items: int = 10_000
    ) -> None:
        self._clock = clock
        self._max = max_items
        self._data: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            expires, value = item
            if self._clock() >= expires:
                del self._data[key]
                return None
            return value

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl must be positive, got {ttl_seconds}")
        with self._lock:
            if len(self._data) >= self._max and key not in self._data:
                now = self._clock()
                for k in [k for k, (exp, _) in self._data.items() if exp <= now]:
                    del self._data[k]
                if len(self._data) >= self._max:
                    del self._data[next(iter(self._data))]  # oldest insertion
            self._data[key] = (self._clock() + ttl_seconds, value)
