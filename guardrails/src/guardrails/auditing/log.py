"""Audit trail: one structured, hash-chained event per sensitive action.

`audit.record("approval.approve", resource=("request", 42))` writes an event (schema in
docs/reference/audit-event.md) with the actor, request id, trace id and source address taken
from the current request. Each JSONL line carries the hash of the previous one, so
`python -m guardrails audit verify` detects an edited, inserted or removed line.

Fail closed: when the event cannot be written, `record` raises AuditError, the caller's
database transaction rolls back and the user gets a 503 - the action is never done silently.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from opentelemetry import trace

from guardrails.core.context import Actor, RequestInfo, current_request, current_runtime

GENESIS = "0" * 64
RESULTS = ("success", "denied", "failure")
log = structlog.get_logger("guardrails.auditing")


class AuditError(RuntimeError):
    """An audit event could not be written; the action it describes must not happen."""


def canonical(event: dict[str, Any]) -> str:
    """The exact text that is hashed and written: sorted keys, no spaces, UTF-8."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event: dict[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


class Sink(Protocol):
    def append(self, event: dict[str, Any]) -> dict[str, Any]: ...


class JsonlChainSink:
    """Append-only JSONL file; each line's prev_hash is the previous line's hash.

    An exclusive lock spans reading the last hash and appending, so several worker processes
    can share one file without breaking the chain.
    """

    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync

    def _last_hash(self, fd: int, size: int) -> str:
        if size == 0:
            return GENESIS
        block = 4096
        while True:
            start = max(0, size - block)
            tail = os.pread(fd, size - start, start)
            lines = tail.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                return json.loads(lines[-1])["hash"]
            block *= 4

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        try:
            return os.open(self.path, flags, 0o640)
        except FileNotFoundError:  # the folder is made on the first event (or if removed)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, flags, 0o640)

    def _append_locked(self, link: Callable[[str], tuple[bytes, Any]]) -> Any:
        """Under an exclusive lock: read the last hash, append `link(last hash)`'s bytes,
        fsync; returns link's second value. Any failure is an AuditError."""
        # Plain descriptor calls, no buffered file object: 7 system calls per event instead of
        # 19, and each one is a point where a busy web app's thread may wait for the GIL.
        try:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close(), after the fsync
                data, result = link(self._last_hash(fd, os.fstat(fd).st_size))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except (OSError, ValueError, KeyError) as exc:
            raise AuditError(f"cannot append to audit log {self.path}: {exc}") from exc
        return result

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        def link(prev: str) -> tuple[bytes, dict[str, Any]]:
            chained = {**event, "prev_hash": prev}
            chained["hash"] = event_hash(chained)
            return canonical(chained).encode("utf-8") + b"\n", chained

        return self._append_locked(link)

    def extend(self, events: list[dict[str, Any]]) -> None:
        """Append many events as one stretch of the chain, under one lock and one fsync (bulk
        loads such as the test kit's seeding; the web app appends one event at a time)."""

        def link(prev: str) -> tuple[bytes, None]:
            lines = []
            for event in events:
                chained = {**event, "prev_hash": prev}
                chained["hash"] = prev = event_hash(chained)
                lines.append(canonical(chained).encode("utf-8") + b"\n")
            return b"".join(lines), None

        self._append_locked(link)


@dataclass
class AuditLog:
    app_id: str
    sinks: list[Sink] = field(default_factory=list)
    observers: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def record(
        self,
        action: str,
        *,
        resource: tuple[str, Any] | None = None,
        result: str = "success",
        actor: Actor | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write one event to every sink; raise AuditError if any sink fails."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, not {result!r}")
        info = current_request() or RequestInfo()
        who = actor or info.actor or Actor(id="anonymous")
        span = trace.get_current_span().get_span_context()
        now = dt.datetime.now(dt.UTC)
        event: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "app_id": self.app_id,
            "actor": {
                "id": who.id,
                "roles": sorted(who.roles),
                **({"email": who.email} if who.email else {}),
            },
            "action": action,
            "resource": {"type": resource[0], "id": str(resource[1])} if resource else None,
            "result": result,
            "request_id": info.request_id,
            "trace_id": format(span.trace_id, "032x") if span.is_valid else None,
            "source_ip": info.source_ip,
            "metadata": metadata or {},
        }
        written = event
        for sink in self.sinks:
            written = sink.append(event)
        for observe in self.observers:
            observe(written)
        log.info("audit", action=action, result=result, actor=who.id, event_id=event["event_id"])
        return written


class _AuditFacade:
    """`guardrails.audit`: records through the audit log of the app running here (the Runtime
    bound in guardrails.core.context by the web app, `runtime()` or `bound()`)."""

    def record(self, action: str, **kwargs: Any) -> dict[str, Any]:
        rt = current_runtime()
        if rt is None:
            raise AuditError("no audit log is bound: call guardrails.create_app() or runtime()")
        return rt.audit_log.record(action, **kwargs)


audit = _AuditFacade()


# ------------------------------------------------------------------------------ verification
@dataclass
class VerifyResult:
    events: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def verify_lines(lines: Iterable[tuple[int, bytes]]) -> VerifyResult:
    """Check every line's hash and its link to the line before."""
    prev, count, problems = GENESIS, 0, []
    for number, raw in lines:
        count += 1
        try:
            event = json.loads(raw)
        except ValueError:
            problems.append(f"line {number}: not valid JSON")
            break
        if event.get("prev_hash") != prev:
            problems.append(
                f"line {number}: prev_hash does not match line {number - 1} "
                "(a line was removed, inserted or reordered)"
            )
        if event_hash(event) != event.get("hash"):
            problems.append(f"line {number}: content does not match its hash (line was edited)")
        if problems:
            break
        prev = event["hash"]
    return VerifyResult(events=count, problems=problems)


def verify_file(path: Path | str) -> VerifyResult:
    path = Path(path)
    if not path.exists():
        return VerifyResult(events=0, problems=[])
    return verify_lines(_lines(path))
