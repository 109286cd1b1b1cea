"""Audit trail: one structured, hash-chained event per sensitive action.

`audit.record("approval.approve", resource=("request", 42))` writes an event (schema in
docs/reference/audit-event.md) with the actor, request id, trace id and source address taken
from the current request. Events are rows of the app's database, chained by hash
(guardrails.auditing.chain); the outbox (guardrails.auditing.outbox) delivers them to the
JSONL file, an HTTP endpoint or a SIEM. `python -m guardrails audit verify` checks the chain
in the database or in an exported file.

Where an event is written:
- a success event recorded inside an explicit transaction of the app's database
  (`with db.begin(): ...`, or `session=`) is written in that transaction: the change and its
  event commit together or not at all;
- a refusal or failure recorded inside one is written on its own right after that transaction
  ends (it says what was refused, whatever happens to the transaction);
- anywhere else, the event is committed on its own at once. Such standalone events that arrive
  together (from several threads) share one transaction: group commit. The first caller
  writes every event waiting at that moment in one transaction (one chain lock, one INSERT,
  one commit, so one fsync); the callers that arrive meanwhile wait and are written together by
  the next one. Each `record` returns only after the commit that holds its event, or raises
  AuditError; if a shared commit fails, each of its events is tried once more on its own, so
  one caller's problem never costs the others their event.

Fail closed: when the event cannot be written, `record` raises AuditError, the caller's
transaction rolls back and the user gets a 503 - the action is never done silently.
`audit.external(...)` wraps a call to another system: the intent is committed before the call,
the outcome (success or failure) after it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from opentelemetry import trace
from sqlalchemy import event as sa_event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransactionOrigin, sessionmaker

from guardrails.auditing import chain
from guardrails.auditing.canonical import GENESIS, canonical, event_hash
from guardrails.auditing.outbox import JsonlFileSink, Outbox
from guardrails.core import context
from guardrails.core.context import Actor, RequestInfo, current_request, current_runtime
from guardrails.core.housekeeping import schedule

__all__ = [
    "GENESIS",
    "RESULTS",
    "Actor",
    "AuditError",
    "AuditLog",
    "JsonlFileSink",
    "audit",
    "canonical",
    "event_hash",
    "verify_file",
]
RESULTS = ("success", "denied", "failure", "intent")
log = structlog.get_logger("guardrails.auditing")
_WROTE = "guardrails.audit.wrote"  # session.info: events appended in the open transaction
_LATER = "guardrails.audit.later"  # session.info: refusals to write once it ends
_QUEUED = "guardrails.audit.queued"  # session.info: events queued in it, to chain after commit
_TO_CHAIN = "guardrails.audit.to-chain"  # session.info: it committed queued events
_HOOKED = "guardrails.audit.log"  # session.info: the AuditLog whose hooks follow this session
_SAVEPOINTS = "guardrails.audit.savepoints"  # session.info: open savepoints' marks
CHAIN_BATCH = 1000  # events chained per transaction of a round
CHAIN_EVERY = 10.0  # seconds: housekeeping chains what a killed process left queued


def _said(event: dict[str, Any]) -> None:
    """The log line of an event, once its commit made it durable (never for an event whose
    transaction rolled back; and outside the append, which holds the chain's lock)."""
    log.info("audit", action=event["action"], result=event["result"], event_id=event["event_id"])


def _after_commit(call: Callable[..., Any], *args: Any) -> None:
    """Run `call` for an event whose commit is done: it must not fail the committed action (an
    exception there would reach the route, or the group commit's callers, as if the event had
    not been written). A log stream that is closed or broken is the usual cause."""
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001 - the event is durable: nothing is undone
        with contextlib.suppress(Exception):
            log.error(
                "after an audit event's commit", step=getattr(call, "__name__", ""), error=str(exc)
            )


class AuditError(RuntimeError):
    """An audit event could not be written; the action it describes must not happen."""


def _unwritten(exc: Exception) -> AuditError:
    """The database's reason and the failed statement, never the event's values: the lines
    after the reason may quote them (PostgreSQL's DETAIL gives the refused row), and the
    parameters are the event itself (the app's engine hides them)."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] or type(exc).__name__
    statement = getattr(exc, "statement", None)
    said = f"cannot write the audit event to the database: {reason}"
    return AuditError(f"{said} [SQL: {statement}]" if statement else said)


class GroupCommit:
    """Standalone events that arrive together share one commit (see the module's docstring).
    `write(events)` writes a batch in one transaction and returns the chained events."""

    def __init__(self, write: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]):
        self.write = write
        self.batches = 0  # commits made, and events written (group size = events / batches)
        self.events = 0
        self._cond = threading.Condition()
        self._waiting: list[_Slot] = []
        self._writing = False

    def submit(self, event: dict[str, Any]) -> dict[str, Any]:
        slot = _Slot(event)
        with self._cond:
            self._waiting.append(slot)
            while self._writing and not slot.done:
                self._cond.wait()
            if not slot.done:  # nobody is writing: this caller writes every waiting event
                self._writing = True
                batch, self._waiting = self._waiting, []
        if not slot.done:
            self._lead(batch)
        if slot.error is None:
            return slot.chained
        if slot.shared:  # the shared commit failed: this event once more, on its own
            return self.write([event])[0]
        raise slot.error

    def _lead(self, batch: list[_Slot]) -> None:
        try:
            chained = self.write([s.event for s in batch])
        except Exception as exc:  # noqa: BLE001 - handed to each caller of the batch
            for s in batch:
                s.error, s.shared = exc, len(batch) > 1
        else:
            for s, c in zip(batch, chained, strict=True):
                s.chained = c
        finally:
            with self._cond:
                self.batches += 1
                self.events += len(batch)
                for s in batch:
                    if not s.chained and s.error is None:  # interrupted (KeyboardInterrupt...)
                        s.error = AuditError("the audit event's commit was interrupted")
                    s.done = True
                self._writing = False
                self._cond.notify_all()


class Chainer:
    """PostgreSQL: after a commit that queued events, `after_commit()` returns once a chaining
    round that began after that commit has ended (guardrails.auditing.chain, decision 0011).
    One round at a time per process chains every event waiting at that moment, so a busy
    moment's requests share a round (and its commit) instead of each taking the chain's lock."""

    def __init__(self, run_round: Callable[[], None]):
        self.run_round = run_round
        self.rounds = 0
        self._cond = threading.Condition()
        self._asked = 0  # tickets handed out: one per after_commit call
        self._covered = 0  # every ticket up to this one had a round begin after it
        self._running = False

    def after_commit(self) -> None:
        with self._cond:
            self._asked += 1
            ticket = self._asked
            while self._running and self._covered < ticket:
                self._cond.wait()
            if self._covered >= ticket:  # a round that began after this commit has ended
                return
            self._running = True
            covers = self._asked
        try:
            self.run_round()
        except Exception as exc:  # noqa: BLE001 - the change is committed, its event is queued
            log.warning(
                "audit events are committed but not chained yet; housekeeping chains them",
                error=str(exc),
            )
        finally:
            with self._cond:
                self._covered = max(self._covered, covers)
                self._running = False
                self.rounds += 1
                self._cond.notify_all()


class _Slot:
    __slots__ = ("chained", "done", "error", "event", "shared")

    def __init__(self, event: dict[str, Any]):
        self.event = event
        self.chained: dict[str, Any] = {}
        self.done = False
        self.error: BaseException | None = None
        self.shared = False


@dataclass
class AuditLog:
    """The audit log of one app: events go into `sessions`' database, then to the outbox."""

    app_id: str
    sessions: sessionmaker[Session]
    outbox: Outbox | None = None
    observers: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.group = GroupCommit(self._write_batch)
        self.chainer = Chainer(lambda: self.chain_waiting(batches=1))
        sa_event.listen(self.sessions, "after_transaction_create", self._began)
        sa_event.listen(self.sessions, "after_commit", self._committed)
        sa_event.listen(self.sessions, "after_transaction_end", self._ended)

    # --- following the app's transactions
    def _began(self, session: Session, transaction) -> None:
        if transaction.parent is None:
            session.info[_HOOKED] = self  # its commit and end reach this log
            if transaction.origin is SessionTransactionOrigin.BEGIN:
                context.push_transaction(self, session)
        elif transaction.nested:  # a savepoint: what was written before it
            marks = session.info.setdefault(_SAVEPOINTS, {})
            marks[id(transaction)] = {k: len(session.info.get(k, ())) for k in (_WROTE, _QUEUED)}

    def _committed(self, session: Session) -> None:
        if session.in_nested_transaction():  # a savepoint released: the outer one may roll back
            session.info.get(_SAVEPOINTS, {}).pop(id(session.get_nested_transaction()), None)
            return
        queued = session.info.pop(_QUEUED, None)
        written = session.info.pop(_WROTE, None)
        if queued:  # chained once the transaction has given its connection back (_ended)
            session.info[_TO_CHAIN] = True
        for event in (queued or []) + (written or []):
            _after_commit(_said, event)
            for observe in self.observers:
                _after_commit(observe, event)
        if written and self.outbox is not None:
            self.outbox.committed(written)

    def _ended(self, session: Session, transaction) -> None:
        if transaction.parent is not None:
            # a savepoint still marked was rolled back, not released: its events are gone
            mark = session.info.get(_SAVEPOINTS, {}).pop(id(transaction), None)
            for key, kept in (mark or {}).items():
                if key in session.info:
                    del session.info[key][kept:]
            return
        session.info.pop(_SAVEPOINTS, None)
        context.pop_transaction(session)
        session.info.pop(_WROTE, None)  # rolled back: those events are gone with the change
        session.info.pop(_QUEUED, None)
        if session.info.pop(_TO_CHAIN, False):
            # Committed. Chained now, not in after_commit: there the session still holds its
            # pool connection, and requests waiting for a round while each holds one could
            # leave the round none to run with.
            self.chainer.after_commit()  # chains them, then hands them on (chain_waiting)
        for event in session.info.pop(_LATER, []):
            try:
                self._write_alone(event)
            except AuditError as exc:
                log.error("a refusal could not be audited", action=event["action"], error=str(exc))

    @staticmethod
    def writes_at_end(session: Session) -> bool:
        """Whether `session`'s transaction, when it ends, will write events of its own (the
        refusals recorded in it): then ending it is a write and a commit, not a plain rollback."""
        return bool(session.info.get(_LATER))

    # --- writing
    def _chain(self, session: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chain `events` in `session`'s transaction; they are handed on after its commit."""
        try:
            chained = chain.extend(session, self.app_id, events)
        except SQLAlchemyError as exc:
            raise _unwritten(exc) from exc
        session.info.setdefault(_WROTE, []).extend(chained)
        return chained

    def _append(self, session: Session, event: dict[str, Any]) -> dict[str, Any]:
        """`event` in `session`'s transaction: chained there (SQLite), or queued there and
        chained right after its commit (PostgreSQL: returned without seq and hashes)."""
        if session.info.get(_HOOKED) is not self or not chain.chains_after_commit(session):
            # SQLite; or a session this log's hooks do not follow (made elsewhere): no round
            # would run after its commit, so the event is chained in its transaction
            return self._chain(session, [event])[0]
        try:
            chain.enqueue(session, [event])
        except SQLAlchemyError as exc:
            raise _unwritten(exc) from exc
        session.info.setdefault(_QUEUED, []).append(event)
        return event

    def chain_waiting(self, batches: int | None = None) -> int:
        """Chain the events waiting in the intake (PostgreSQL; nothing waits on SQLite), in
        transactions of at most CHAIN_BATCH events, and hand them on to the outbox; returns how
        many. `batches`: stop after that many (a request's round takes one: a backlog left by
        an outage is housekeeping's, not one request's)."""
        done, rounds = 0, 0
        while batches is None or rounds < batches:
            with self.sessions() as session, session.begin():
                if not chain.chains_after_commit(session):
                    return 0
                chained = chain.chain_waiting(session, self.app_id, CHAIN_BATCH)
            if chained and self.outbox is not None:
                self.outbox.committed(chained)
            done, rounds = done + len(chained), rounds + 1
            if len(chained) < CHAIN_BATCH:
                break
        return done

    def _write_alone(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.group.submit(event)

    def _write_batch(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Events in one transaction of their own (group commit), committed when it returns."""
        try:
            with self.sessions() as session, session.begin():
                return self._chain(session, events)
        except SQLAlchemyError as exc:  # the commit
            raise _unwritten(exc) from exc

    def event(
        self,
        action: str,
        *,
        resource: tuple[str, Any] | None = None,
        result: str = "success",
        actor: Actor | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The event as recorded, before it is chained (no seq, prev_hash, hash yet)."""
        if result not in RESULTS:
            raise ValueError(f"result must be one of {RESULTS}, not {result!r}")
        info = current_request() or RequestInfo()
        who = actor or info.actor or Actor(id="anonymous")
        span = trace.get_current_span().get_span_context()
        now = dt.datetime.now(dt.UTC)
        return {
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

    def record(
        self,
        action: str,
        *,
        resource: tuple[str, Any] | None = None,
        result: str = "success",
        actor: Actor | None = None,
        metadata: dict[str, Any] | None = None,
        session: Session | None = None,
        alone: bool = False,
    ) -> dict[str, Any]:
        """Write one event (see the module's docstring for where); raise AuditError if it
        cannot be written. `session`: write it in that session's transaction; `alone`: commit
        it on its own now, whatever transaction is open."""
        event = self.event(action, resource=resource, result=result, actor=actor, metadata=metadata)
        if session is None and not alone:
            session = context.active_transaction(self)
            if session is not None and result not in ("success", "intent"):
                session.info.setdefault(_LATER, []).append(event)
                return event
        written = self._write_alone(event) if session is None else self._append(session, event)
        if session is not None and session.info.get(_HOOKED) is not self:
            _after_commit(_said, event)  # no hook of this log follows that session: said now
        return written

    @contextlib.contextmanager
    def external(
        self,
        action: str,
        *,
        resource: tuple[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Around a call to another system: commit the intent, run the block, then record its
        outcome - success with the metadata the block added to the dict it gets, or failure
        with the error (re-raised). No intent, no call: an AuditError stops it before.

            with audit.external("incident.acknowledge", resource=("incident", id)) as out:
                out["status"] = provider().acknowledge(id).status

        If the outcome cannot be recorded, the call still happened: the intent stays on
        record, the error is logged, and the block's result is kept.
        """
        self.record(action, resource=resource, result="intent", metadata=metadata, alone=True)
        outcome = dict(metadata or {})
        try:
            yield outcome
        except Exception as exc:
            self._outcome(action, resource, "failure", {**outcome, "error": str(exc)[:500]})
            raise
        self._outcome(action, resource, "success", outcome)

    def _outcome(self, action: str, resource, result: str, metadata: dict[str, Any]) -> None:
        try:
            self.record(action, resource=resource, result=result, metadata=metadata, alone=True)
        except AuditError as exc:
            log.error(
                "the outcome of an external call could not be audited (its intent is recorded)",
                action=action,
                result=result,
                error=str(exc),
            )


def chain_waiting_step(db: Session, batch: int, manifest: Any = None) -> int:
    """One batch of the `audit-chain` housekeeping job (PostgreSQL): chain events whose
    process stopped between their commit and their chaining round. Looks without a lock first,
    so an idle chain costs one small read per replica and interval."""
    if not chain.chains_after_commit(db) or not chain.any_waiting(db):
        return 0
    return len(chain.chain_waiting(db, manifest.app_id, batch))


schedule("audit-chain", every=CHAIN_EVERY, batch=CHAIN_BATCH)(chain_waiting_step)


class _AuditFacade:
    """`guardrails.audit`: records through the audit log of the app running here (the Runtime
    bound in guardrails.core.context by the web app, `runtime()` or `bound()`)."""

    @staticmethod
    def _log() -> AuditLog:
        rt = current_runtime()
        if rt is None:
            raise AuditError("no audit log is bound: call guardrails.create_app() or runtime()")
        return rt.audit_log

    def record(self, action: str, **kwargs: Any) -> dict[str, Any]:
        return self._log().record(action, **kwargs)

    def external(self, action: str, **kwargs: Any):
        return self._log().external(action, **kwargs)


audit = _AuditFacade()


# ------------------------------------------------------------------------------ verification
@dataclass
class VerifyResult:
    events: int
    problems: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def verify_lines(lines: Iterable[tuple[int, bytes]]) -> VerifyResult:
    """Check every line's hash and its link to the line before."""
    prev, count, problems, notes = GENESIS, 0, [], []
    for number, raw in lines:
        count += 1
        try:
            event = json.loads(raw)
        except ValueError:
            if not raw.endswith(b"\n"):  # the last line, torn by a crash or a full disk
                count -= 1
                notes.append(
                    f"line {number}: a partial last record (a write was interrupted); the app "
                    "cuts it off and writes that event again from the database"
                )
                break
            problems.append(f"line {number}: not valid JSON")
            break
        if "seq" in event and event["seq"] != count:
            problems.append(
                f"line {number}: event {event['seq']} where event {count} belongs "
                "(a line was removed, inserted or reordered)"
            )
        elif event.get("prev_hash") != prev:
            problems.append(
                f"line {number}: prev_hash does not match line {number - 1} "
                "(a line was removed, inserted or reordered)"
            )
        elif event_hash(event) != event.get("hash"):
            problems.append(f"line {number}: content does not match its hash (line was edited)")
        if problems:
            break
        prev = event["hash"]
    return VerifyResult(events=count, problems=problems, notes=notes)


def verify_file(path: Path | str) -> VerifyResult:
    path = Path(path)
    if not path.exists():
        return VerifyResult(events=0, problems=[])
    return verify_lines(_lines(path))
