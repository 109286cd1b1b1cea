"""The one rate limiter: at most `limit` events in any moving window, per key.

Built on the `limits` library (moving-window strategy). Counts are kept in this process
(`memory://`) unless RATELIMIT_STORAGE_URL names a shared storage (`redis://host:6379/0`), so
several workers or replicas share one budget. Used by `limit_per_user` (guardrails.web) and by
the HTTP connector's `rate_limit_per_minute`.

When the shared storage cannot be reached (Redis down), the limiter fails open (lets the call
through, logs a warning) or closed (raises RateLimitUnavailable: the web app answers 503, a
connector call is refused) as `quotas.when_limits_unavailable` in microapp.yaml says; the
default is closed for risk tier 3 and open otherwise (Manifest.limits_fail_open). Redis is
given one second to answer, so a dead one never hangs a request.
"""

from __future__ import annotations

import time

import structlog
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = structlog.get_logger("guardrails.ratelimit")
REDIS_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
REPORTED_KEYS = 4096


class RateLimitUnavailable(RuntimeError):
    """The shared counts cannot be read and the limit fails closed: refuse the call."""


class RateLimiter:
    """At most `limit` events per `window` seconds for each key (a moving window)."""

    def __init__(
        self,
        limit: int,
        window: int = 60,
        *,
        storage_url: str | None = None,
        namespace: str = "guardrails",
        fail_open: bool = True,
    ):
        if limit < 1:
            raise ValueError("a rate limit needs at least one call per window")
        self.limit, self.window, self.namespace = limit, window, namespace
        self.fail_open = fail_open
        self.item = RateLimitItemPerSecond(limit, window)
        url = storage_url or "memory://"
        options = REDIS_TIMEOUTS if url.startswith(("redis://", "rediss://")) else {}
        self.storage = storage_from_string(url, **options)
        self._limiter = MovingWindowRateLimiter(self.storage)
        # In this process: `take` never waits on a network, so it may run on the event loop.
        self.local = url.startswith("memory://")
        self._reported: dict[str, float] = {}  # key -> end of the refusal already reported

    def first_refusal(self, key: str, wait: float) -> bool:
        """Whether this refusal of `key` is the first of its spell (the others within `wait`
        seconds are not reported again: a caller hammering a limit must not flood the audit
        trail). Remembers at most REPORTED_KEYS keys, the oldest forgotten first."""
        now = time.monotonic()
        if self._reported.get(key, 0.0) > now:
            return False
        self._reported.pop(key, None)
        while len(self._reported) >= REPORTED_KEYS:
            del self._reported[next(iter(self._reported))]
        self._reported[key] = now + wait
        return True

    def take(self, key: str = "") -> float:
        """Record one event for `key`; returns 0 when allowed, else seconds until allowed.

        Raises RateLimitUnavailable when the storage is unreachable and the limit fails closed.
        """
        try:
            if self._limiter.hit(self.item, self.namespace, key):
                return 0.0
            stats = self._limiter.get_window_stats(self.item, self.namespace, key)
        except Exception as exc:  # noqa: BLE001 - any storage failure (redis, network)
            if self.fail_open:
                log.warning("rate limit storage unreachable: failing open", error=str(exc))
                return 0.0
            log.error("rate limit storage unreachable: failing closed", error=str(exc))
            raise RateLimitUnavailable(
                f"the rate limit counts cannot be read ({type(exc).__name__})"
            ) from exc
        return max(0.001, stats.reset_time - time.time())
