"""Request pacing for IB: a token bucket (injectable clock) and the market-data line budget.

IB limits (defaults, all configurable):

* historical data: no more than 60 requests per 10 minutes (and bursts are punished with error
  162) -> ``TokenBucket(capacity=6, rate=0.1)``: 6 at once, then one every 10 s on average;
* contract details / option-chain definitions: the API-wide 50 messages/s, and the sec-def
  servers throttle heavy users -> ``TokenBucket(capacity=20, rate=10)``;
* market data: 100 simultaneous lines on a standard account (snapshots occupy a line while they
  are in flight) -> :class:`LineBudget`.

:meth:`TokenBucket.reserve` is pure arithmetic on the injected clock (no sleeping): it books a
token and says how long the caller must wait before using it, so tests drive it with a fake
clock. :meth:`TokenBucket.acquire` is the asyncio wrapper used on the adapters' event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` tokens per second; one token per request."""

    def __init__(
        self, capacity: float, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 1 or rate <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and rate > 0")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock
        self._tokens = float(capacity)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._stamp = max(self._stamp, now)

    def available(self) -> float:
        with self._lock:
            self._refill(self._clock())
            return self._tokens

    def try_acquire(self) -> bool:
        """Take a token if one is there now; never waits."""
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def reserve(self) -> float:
        """Book the next token; return the seconds to wait before using it (0 = now).

        Tokens may go negative: each caller gets its own later slot, so N callers arriving at
        once are spread ``1/rate`` apart after the burst, never all at the same instant.
        """
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def penalize(self, seconds: float) -> None:
        """After a pacing violation: no token for ``seconds`` (the bucket refills from there)."""
        with self._lock:
            self._refill(self._clock())
            self._tokens = min(self._tokens, 1.0 - seconds * self.rate)

    async def acquire(self) -> float:
        """Wait (asyncio) for a token; returns the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
        return delay


def historical_bucket(clock: Callable[[], float] = time.monotonic) -> TokenBucket:
    return TokenBucket(capacity=6, rate=0.1, clock=clock)


def contract_bucket(clock: Callable[[], float] = time.monotonic) -> TokenBucket:
    return TokenBucket(capacity=20, rate=10.0, clock=clock)


class LineBudget:
    """At most ``limit`` market-data lines in use at once (used on one asyncio loop).

    ``try_take`` never waits (streaming subscriptions: the caller gets a clear error when the
    budget is full); ``take`` queues until a line is free or ``timeout`` passes (snapshots).
    """

    def __init__(self, limit: int = 100) -> None:
        if limit < 1:
            raise ValueError("a line budget needs at least one line")
        self.limit = limit
        self.in_use = 0
        self.high_water = 0
        self._freed: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._freed is None:
            self._freed = asyncio.Event()
        return self._freed

    def try_take(self) -> bool:
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        self.high_water = max(self.high_water, self.in_use)
        return True

    async def take(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.try_take():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._event()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return self.try_take()
        return True

    def give_back(self) -> None:
        if self.in_use > 0:
            self.in_use -= 1
        event, self._freed = self._freed, None
        if event is not None:
            event.set()

    def reset(self) -> None:
        """All lines are gone (connection lost): nothing is in use any more."""
        self.in_use = 0
        event, self._freed = self._freed, None
        if event is not None:
            event.set()
