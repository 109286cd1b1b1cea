"""Per-user rate limits for routes: `Depends(limit_per_user("export", per_minute=5))`.

A moving one-minute window per (limit name, user), checked like the app's request quota
(guardrails.web.quota: 429 with `Retry-After`, the first refusal of a spell audited, shared
through RATELIMIT_STORAGE_URL, open or closed while that storage is down).
"""

from __future__ import annotations

from fastapi import Request

from guardrails.web.quota import QUOTA, check
from guardrails.web.sso import User, require_user


def limit_per_user(name: str, per_minute: int):
    """Dependency: the signed-in user may pass `per_minute` times a minute; then 429.

    The counts belong to the running app (app.state), so two apps never share them.
    """
    if name == QUOTA:
        raise ValueError(f"{QUOTA!r} is the app-wide quota's name: choose another")

    async def dependency(request: Request) -> User:
        user = await require_user(request)  # a plain call: one dependency for FastAPI
        await check(request, user.id, name, per_minute, "this action")
        return user

    dependency.__name__ = f"limit_{name}"
    return dependency
