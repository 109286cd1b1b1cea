"""The audit outbox: delivers the events of the database chain to the configured sinks.

The event table is the outbox. Each sink has a cursor (the last position it received); the
deliverer sends every later event, oldest first, in batches, and moves the cursor only after
the sink accepted the batch: delivery is at least once and in order. A sink that fails is
retried with exponential backoff (0.5 s doubling to 60 s) while actions go on and the backlog
grows; `microapp.audit.outbox.size`, `microapp.audit.delivery.lag` (seconds) and
`microapp.audit.delivery.failures` say so.

Sinks:
- `JsonlFileSink` (laptops; MICROAPP_AUDIT_FILE): the chain as a JSONL file, one event per
  line, never a partial record. It knows its own position (the last line), so it receives each
  event exactly once even when several processes deliver, and a deleted file is written again
  from the first event. Being its own cursor, it costs no database write per delivery.
- `HttpSink` (MICROAPP_AUDIT_HTTP_URL): POST `{"events": [...]}`; any 2xx accepts the batch.
- `OtlpLogSink` (SIEM; MICROAPP_AUDIT_OTLP_ENDPOINT, or the OTLP endpoint of the telemetry
  settings when MICROAPP_AUDIT_OTLP is on): OTLP/HTTP JSON log records, the event's canonical
  JSON as the body and `event.id` / `audit.seq` attributes for de-duplication and ordering.

Network sinks are delivered from a background thread, woken after a commit that wrote events;
it waits LINGER seconds first, so the commits of that moment go in one round (one read of the
table) instead of one round each, which under load took a quarter of the process's time.
Several replicas coordinate through the cursor row: on PostgreSQL a replica delivers
to a sink only while it holds that row (`SELECT ... FOR UPDATE SKIP LOCKED`), so one replica
at a time sends, in order; on SQLite (one host) a process-wide lock and a compare-and-set of
the cursor do the same. The file sink is written at once after the commit, in the committing
thread, so a laptop's file is current when the page answers.

Every `checkpoint_interval` seconds the deliverer logs `audit.checkpoint` (event count and head
hash) and sets the `microapp.audit.chain.events` gauge: exported through telemetry, outside the
database, so that removing events from the end of the chain is detectable.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from guardrails.auditing import chain
from guardrails.auditing.canonical import canonical

log = structlog.get_logger("guardrails.auditing.outbox")
BATCH = 200
MAX_BACKOFF = 60.0
BUSY = -1  # _deliver_batch: another replica holds this sink's cursor and is delivering
ELSEWHERE_WAIT = 0.5  # seconds before looking again at a sink another replica delivers to
LINGER = 0.1  # seconds the deliverer waits after a wake-up, gathering the commits of the moment


class DeliveryError(RuntimeError):
    """A sink did not accept a batch (it is retried)."""


class Sink(Protocol):
    name: str
    local: bool  # written in the committing thread (a file), not by the background thread

    def deliver(self, events: Sequence[dict[str, Any]]) -> None: ...

    def position(self) -> int | None:
        """The last position the sink holds, if it can tell (else the cursor is used)."""
        ...


# ------------------------------------------------------------------------------ the file sink
class JsonlFileSink:
    """The chain as a JSONL file. Never leaves a partial record: a failed write is cut back at
    once, and a torn last line (a crash, a full disk) is cut off when the file is next opened,
    with a warning - the outbox then writes that event again."""

    local = True

    def __init__(self, path: Path, fsync: bool = True, name: str = "file"):
        self.path = Path(path)
        self.fsync = fsync
        self.name = name
        self.truncated = 0  # torn records cut off (reported in logs and `truncations`)

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        try:
            return os.open(self.path, flags, 0o640)
        except FileNotFoundError:  # the folder is made on the first event (or if removed)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, flags, 0o640)

    def _repair(self, fd: int) -> tuple[int, dict[str, Any] | None]:
        """Cut a torn tail; returns (size, last complete event or None)."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, None
        block = 4096
        while True:
            start = max(0, size - block)
            tail = os.pread(fd, size - start, start)
            cut = tail.rfind(b"\n")
            if tail.endswith(b"\n"):
                cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0 or start == 0:
                break
            block *= 4
        if not tail.endswith(b"\n"):
            keep = start + tail.rfind(b"\n") + 1
            os.ftruncate(fd, keep)
            self.truncated += 1
            log.warning(
                "audit file: cut off a partial last record (a crash or a full disk); "
                "the outbox writes that event again",
                path=str(self.path),
                bytes=size - keep,
            )
            return self._repair(fd) if keep else (0, None)
        line = tail[cut + 1 :]
        return size, json.loads(line)

    def position(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise DeliveryError(f"cannot open {self.path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _size, last = self._repair(fd)
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"cannot read {self.path}: {exc}") from exc
        finally:
            os.close(fd)
        if last is None:
            return 0
        if "seq" not in last:
            return 0  # a file from before the chain moved into the database: set aside first
        return int(last["seq"])

    def _retire_legacy(self) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = self.path.with_name(f"{self.path.name}.before-database-{stamp}")
        os.replace(self.path, kept)
        log.warning(
            "audit file: the log written before the audit chain moved into the database is "
            "kept as it was (`python -m guardrails audit verify --file` still checks it); "
            "the file now holds the database's chain",
            kept=str(kept),
        )

    def deliver(self, events: Sequence[dict[str, Any]], *, follows: bool = False) -> None:
        """Append the events the file does not hold yet. `follows`: they must continue the
        file's last event (events straight from a commit, not read from the table)."""
        try:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close(), after the fsync
                size, last = self._repair(fd)
                if last is not None and "seq" not in last:
                    self._retire_legacy()
                    os.close(fd)
                    fd = self._open()
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    size, last = 0, None
                held = int(last["seq"]) if last else 0
                todo = [e for e in events if e["seq"] > held]
                if not todo:
                    return
                if (held or follows) and todo[0]["seq"] != held + 1:
                    raise DeliveryError(
                        f"{self.path} ends at event {held}, the next one to write is "
                        f"{todo[0]['seq']}"
                    )
                data = memoryview("".join(canonical(e) + "\n" for e in todo).encode("utf-8"))
                try:
                    while data:
                        data = data[os.write(fd, data) :]
                    if self.fsync:
                        os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # never leave a partial record behind
                    raise
            finally:
                os.close(fd)
        except (OSError, ValueError, KeyError) as exc:
            raise DeliveryError(f"cannot append to audit file {self.path}: {exc}") from exc


# ------------------------------------------------------------------------------ network sinks
class HttpSink:
    """POST each batch as JSON `{"events": [...]}` to an endpoint; 2xx accepts it."""

    local = False

    def __init__(self, url: str, name: str = "http", timeout: float = 5.0):
        self.url, self.name, self.timeout = url, name, timeout
        self._client: httpx.Client | None = None  # kept: one connection (and TLS handshake)

    def position(self) -> int | None:
        return None

    def deliver(self, events: Sequence[dict[str, Any]]) -> None:
        self._post({"events": list(events)})

    def _post(self, payload: dict[str, Any]) -> None:
        """POST `payload` on the sink's kept connection; DeliveryError unless 2xx. A failed
        connection is dropped, so the next attempt starts a new one."""
        client = self._client
        if client is None:
            client = self._client = httpx.Client(timeout=self.timeout)
        try:
            answer = client.post(self.url, json=payload)
        except httpx.HTTPError as exc:
            self._client = None
            client.close()
            raise DeliveryError(f"{self.url}: {exc}") from exc
        if not answer.is_success:
            raise DeliveryError(f"{self.url} answered {answer.status_code}")


class OtlpLogSink(HttpSink):
    """OTLP/HTTP (JSON encoding) log records to a collector's /v1/logs."""

    def __init__(self, endpoint: str, resource: dict[str, str], timeout: float = 5.0):
        url = endpoint if endpoint.endswith("/v1/logs") else endpoint.rstrip("/") + "/v1/logs"
        super().__init__(url, name="otlp", timeout=timeout)
        self.resource = [{"key": k, "value": {"stringValue": v}} for k, v in resource.items()]

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        when = dt.datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        nanos = int(when.replace(tzinfo=dt.UTC).timestamp() * 1000) * 1_000_000
        attributes = {
            "event.id": event["event_id"],
            "audit.seq": event["seq"],
            "audit.action": event["action"],
            "audit.result": event["result"],
            "audit.hash": event["hash"],
        }
        return {
            "timeUnixNano": str(nanos),
            "severityNumber": 9,
            "severityText": "INFO",
            "body": {"stringValue": canonical(event)},
            "attributes": [
                {
                    "key": k,
                    "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v},
                }
                for k, v in attributes.items()
            ],
        }

    def deliver(self, events: Sequence[dict[str, Any]]) -> None:
        payload = {
            "resourceLogs": [
                {
                    "resource": {"attributes": self.resource},
                    "scopeLogs": [
                        {
                            "scope": {"name": "guardrails.audit"},
                            "logRecords": [self._record(e) for e in events],
                        }
                    ],
                }
            ]
        }
        self._post(payload)


# ------------------------------------------------------------------------------ the deliverer
class _SinkState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures = 0
        self.not_before = 0.0
        self.backlog = 0
        self.lag = 0.0
        self.last_error: str | None = None


class Outbox:
    """Delivers the chain to `sinks`; see the module's docstring."""

    def __init__(
        self,
        app_id: str,
        sessions: sessionmaker[Session],
        sinks: Sequence[Sink],
        *,
        on_failure: Callable[[str], None] | None = None,
        checkpoint: Callable[[int, str], None] | None = None,
        checkpoint_interval: float = 60.0,
    ):
        self.app_id = app_id
        self.sessions = sessions
        self.sinks = list(sinks)
        self.state = {s.name: _SinkState() for s in self.sinks}
        self.on_failure = on_failure
        self.checkpoint = checkpoint
        self.checkpoint_interval = checkpoint_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_checkpoint = 0.0

    # --- one sink, one batch
    def _deliver_batch(self, sink: Sink) -> int:
        """Send the next batch to `sink`; returns how many events it took (0: caught up), or
        BUSY while another replica holds the sink's cursor (it delivers those events)."""
        state = self.state[sink.name]
        with state.lock, self.sessions() as session:
            held = sink.position()
            positioned = held is not None  # the sink is its own cursor: no row to move
            postgres = session.get_bind().dialect.name == "postgresql"
            if held is None:
                query = select(chain.SinkCursor.seq).where(chain.SinkCursor.sink == sink.name)
                if postgres:
                    query = query.with_for_update(skip_locked=True)
                held = session.execute(query).scalar()
                if held is None:  # another replica holds the cursor and delivers (or none yet)
                    session.rollback()
                    self.ensure_cursors(session)
                    return BUSY
            events = chain.events_after(session, held, BATCH)
            self._measure(session, sink.name, held, events)
            if events:
                sink.deliver(events)
            if events and not positioned:  # a read-only transaction for the file: no commit
                moved = session.execute(
                    update(chain.SinkCursor)
                    .where(chain.SinkCursor.sink == sink.name)
                    .values(seq=events[-1]["seq"])
                )
                if moved.rowcount == 0:
                    session.add(chain.SinkCursor(sink=sink.name, seq=events[-1]["seq"]))
            session.commit()
            if events:
                self._measure_after(sink.name, events)
            return len(events)

    def ensure_cursors(self, session: Session | None = None) -> None:
        """Make the cursor row of each sink that has none (at start; any replica may)."""
        with session or self.sessions() as db:
            for sink in self.sinks:
                if db.get(chain.SinkCursor, sink.name) is None:
                    db.add(chain.SinkCursor(sink=sink.name, seq=0))
                    try:
                        db.commit()
                    except IntegrityError:  # another replica made it a moment ago
                        db.rollback()

    def _measure(self, session: Session, name: str, held: int, events: list[dict]) -> None:
        state = self.state[name]
        count, _hash = chain.head(session, self.app_id)
        state.backlog = max(0, count - held)
        if events:
            oldest = dt.datetime.strptime(events[0]["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
            state.lag = max(0.0, time.time() - oldest.replace(tzinfo=dt.UTC).timestamp())
        else:
            state.lag = 0.0

    def _measure_backlog(self, name: str) -> None:
        """The backlog from the cursor, when a delivery failed before measuring it."""
        sink = next(s for s in self.sinks if s.name == name)
        try:
            position = sink.position()
        except DeliveryError:
            position = None
        try:
            with self.sessions() as session:
                if position is None:
                    cursor = session.get(chain.SinkCursor, name)
                    position = cursor.seq if cursor else 0
                count, _hash = chain.head(session, self.app_id)
        except SQLAlchemyError:
            return
        self.state[name].backlog = max(0, count - position)

    def _measure_after(self, name: str, events: list[dict]) -> None:
        state = self.state[name]
        state.backlog = max(0, state.backlog - len(events))
        if not state.backlog:
            state.lag = 0.0

    # --- every sink, with backoff
    def deliver(self, sinks: Sequence[Sink] | None = None, *, force: bool = False) -> bool:
        """Deliver what is due to `sinks` (default all); True when every one is caught up."""
        caught_up = True
        for sink in sinks or self.sinks:
            state = self.state[sink.name]
            if not force and time.monotonic() < state.not_before:
                caught_up = False
                continue
            try:
                while (done := self._deliver_batch(sink)) == BATCH:
                    pass
            except (DeliveryError, SQLAlchemyError, OSError) as exc:
                caught_up = False
                state.failures += 1
                self._measure_backlog(sink.name)
                delay = min(MAX_BACKOFF, 0.5 * 2 ** min(state.failures - 1, 10))
                state.not_before = time.monotonic() + delay * (0.8 + 0.4 * random.random())  # noqa: S311
                if state.last_error != str(exc) or state.failures in (1, 10, 100):
                    log.warning(
                        "audit delivery failed; retrying",
                        sink=sink.name,
                        error=str(exc),
                        failures=state.failures,
                        backlog=state.backlog,
                    )
                state.last_error = str(exc)
                if self.on_failure is not None:
                    self.on_failure(sink.name)
                continue
            if done == BUSY:  # not ours to deliver now: look again soon, without spinning, and
                caught_up = False  # without calling a still-failing sink "recovered"
                state.not_before = time.monotonic() + ELSEWHERE_WAIT
                continue
            if state.failures:
                log.info("audit delivery recovered", sink=sink.name, after=state.failures)
            state.failures, state.not_before, state.last_error = 0, 0.0, None
        return caught_up

    def committed(self, events: Sequence[dict[str, Any]] = ()) -> None:
        """Called after a commit that wrote `events`: the file now, network sinks soon. The
        file takes the committed events straight away when it ends just before them (the
        usual case: no read back from the database); otherwise it catches up from the table."""
        for sink in (s for s in self.sinks if s.local):
            try:
                if not (events and self._deliver_direct(sink, events)):
                    self.deliver([sink])
            except Exception as exc:  # noqa: BLE001 - never fail the committed action
                log.warning("audit file delivery deferred", error=str(exc))
        self._wake.set()

    def _deliver_direct(self, sink: Sink, events: Sequence[dict[str, Any]]) -> bool:
        state = self.state[sink.name]
        if state.failures or not isinstance(sink, JsonlFileSink):  # failing: with its backoff
            return False
        with state.lock:
            try:
                sink.deliver(events, follows=True)  # checked under the file's lock: no gap
            except DeliveryError:
                return False
        self._measure_after(sink.name, events)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Deliver until every sink is caught up or `timeout` passes (tests, shutdown)."""
        self.ensure_cursors()
        deadline = time.monotonic() + timeout
        while True:
            if self.deliver(force=True):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _checkpoint(self) -> None:
        now = time.monotonic()
        if self.checkpoint is None or now - self._last_checkpoint < self.checkpoint_interval:
            return
        self._last_checkpoint = now
        with self.sessions() as session:
            count, last = chain.head(session, self.app_id)
        self.checkpoint(count, last)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            if self._stop.wait(LINGER):  # the commits of the next moment: one round for all
                break
            self._wake.clear()
            try:
                self.deliver()
                self._checkpoint()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                log.warning("audit outbox round failed", error=str(exc))

    def start(self) -> None:
        if self._thread is None and self.sinks:
            self.ensure_cursors()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="audit-outbox", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the thread after one last bounded delivery attempt."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        self.flush(timeout=min(timeout, 1.0))
