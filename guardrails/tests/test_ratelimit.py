"""Per-user rate limits: the window moves, users do not share a budget, refusals are audited."""

import time

import pytest
from fastapi import APIRouter, Depends

from guardrails import create_app, limit_per_user
from guardrails.core.ratelimit import RateLimiter
from guardrails.testing import login, serve


def test_moving_window_counts_per_key_and_forgets_old_events():
    window = RateLimiter(2, window=1)
    assert window.take("a") == 0 and window.take("a") == 0
    wait = window.take("a")
    assert 0 < wait <= 1
    assert window.take("b") == 0  # another user has their own budget
    time.sleep(wait + 0.05)
    assert window.take("a") == 0


def test_limiters_do_not_share_counts_across_namespaces():
    one, two = RateLimiter(1, namespace="app-1:x"), RateLimiter(1, namespace="app-2:x")
    assert one.take("u") == 0 and two.take("u") == 0
    assert one.take("u") > 0


def test_a_limit_needs_a_positive_budget():
    with pytest.raises(ValueError):
        RateLimiter(0)


def limited_app(runtime):
    app = create_app(runtime=runtime)
    router = APIRouter()

    @router.get("/ping")
    def ping(user=Depends(limit_per_user("ping", per_minute=2))):
        return {"ok": True}

    app.include_router(router)
    return app


def test_third_call_in_a_minute_gets_a_429_page_and_is_audited(runtime, demo):
    with serve(limited_app, runtime) as live, live.client() as client:
        login(client, live, demo["admin"], next_path="/healthz")
        assert client.get(f"{live.url}/ping").status_code == 200
        assert client.get(f"{live.url}/ping").status_code == 200
        refused = client.get(f"{live.url}/ping")
        assert refused.status_code == 429
        assert "limit of 2 per minute" in refused.text and "try again in" in refused.text
        assert int(refused.headers["retry-after"]) >= 1
    event = live.audit_events()[-1]
    assert event["action"] == "ratelimit.exceeded" and event["result"] == "denied"
    assert event["actor"]["email"] == demo["admin"]
