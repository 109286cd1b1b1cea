"""The background housekeeping scheduler (guardrails.schedule): jobs run periodically, in
batches, on the app's real database; the built-in expired-session purge is one of them."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from guardrails import schedule
from guardrails.core.db import Model
from guardrails.core.housekeeping import REGISTRY, Registry, Scheduler, run_jobs_once
from guardrails.web.sessions import SessionRow, purge_expired_step


def add_sessions(rt, expired: int, live: int) -> None:
    now = time.time()
    with rt.sessionmaker.begin() as db:
        db.execute(
            SessionRow.__table__.insert(),
            [
                {
                    "id": f"s{now}-{i}",
                    "data": "{}",
                    "expires_at": now - 10 if i < expired else now + 999,
                }
                for i in range(expired + live)
            ],
        )


def sessions(rt) -> int:
    with rt.sessionmaker() as db:
        return db.scalar(select(func.count()).select_from(SessionRow))


def test_the_session_purge_is_registered_and_the_public_decorator_registers_jobs():
    assert REGISTRY.jobs["sessions-purge"].step is purge_expired_step

    @schedule("test-noop", every=60, batch=10)
    def noop(db, batch, manifest):
        return 0

    try:
        assert REGISTRY.jobs["test-noop"].every == 60 and REGISTRY.jobs["test-noop"].batch == 10
    finally:
        del REGISTRY.jobs["test-noop"]
    with pytest.raises(ValueError, match="positive"):
        schedule("bad", every=0)(noop)


def test_jobs_run_periodically_and_in_batches(runtime):
    Model.metadata.create_all(runtime.engine)
    batches: list[int] = []

    def counted_purge(db, batch, manifest):  # the real step, with its batch sizes noted
        done = purge_expired_step(db, batch, manifest)
        batches.append(done)
        return done

    registry = Registry()
    registry.add("sessions-purge", counted_purge, every=0.3, batch=100)
    add_sessions(runtime, expired=250, live=7)
    scheduler = Scheduler(runtime, registry, tick=0.05)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while sessions(runtime) > 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sessions(runtime) == 7  # the live ones stay
        assert batches[:3] == [100, 100, 50]  # one run: full batches until a short one
        add_sessions(runtime, expired=30, live=0)  # the next run, a period later
        while sessions(runtime) > 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sessions(runtime) == 7
        assert registry.jobs["sessions-purge"].runs >= 2
        assert 30 in batches[3:]
    finally:
        scheduler.stop()
    assert not scheduler._thread.is_alive()


def test_a_failing_job_is_logged_and_retried_and_run_once_runs_all(runtime):
    Model.metadata.create_all(runtime.engine)
    calls = []

    def broken(db, batch, manifest):
        calls.append(manifest.app_id)
        raise RuntimeError("database away")

    registry = Registry()
    registry.add("broken", broken, every=0.1)
    registry.add("sessions-purge", purge_expired_step, every=3600, batch=2)
    scheduler = Scheduler(runtime, registry)
    scheduler.run_due(time.monotonic() + 10_000)
    assert registry.jobs["broken"].last_error == "database away"
    scheduler.run_due(time.monotonic() + 10_000)  # still scheduled after failing
    assert calls == [runtime.manifest.app_id] * 2
    add_sessions(runtime, expired=5, live=1)
    del registry.jobs["broken"]
    assert run_jobs_once(runtime, registry) == {"sessions-purge": 5}  # three batches of 2
    assert sessions(runtime) == 1
