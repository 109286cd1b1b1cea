"""Per-user rate limits for routes: `Depends(limit_per_user("export", per_minute=5))`.

A moving one-minute window per (limit name, user), kept per app (guardrails.core.ratelimit).
A refused request gets a 429 page saying when to try again and is audited
(`ratelimit.exceeded`, result `denied`). The counts live in this process unless
RATELIMIT_STORAGE_URL names a shared storage (e.g. Redis), which several workers then share.
While that storage is down, the limit fails open or closed (503) as the manifest says
(guardrails.core.ratelimit).
"""

from __future__ import annotations

import math

from fastapi import HTTPException, Request

from guardrails.auditing.log import audit
from guardrails.core.ratelimit import RateLimiter, RateLimitUnavailable
from guardrails.web.sso import User, require_user


def limit_per_user(name: str, per_minute: int):
    """Dependency: the signed-in user may pass `per_minute` times a minute; then 429.

    The counts belong to the running app (app.state), so two apps never share them.
    """

    async def dependency(request: Request) -> User:
        user = await require_user(request)  # a plain call: one dependency for FastAPI to solve
        state = request.app.state
        windows = getattr(state, "rate_limits", None)
        if windows is None:
            windows = state.rate_limits = {}
        window = windows.get(name)
        if window is None:
            gr = state.guardrails
            window = windows.setdefault(
                name,
                RateLimiter(
                    per_minute,
                    storage_url=gr.settings.ratelimit_storage_url,
                    namespace=f"{gr.manifest.app_id}:user-limit:{name}",
                    fail_open=gr.manifest.limits_fail_open,
                ),
            )
        try:
            wait = window.take(user.id)
        except RateLimitUnavailable:
            raise HTTPException(
                503,
                "This action is limited per user, and the limits cannot be checked right now, "
                "so it is refused. Nothing was changed. Please try again in a minute.",
                headers={"Retry-After": "30"},
            ) from None
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
