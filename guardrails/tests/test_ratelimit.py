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


def _take_in_another_process(url, answer):
    answer.put([RateLimiter(3, storage_url=url, namespace="shared").take("u") for _ in range(2)])


def test_processes_share_one_budget_through_redis(redis_url):
    import multiprocessing

    here = RateLimiter(3, storage_url=redis_url, namespace="shared")
    assert here.take("u") == 0 and here.take("u") == 0
    ctx = multiprocessing.get_context("spawn")  # a separate process, as a second replica
    answer = ctx.Queue()
    other = ctx.Process(target=_take_in_another_process, args=(redis_url, answer))
    other.start()
    waits = answer.get(timeout=60)
    other.join(30)
    assert waits[0] == 0 and waits[1] > 0  # the third call is allowed, the fourth is not
    assert here.take("u") > 0


def test_an_unreachable_storage_fails_open_or_closed_as_configured():
    from guardrails.core.ratelimit import RateLimitUnavailable
    from guardrails.testing import free_port

    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    assert RateLimiter(1, storage_url=down, fail_open=True).take("u") == 0
    started = time.monotonic()
    with pytest.raises(RateLimitUnavailable):
        RateLimiter(1, storage_url=down, fail_open=False).take("u")
    assert time.monotonic() - started < 5  # refused quickly, never hung


def test_the_default_is_closed_for_tier_3_only(manifest):
    import dataclasses

    for tier, chosen, fails_open in [(1, None, True), (3, None, False), (3, "open", True)]:
        quotas = {"when_limits_unavailable": chosen} if chosen else {}
        raw = {**manifest.raw, "risk_tier": tier, "quotas": quotas}
        assert dataclasses.replace(manifest, raw=raw).limits_fail_open is fails_open


def test_a_route_answers_503_when_its_limit_fails_closed(tmp_path, idp, manifest, demo):
    import dataclasses

    from guardrails.core.runtime import build_runtime
    from guardrails.testing import free_port, test_settings

    raw = {**manifest.raw, "quotas": {"when_limits_unavailable": "closed"}}
    settings = test_settings(
        tmp_path, idp, ratelimit_storage_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    runtime = build_runtime(settings, dataclasses.replace(manifest, raw=raw))
    with serve(limited_app, runtime) as live, live.client() as client:
        login(client, live, demo["admin"], next_path="/healthz")
        answer = client.get(f"{live.url}/ping")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
