# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""Per-user rate limits for routes: `Depends(limit_per_user("export", per_minute=5))`.

A sliding one-minute window per (limit name, user), kept per app. A refused request gets a
429 page saying when to try again and is audited (`ratelimit.exceeded`, result `denied`).
The counts live in this process: behind several worker processes each counts on its own, so
divide the limit by the number of workers, or keep one worker per app (the micro-app default).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable

from fastapi import Depends, HTTPException, Request

from guardrails.audit import audit
from guardrails.sso import User, require_user


class SlidingWindow:
    """At most `limit` events per `window` seconds for each key."""

    def __init__(
        self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        if limit < 1:
            raise ValueError("a rate limit needs at least one call per window")
        self.limit, self.window, self.clock = limit, window, clock
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Record one event for `key`; returns 0 when allowed, else seconds until allowed."""
        now = self.clock()
        with self._lock:
            events = self._events[key]
            while events and now - events[0] >= self.window:
                events.popleft()
            if len(events) >= self.limit:
                return self.window - (now - events[0])
            events.append(now)
            return 0.0


def limit_per_user(name: str, per_minute: int):
    """Dependency: the signed-in user may pass `per_minute` times a minute; then 429.

    The counts belong to the running app (app.state), so two apps never share them.
    """

    async def dependency(request: Request, user: User = Depends(require_user)) -> User:
        state = request.app.state
        windows = getattr(state, "rate_limits", None)
        if windows is None:
            windows = state.rate_limits = {}
        window = windows.get(name) or windows.setdefault(name, SlidingWindow(per_minute))
        wait = window.take(user.id)
        if wait:
            seconds = max(1, math.ceil(wait))
            audit.record(
                "ratelimit.exceeded",
                result="denied",
                resource=("limit", name),
                metadata={"per_minute": per_minute, "path": request.url.path},
            )
            raise HTTPException(
                429,
                f"You have reached the limit of {per_minute} per minute for this action. "
                f"Please try again in {seconds} second{'s' if seconds != 1 else ''}.",
                headers={"Retry-After": str(seconds)},
            )
        return user

    dependency.__name__ = f"limit_{name}"
    return dependency
