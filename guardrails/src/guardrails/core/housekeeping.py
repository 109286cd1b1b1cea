"""Background housekeeping: periodic jobs that keep the database from growing without end.

A job is a function `step(db, batch, manifest) -> int` that does at most `batch` rows of work in the
transaction it is given (delete expired sessions, purge records past retention, trim the audit
outbox) and returns how many rows it did. The scheduler calls it again at once while it keeps
returning a full batch (with a short pause between batches so requests are not starved), then
waits `every` seconds (with jitter) before the next run.

    from guardrails import schedule

    @schedule("retention-purge", every=3600, batch=500)
    def purge_step(db, batch, manifest):
        ...                      # delete at most `batch` rows; audit them; return how many

Guardrails registers its own jobs here: `sessions-purge` (expired sign-in sessions) and
`audit-chain` (PostgreSQL: audit events committed but left unchained by a stopped process).
Other parts of the SDK plug in the same way. The web app (`create_app`) runs every registered job
in a background thread of each process; `run_jobs_once()` runs them once (commands, tests, cron).

Several replicas: every replica runs the scheduler. Jobs must be idempotent and batched:
select a batch, `DELETE ... WHERE id IN (...) RETURNING id`, and act (audit) only on the rows
this replica actually deleted; two replicas racing for the same batch then do the work once.
The first run waits a random fraction of `every`, and each interval has +-10 % jitter, so the
replicas spread out instead of running in lock-step.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.orm import Session

from guardrails.core import context

if TYPE_CHECKING:
    from guardrails.core.manifest import Manifest
    from guardrails.core.runtime import Runtime

log = structlog.get_logger("guardrails.housekeeping")
Step = Callable[[Session, int, "Manifest"], int]
PAUSE_BETWEEN_BATCHES = 0.05  # seconds; lets request threads in between two batches
MAX_BATCHES_PER_RUN = 1000  # a run stops there (the next run carries on)
_rng = random.Random()  # noqa: S311 (jitter, not security)


@dataclass
class Job:
    name: str
    step: Step
    every: float  # seconds between runs
    batch: int = 500
    runs: int = 0
    rows: int = 0
    last_error: str | None = None
    next_due: float = 0.0

    def run(self, rt: Runtime) -> int:
        """Batches until one is not full (or MAX_BATCHES_PER_RUN); returns the rows done."""
        done = 0
        for _ in range(MAX_BATCHES_PER_RUN):
            with rt.sessionmaker() as db, db.begin():
                n = self.step(db, self.batch, rt.manifest)
            done += n
            if n < self.batch:
                break
            time.sleep(PAUSE_BETWEEN_BATCHES)
        self.runs += 1
        self.rows += done
        return done


@dataclass
class Registry:
    jobs: dict[str, Job] = field(default_factory=dict)

    def add(self, name: str, step: Step, every: float, batch: int = 500) -> Job:
        if every <= 0 or batch <= 0:
            raise ValueError(f"housekeeping job {name!r}: every and batch must be positive")
        job = Job(name=name, step=step, every=float(every), batch=int(batch))
        self.jobs[name] = job  # registering a name again replaces the job (module reloads)
        return job


REGISTRY = Registry()


def schedule(name: str, *, every: float, batch: int = 500) -> Callable[[Step], Step]:
    """Register `step(db, batch, manifest) -> rows done` as the housekeeping job `name`, run every
    `every` seconds (with jitter) in batches of at most `batch` rows, by the web app's
    background scheduler in each process. Jobs must be idempotent (see the module docstring)."""

    def register(step: Step) -> Step:
        REGISTRY.add(name, step, every, batch)
        return step

    return register


def jittered(every: float) -> float:
    return every * _rng.uniform(0.9, 1.1)


def run_jobs_once(rt: Runtime, registry: Registry = REGISTRY) -> dict[str, int]:
    """Run every registered job now (all its batches); returns rows done per job."""
    token = context.bind(rt)
    try:
        return {name: job.run(rt) for name, job in list(registry.jobs.items())}
    finally:
        context.unbind(token)


class Scheduler:
    """A daemon thread running the registry's jobs when due, until `stop()`."""

    def __init__(self, rt: Runtime, registry: Registry = REGISTRY, tick: float = 1.0):
        self.rt = rt
        self.registry = registry
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        now = time.monotonic()
        for job in self.registry.jobs.values():  # first run: a random point of the interval
            job.next_due = now + _rng.uniform(0.05, 1.0) * job.every
        self._thread = threading.Thread(target=self._loop, name="guardrails-housekeeping")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        token = context.bind(self.rt)
        try:
            while not self._stop.wait(self.tick):
                self.run_due(time.monotonic())
        finally:
            context.unbind(token)

    def run_due(self, now: float) -> None:
        for job in list(self.registry.jobs.values()):
            if self._stop.is_set() or job.next_due > now or self.rt.engine is None:
                continue
            try:
                done = job.run(self.rt)
                job.last_error = None
                if done:
                    log.info("housekeeping", job=job.name, rows=done)
            except Exception as exc:  # a failed run is retried at the next interval
                job.last_error = str(exc)
                log.warning("housekeeping job failed", job=job.name, error=str(exc))
            job.next_due = time.monotonic() + jittered(job.every)
