"""Clocks: the wall clock (New York, tz-aware) and a simulated clock for demos, tests and backtests."""

from __future__ import annotations

import threading
import time as _time
from datetime import datetime

from core.calendar import NY
from core.models import require_aware


class WallClock:
    def now(self) -> datetime:
        return datetime.now(tz=NY)

    def sleep_until(self, t: datetime) -> None:
        require_aware(t, "t")
        delay = (t - self.now()).total_seconds()
        if delay > 0:
            _time.sleep(delay)


class SimClock:
    """Simulated time starting at ``start``; ``sleep_until`` advances it.

    ``speed`` 0 means instantaneous; ``speed`` N sleeps for real (target - now) / N seconds, so a
    6.5-hour session at speed 600 takes 39 s of wall time. Time never goes backwards.
    """

    def __init__(self, start: datetime, speed: float = 0.0) -> None:
        require_aware(start, "start")
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._now = start.astimezone(NY)
        self._speed = speed
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep_until(self, t: datetime) -> None:
        require_aware(t, "t")
        with self._lock:
            delta = (t - self._now).total_seconds()
        if delta <= 0:
            return
        if self._speed > 0:
            _time.sleep(delta / self._speed)
        with self._lock:
            self._now = max(self._now, t.astimezone(NY))
