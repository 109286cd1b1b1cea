"""Rate limits on callers: the app-wide request quota, and the checks behind per-action limits.

- **The quota** (`quotas.requests_per_minute` in microapp.yaml, default 120): every request by a
  signed-in caller, by browser session or bearer token, counts once against that caller's budget
  (guardrails.web.sso authenticates the caller, then calls `enforce_quota`). Anonymous requests
  only reach the sign-in redirect, the probes, public routes and static files, and are not
  counted.
- **Per action**: `Depends(limit_per_user("export", per_minute=5))` on a route
  (guardrails.web.ratelimit).

Each is a moving one-minute window per (limit, caller), kept per app (guardrails.core.ratelimit).
A refused request gets a 429 page saying when to try again (`Retry-After`); the first refusal of
a spell is audited (`ratelimit.exceeded`, result `denied`), the rest of it only counted, so a
caller hammering a limit cannot flood the audit trail. The counts live in this process unless
RATELIMIT_STORAGE_URL names a shared storage (e.g. Redis), which every worker and replica then
shares; that storage is asked from a worker thread, never on the event loop. While it is down,
the limit fails open or closed (503) as the manifest says (guardrails.core.ratelimit).
"""

from __future__ import annotations

import math

import anyio.to_thread
from fastapi import HTTPException, Request

from guardrails.auditing.log import audit
from guardrails.core.ratelimit import RateLimiter, RateLimitUnavailable

QUOTA = "requests"  # the quota's name among the app's limits


def _window(request: Request, name: str, per_minute: int) -> RateLimiter:
    """The app's limiter `name` (app.state: two apps never share counts)."""
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
    return window


async def check(request: Request, caller: str, name: str, per_minute: int, what: str) -> None:
    """Count one event of `caller` (a user id) against limit `name`; 429 (or 503) when refused."""
    window = _window(request, name, per_minute)
    try:
        if window.local:
            wait = window.take(caller)
        else:
            wait = await anyio.to_thread.run_sync(window.take, caller)
    except RateLimitUnavailable:
        raise HTTPException(
            503,
            f"This app limits {what} per user, and the limits cannot be checked right now, so "
            "this request is refused. Nothing was changed. Please try again in a minute.",
            headers={"Retry-After": "30"},
        ) from None
    if not wait:
        return
    seconds = max(1, math.ceil(wait))
    if window.first_refusal(caller, wait):
        audit.record(
            "ratelimit.exceeded",
            result="denied",
            resource=("limit", name),
            metadata={"per_minute": per_minute, "path": request.url.path},
        )
    raise HTTPException(
        429,
        f"You have reached the limit of {per_minute} per minute for {what}. Nothing was "
        f"changed. Please try again in {seconds} second{'s' if seconds != 1 else ''}.",
        headers={"Retry-After": str(seconds)},
    )


async def enforce_quota(request: Request, caller: str) -> None:
    """The manifest's `quotas.requests_per_minute` for `caller` (a user id): 429 beyond it."""
    per_minute = request.app.state.guardrails.manifest.requests_per_minute
    await check(request, caller, QUOTA, per_minute, "requests")
