# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""Per-user rate limits: the window slides, users do not share a budget, refusals are audited."""

import pytest
from fastapi import APIRouter, Depends

from guardrails import create_app
from guardrails.ratelimit import SlidingWindow, limit_per_user
from guardrails.testing import login, serve


def test_sliding_window_counts_per_key_and_forgets_old_events():
    now = [0.0]
    window = SlidingWindow(2, window=60, clock=lambda: now[0])
    assert window.take("a") == 0 and window.take("a") == 0
    assert window.take("a") == pytest.approx(60)
    assert window.take("b") == 0  # another user has their own budget
    now[0] = 30.0
    assert window.take("a") == pytest.approx(30)
    now[0] = 60.0
    assert window.take("a") == 0


def test_a_limit_needs_a_positive_budget():
    with pytest.raises(ValueError):
        SlidingWindow(0)


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
    assert event["actor"]["id"] == demo["admin"]
