"""The one rate limiter: at most `limit` events in any moving window, per key.

Built on the `limits` library (moving-window strategy). Counts are kept in this process
(`memory://`) unless RATELIMIT_STORAGE_URL names a shared storage (e.g. `redis://...`), so
several workers or replicas share one budget. Used by `limit_per_user` (guardrails.web) and by
the HTTP connector's `rate_limit_per_minute`.
"""

from __future__ import annotations

import time

from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class RateLimiter:
    """At most `limit` events per `window` seconds for each key (a moving window)."""

    def __init__(
        self,
        limit: int,
        window: int = 60,
        *,
        storage_url: str | None = None,
        namespace: str = "guardrails",
    ):
        if limit < 1:
            raise ValueError("a rate limit needs at least one call per window")
        self.limit, self.window, self.namespace = limit, window, namespace
        self.item = RateLimitItemPerSecond(limit, window)
        self.storage = storage_from_string(storage_url or "memory://")
        self._limiter = MovingWindowRateLimiter(self.storage)

    def take(self, key: str = "") -> float:
        """Record one event for `key`; returns 0 when allowed, else seconds until allowed."""
        if self._limiter.hit(self.item, self.namespace, key):
            return 0.0
        stats = self._limiter.get_window_stats(self.item, self.namespace, key)
        return max(0.001, stats.reset_time - time.time())
