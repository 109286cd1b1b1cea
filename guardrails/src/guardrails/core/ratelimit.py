"""The one rate limiter: at most `limit` events in any moving window, per key.

Built on the `limits` library (moving-window strategy). Counts are kept in this process
(`memory://`) unless RATELIMIT_STORAGE_URL names a shared storage (`redis://host:6379/0`), so
several workers or replicas share one budget. Used by `limit_per_user` (guardrails.web) and by
the HTTP connector's `rate_limit_per_minute`.

In this process the counts are `LocalWindows`, not `limits`' own memory storage: that one starts
a timer thread every 10 ms while calls keep coming and, in each, copies every key's list of
entries, and it inserts each entry at the front of a list. Under a steady load of signed-in
requests (every one counts against the quota) that cost a measured 4-7 % of the app's time
holding the GIL. `LocalWindows` answers as `limits`' memory storage does (a test plays the same
calls into both), from a deque per key, and forgets idle keys as it goes, with no thread. Its
clock is monotonic: a wall clock stepped back or forward neither locks a caller out for the
step nor hands them a fresh budget.

When the shared storage cannot be reached (Redis down), the limiter fails open (lets the call
through, logs a warning) or closed (raises RateLimitUnavailable: the web app answers 503, a
connector call is refused) as `quotas.when_limits_unavailable` in microapp.yaml says; the
default is closed for risk tier 3 and open otherwise (Manifest.limits_fail_open). Redis is
given one second to answer, so a dead one never hangs a request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import structlog
from limits import RateLimitItemPerSecond
from limits.storage import MovingWindowSupport, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = structlog.get_logger("guardrails.ratelimit")
REDIS_TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
REPORTED_KEYS = 4096


class RateLimitUnavailable(RuntimeError):
    """The shared counts cannot be read and the limit fails closed: refuse the call."""


class LocalWindows(Storage, MovingWindowSupport):
    """In-process moving windows for `limits`' MovingWindowRateLimiter: per key, the times of
    the entries still in the window, oldest first. Thread-safe (the quota takes on the event
    loop, per-action limits and connectors in worker threads). Entries older than the window
    are dropped when their key is next used; once a window, keys with no entry left are
    forgotten, so memory follows the callers of the last window. Times are `clock()`'s
    (monotonic), and so are the window starts it gives back."""

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        clock: Callable[[], float] = time.monotonic,
        **options,
    ):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self._longest = 0.0  # the longest window asked for: idle keys outlive it

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def _live(self, key: str, now: float, expiry: float) -> deque[float] | None:
        """The key's entries within the window ending now (the caller holds the lock)."""
        self._longest = max(self._longest, expiry)
        if now >= self._next_sweep:  # forget idle keys: one pass per (longest) window
            self._next_sweep = now + self._longest
            edge = now - self._longest
            for idle in [k for k, q in self._events.items() if not q or q[-1] < edge]:
                del self._events[idle]
        entries = self._events.get(key)
        if entries is not None:
            while entries and entries[0] < now - expiry:
                entries.popleft()
        return entries

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        with self._lock:
            now = self.clock()
            entries = self._live(key, now, expiry)
            if entries is None:
                entries = self._events[key] = deque()
            if len(entries) + amount > limit:
                return False
            entries.extend([now] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        with self._lock:
            now = self.clock()
            entries = self._live(key, now, expiry)
            # An entry exactly one window old still counts, as in `acquire_entry` (`limits`'
            # memory storage leaves it out here, and then names a reset a whole window away
            # for the call it has just refused because of that entry).
            if not entries:
                return now, 0
            return entries[0], len(entries)

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)

    def reset(self) -> int:
        with self._lock:
            count = len(self._events)
            self._events.clear()
            return count

    def check(self) -> bool:
        return True

    # Fixed-window calls: MovingWindowRateLimiter never makes them.
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError("LocalWindows keeps moving windows only")

    def get(self, key: str) -> int:
        raise NotImplementedError("LocalWindows keeps moving windows only")

    def get_expiry(self, key: str) -> float:
        raise NotImplementedError("LocalWindows keeps moving windows only")


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
        # In this process: `take` never waits on a network, so it may run on the event loop.
        self.local = url.startswith("memory://")
        options = REDIS_TIMEOUTS if url.startswith(("redis://", "rediss://")) else {}
        self.storage = LocalWindows() if self.local else storage_from_string(url, **options)
        self._limiter = MovingWindowRateLimiter(self.storage)
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
            now = self.storage.clock() if self.local else time.time()  # the storage's clock
        except Exception as exc:  # noqa: BLE001 - any storage failure (redis, network)
            if self.fail_open:
                log.warning("rate limit storage unreachable: failing open", error=str(exc))
                return 0.0
            log.error("rate limit storage unreachable: failing closed", error=str(exc))
            raise RateLimitUnavailable(
                f"the rate limit counts cannot be read ({type(exc).__name__})"
            ) from exc
        return max(0.001, stats.reset_time - now)
