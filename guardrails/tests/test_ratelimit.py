"""Per-user rate limits: the window moves, users do not share a budget, refusals are audited."""

import random
import threading
import time

import pytest
from fastapi import APIRouter, Depends
from limits.storage import MemoryStorage

from guardrails import create_app, current_user, limit_per_user, require_user
from guardrails.core.ratelimit import LocalWindows, RateLimiter
from guardrails.testing import login, serve
from guardrails.testing.vault import FakeClock


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
        assert "limit of 2 per minute for this action" in refused.text
        assert "try again in" in refused.text
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


def quota_app(runtime):
    app = create_app(runtime=runtime)
    router = APIRouter()

    @router.get("/me")
    def me(user=Depends(require_user)):
        return {"user": user.email}

    @router.get("/me-twice")
    def me_twice(user=Depends(require_user), again=Depends(current_user)):
        return {"user": user.email}  # two dependencies ask for the caller: counted once

    @router.get("/open")
    def open_page():
        return {"ok": True}

    app.include_router(router)
    return app


def quota_runtime(tmp_path, idp, manifest, per_minute):
    import dataclasses

    from guardrails.core.runtime import build_runtime
    from guardrails.testing import test_settings

    raw = {**manifest.raw, "quotas": {"requests_per_minute": per_minute}}
    return build_runtime(test_settings(tmp_path, idp), dataclasses.replace(manifest, raw=raw))


def test_every_signed_in_request_counts_once_against_the_manifest_quota(
    tmp_path, idp, manifest, demo
):
    import httpx

    from guardrails.testing import local_access_token

    runtime = quota_runtime(tmp_path, idp, manifest, 3)
    admin, other = demo["admin"], next(email for role, email in demo.items() if role != "admin")
    with serve(quota_app, runtime) as live, live.client() as a, live.client() as b:
        login(a, live, admin, next_path="/healthz")
        login(b, live, other, next_path="/healthz")
        codes = [a.get(f"{live.url}/me-twice").status_code for _ in range(3)]
        refused = [a.get(f"{live.url}/me") for _ in range(3)]
        assert codes == [200, 200, 200] and {r.status_code for r in refused} == {429}
        assert "limit of 3 per minute for requests" in refused[0].text
        assert 1 <= int(refused[0].headers["retry-after"]) <= 60
        assert b.get(f"{live.url}/me").status_code == 200  # another user has their own budget
        # an API caller's bearer token counts against the same person's budget
        token = local_access_token(runtime.sso_issuer, manifest.sso_client_id, admin)
        api = httpx.get(f"{live.url}/me", headers={"authorization": f"Bearer {token}"})
        assert api.status_code == 429
        # anonymous requests (here: a public route) are not the quota's to count
        assert {httpx.get(f"{live.url}/open").status_code for _ in range(5)} == {200}
    events = [e for e in live.audit_events() if e["action"] == "ratelimit.exceeded"]
    assert len(events) == 1  # four refusals in one spell: audited once, not flooded
    assert events[0]["actor"]["email"] == admin
    assert events[0]["metadata"]["per_minute"] == 3


def test_the_default_quota_is_the_documented_one(manifest):
    import dataclasses

    from guardrails.core.deployment import DEFAULT_QUOTAS

    raw = {key: value for key, value in manifest.raw.items() if key != "quotas"}
    assert dataclasses.replace(manifest, raw=raw).requests_per_minute == 120
    assert DEFAULT_QUOTAS["requests_per_minute"] == 120
    raw = {**raw, "quotas": {"requests_per_minute": 600}}
    assert dataclasses.replace(manifest, raw=raw).requests_per_minute == 600


def test_a_refusal_spell_is_reported_once_and_the_memory_is_bounded(monkeypatch):
    from guardrails.core import ratelimit

    monkeypatch.setattr(ratelimit, "REPORTED_KEYS", 3)
    window = RateLimiter(1)
    assert window.first_refusal("u", 0.2) and not window.first_refusal("u", 0.2)
    time.sleep(0.25)
    assert window.first_refusal("u", 0.2)  # a new spell
    for key in "vwxyz":
        assert window.first_refusal(key, 60)
    assert len(window._reported) == 3


def test_the_quota_name_is_reserved():
    with pytest.raises(ValueError, match="quota"):
        limit_per_user("requests", per_minute=5)


def test_the_local_windows_answer_as_the_limits_memory_storage_does(monkeypatch):
    """The same calls, played into both at the same (hand-moved) clock, on windows of one and
    two seconds: moves of a quarter second land exactly on the window's edges too. `limits`'
    timer threads are kept out: an entry exactly one window old is still in for its
    `acquire_entry` but already gone once a timer has pruned it, so with them its answers at
    an edge depend on the threads' timing."""
    clock = FakeClock()
    monkeypatch.setattr(time, "time", clock)  # limits' clock
    monkeypatch.setattr(MemoryStorage, "_MemoryStorage__schedule_expiry", lambda self: None)
    ours, theirs = LocalWindows(clock=clock), MemoryStorage()
    theirs.timer.cancel()  # the one its constructor started
    rng = random.Random(17)  # noqa: S311 - a repeatable sequence of calls, not a secret
    answers = edges = 0
    for _ in range(4000):
        clock.now += rng.choice([0, 0, 0.25, 0.5, 1, 1.75])
        key, limit, expiry = rng.choice([("a", 3, 1), ("b", 5, 2), ("c", 1, 1)])
        if rng.random() < 0.7:
            amount = rng.choice([1, 1, 1, 2, 6])
            got = ours.acquire_entry(key, limit, expiry, amount)
            assert got == theirs.acquire_entry(key, limit, expiry, amount), (key, clock.now)
            answers += got
        else:
            on_edge = list(ours._events.get(key, ())).count(clock.now - expiry)
            start, count = ours.get_moving_window(key, limit, expiry)
            their_start, their_count = theirs.get_moving_window(key, limit, expiry)
            # limits leaves out here what its acquire_entry counted: entries one window old
            assert count == their_count + on_edge, (key, clock.now)
            if their_count and not on_edge:  # with none, limits may name an expired entry
                assert start == their_start
            edges += bool(on_edge)
    assert answers > 500 and edges > 20  # calls let through and refused, edges met


def test_a_call_refused_at_the_window_edge_may_try_again_at_once():
    """Refused because of an entry exactly one window old: its wait ends now (Retry-After 1),
    not a whole window later."""
    clock = FakeClock()
    window = RateLimiter(3, window=60)
    window.storage.clock = clock
    for _ in range(3):
        assert window.take("u") == 0
    clock.now += 60
    assert window.take("u") == 0.001
    clock.now += 0.5
    assert window.take("u") == 0  # the three have left the window


def test_a_wall_clock_step_neither_locks_a_caller_out_nor_refills_the_budget(monkeypatch):
    real = time.time
    window = RateLimiter(2, window=60)
    assert window.take("u") == 0 and window.take("u") == 0
    (entries,) = window.storage._events.values()
    assert abs(entries[-1] - time.monotonic()) < 5  # kept on the monotonic clock
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # stepped back an hour
    assert 0 < window.take("u") <= 60
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # and forward an hour
    assert 0 < window.take("u") <= 60


def test_the_local_windows_start_no_thread_and_forget_idle_callers():
    clock = FakeClock()
    threads = threading.active_count()
    window = RateLimiter(2, window=60)
    assert isinstance(window.storage, LocalWindows)
    window.storage.clock = clock
    for n in range(200):
        window.take(f"user-{n}")
        clock.now += 0.01
    assert threading.active_count() == threads  # limits' memory storage starts a timer here
    assert len(window.storage._events) == 200
    clock.now += 61
    assert window.take("user-0") == 0  # a new window: the idle callers are forgotten
    (kept,) = window.storage._events
    assert "user-0" in kept
