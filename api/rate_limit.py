"""Ingest rate limit per API key: a token bucket per key id, in each API process.

A key may send `rate` ingest requests per second on average and `burst` at once
(`DRIFTLINE_INGEST_RATE_PER_KEY`, `DRIFTLINE_INGEST_BURST`; rate 0, the default, is no limit). A request
over the limit is answered 429 with `Retry-After` (whole seconds until the bucket holds a token again).
Buckets are per process: with N API replicas behind a load balancer a key gets up to N times the rate.
Buckets exist only for verified keys (the limit runs after authentication), so junk tokens cannot grow them.

>>> clock = iter([0.0, 0.0, 0.0, 0.5]).__next__
>>> buckets = TokenBuckets(rate=2, burst=2, clock=clock)
>>> [buckets.take("k") for _ in range(4)]
[0.0, 0.0, 0.5, 0.0]
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBuckets:
    """One token bucket per key: `burst` tokens at most, refilled at `rate` tokens per second."""

    def __init__(self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate)))  # burst 0: one second's worth of requests
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, when counted)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """Take a token from `key`'s bucket: 0.0 when it had one, else the seconds until it will have one
        (nothing is taken then)."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """The `Retry-After` value of a wait: whole seconds, at least 1.

    >>> retry_after(0.2), retry_after(2.01)
    ('1', '3')
    """
    return str(max(1, math.ceil(seconds)))
