"""The audit chain in the app's database, its outbox and sinks, and the verifiers.

Most tests run on SQLite and on a real PostgreSQL server (one cluster for the whole run).
"""

import json
import multiprocessing
import resource
import signal
import uuid

import pytest
import structlog.testing
from sqlalchemy import create_engine, delete, text, update

from guardrails import audit_trail
from guardrails.auditing import chain
from guardrails.auditing.log import GENESIS, Actor, AuditError, AuditLog, verify_file
from guardrails.auditing.outbox import DeliveryError, JsonlFileSink, Outbox
from guardrails.cli import main
from guardrails.core import context, db

APP = "test-app"


def fresh_url(kind: str, tmp_path, request) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    cluster = request.getfixturevalue("postgres")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(db.with_driver(cluster.url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return cluster.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return fresh_url(request.param, tmp_path, request)


def make_log(url: str, path=None, sinks=()) -> AuditLog:
    engine = db.make_engine(db.with_driver(url))
    db.create_all(engine)
    chain.ensure_head(engine, APP)
    sessions = db.make_sessionmaker(engine)
    sinks = [*([JsonlFileSink(path, fsync=False)] if path else []), *sinks]
    return AuditLog(app_id=APP, sessions=sessions, outbox=Outbox(APP, sessions, sinks))


def engine_of(log: AuditLog):
    return log.sessions.kw["bind"]


def test_events_are_chained_in_the_database_and_exported(url, tmp_path):
    path = tmp_path / "audit.jsonl"
    log = make_log(url, path)
    first = log.record("approval.submit", resource=("request", 1), actor=Actor("a@x.io", ("r",)))
    second = log.record("approval.approve", resource=("request", 1), result="denied")
    assert (first["seq"], first["prev_hash"]) == (1, GENESIS)
    assert (second["seq"], second["prev_hash"]) == (2, first["hash"])
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # written at commit
    assert lines == [first, second]
    assert lines[1]["actor"]["id"] == "anonymous" and lines[1]["result"] == "denied"
    assert verify_file(path).ok and verify_file(path).events == 2
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok and check.events == 2 and check.head_hash == second["hash"]


def test_an_event_commits_with_the_change_or_not_at_all(url):
    """... and its log line is written once it is durable: never for a rolled-back event."""
    log = make_log(url)
    engine = engine_of(log)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE thing (id INTEGER PRIMARY KEY, state TEXT)"))
        conn.execute(text("INSERT INTO thing VALUES (1, 'new')"))

    with structlog.testing.capture_logs() as logged:
        with pytest.raises(RuntimeError), log.sessions() as session, session.begin():
            session.execute(text("UPDATE thing SET state = 'done' WHERE id = 1"))
            log.record("thing.finish", resource=("thing", 1))
            assert [e for e in logged if e["event"] == "audit"] == []  # not committed yet
            raise RuntimeError("the commit never happens")
        with log.sessions() as session, session.begin():  # a refusal inside a transaction
            log.record("thing.finish", resource=("thing", 1), result="denied")
            session.rollback()  # ... that rolls back: the refusal is written after it, on its own
        with log.sessions() as session, session.begin():
            session.execute(text("UPDATE thing SET state = 'done' WHERE id = 1"))
            log.record("thing.finish", resource=("thing", 1))
    with log.sessions() as session:
        events = chain.events_after(session, 0, 10)
        state = session.execute(text("SELECT state FROM thing")).scalar()
    assert [(e["action"], e["result"]) for e in events] == [
        ("thing.finish", "denied"),
        ("thing.finish", "success"),
    ]
    said = [(e["event_id"], e["result"]) for e in logged if e["event"] == "audit"]
    assert said == [(e["event_id"], e["result"]) for e in events]
    assert state == "done" and chain.verify_db(engine, APP).ok


def test_a_failing_commit_leaves_no_success_event(url):
    log = make_log(url)
    engine = engine_of(log)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE thing (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO thing VALUES (1)"))
    duplicate = pytest.raises(Exception, match="(?i)unique|duplicate")
    with duplicate, log.sessions() as session, session.begin():
        log.record("thing.create", resource=("thing", 1))
        session.execute(text("INSERT INTO thing VALUES (1)"))  # fails: no commit
    with log.sessions() as session:
        assert chain.events_after(session, 0, 10) == []
        assert chain.head(session, APP) == (0, GENESIS)


def test_trail_of_one_resource_newest_first(tmp_path):
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}")
    token = context.bind(type("Rt", (), {"audit_log": log})())  # an app with only its audit log
    try:
        assert audit_trail(("incident", "INC1")) == []
        log.record("incident.acknowledge", resource=("incident", "INC1"))
        log.record("incident.note", resource=("incident", "INC2"))
        log.record("incident.escalate", resource=("incident", "INC1"))
        trail = audit_trail(("incident", "INC1"))
    finally:
        context.unbind(token)
    assert [e["action"] for e in trail] == ["incident.escalate", "incident.acknowledge"]


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap"])
def test_verify_detects_tampering_in_a_file(tmp_path, tamper, capsys):
    path = tmp_path / "audit.jsonl"
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}", path)
    for i in range(4):
        log.record("data.export", resource=("report", i), metadata={"rows": i})
    lines = path.read_text().splitlines()
    if tamper == "edit":
        lines[1] = lines[1].replace('"rows":1', '"rows":1000')
    elif tamper == "delete":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    result = verify_file(path)
    assert not result.ok
    assert result.problems[0].startswith("line 2:" if tamper != "delete" else "line 3:")
    assert main(["audit", "verify", "--file", str(path)]) == 1
    assert "BROKEN" in capsys.readouterr().err


@pytest.mark.parametrize("tamper", ["edit", "delete", "tail"])
def test_verify_detects_tampering_in_the_database(url, tamper, capsys):
    log = make_log(url)
    for i in range(4):
        log.record("data.export", resource=("report", i), metadata={"rows": i})
    engine = engine_of(log)
    assert main(["audit", "verify", "--database", url]) == 0
    assert "4 event(s), hash chain intact" in capsys.readouterr().out
    table = chain.AuditEventRow.__table__
    with engine.begin() as conn:
        if tamper == "edit":
            body = conn.execute(text("SELECT body FROM guardrails_audit_event WHERE seq = 2"))
            edited = body.scalar().replace('"rows":1', '"rows":1000')
            conn.execute(update(table).where(table.c.seq == 2).values(body=edited))
        else:
            conn.execute(delete(table).where(table.c.seq == (2 if tamper == "delete" else 4)))
    result = chain.verify_db(engine, APP)
    assert not result.ok
    expected = {"edit": "event 2:", "delete": "event 3:", "tail": "the chain head says 4"}
    assert result.problems[0].startswith(expected[tamper])
    assert main(["audit", "verify", "--database", url]) == (1 if tamper != "tail" else 0)
    capsys.readouterr()


def test_unknown_result_is_refused(tmp_path):
    with pytest.raises(ValueError, match="result must be one of"):
        make_log(f"sqlite:///{tmp_path / 'a.db'}").record("x", result="maybe")


def test_a_database_that_refuses_the_event_raises_audit_error(tmp_path):
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}")
    with engine_of(log).begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER full BEFORE INSERT ON guardrails_audit_event "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    with pytest.raises(AuditError, match="disk is full"):
        log.record("approval.approve")


def test_an_event_the_database_refuses_is_not_quoted_in_the_error(url):
    """The AuditError (logged, shown to operators) names the failed statement and the
    database's reason, never the event's values: its body holds people's data."""
    log = make_log(url)
    refuse = {
        "sqlite": "CREATE TRIGGER full BEFORE INSERT ON guardrails_audit_event "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
        "postgresql": "ALTER TABLE guardrails_audit_event ADD CONSTRAINT disk_full CHECK (false)",
    }
    with engine_of(log).begin() as conn:
        conn.exec_driver_sql(refuse[conn.dialect.name])
    with pytest.raises(AuditError, match="INSERT INTO guardrails_audit_event") as refused:
        log.record("approval.approve", metadata={"reason": "alice.private@example.com"})
    said = str(refused.value)  # (SQLAlchemy cuts long parameters short: the action is early)
    assert "approval.approve" not in said and "alice" not in said and "full" in said


def _append_many(url, n):
    log = make_log(url)
    for i in range(n):
        with log.sessions() as session, session.begin():
            log.record("load.test", resource=("n", i))
    engine_of(log).dispose()


def test_concurrent_processes_keep_one_chain(url):
    make_log(url)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(url, 25)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert all(w.exitcode == 0 for w in workers)
    engine = db.make_engine(db.with_driver(url))
    result = chain.verify_db(engine, APP)
    assert result.ok, result.problems
    assert result.events == 100


def test_the_file_never_keeps_a_partial_record(tmp_path, capsys):
    path = tmp_path / "audit.jsonl"
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}", path)
    log.record("one")
    with path.open("ab") as fh:  # a crash (or a full disk) in the middle of a line
        fh.write(b'{"action":"two","seq":2,"ha')
    result = verify_file(path)
    assert result.ok and result.events == 1 and "partial last record" in result.notes[0]
    assert main(["audit", "verify", "--file", str(path)]) == 0
    assert "partial last record" in capsys.readouterr().err
    log.record("two")  # the next write cuts the torn line off first, and says so
    sink = log.outbox.sinks[0]
    assert sink.truncated == 1
    assert [json.loads(line)["action"] for line in path.read_text().splitlines()] == [
        "one",
        "two",
    ]
    assert verify_file(path).ok


def _deliver_with_a_file_size_limit(path, events, limit, answer):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        JsonlFileSink(path, fsync=False).deliver(events)
        answer.put("delivered")
    except DeliveryError as exc:
        answer.put(str(exc))


def test_a_write_that_fails_half_way_is_cut_back(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}", path)
    log.record("one")
    size = path.stat().st_size
    log.outbox.sinks.clear()  # the next events stay in the database only
    for _ in range(3):
        log.record("more", metadata={"pad": "x" * 200})
    with log.sessions() as session:
        events = chain.events_after(session, 1, 10)
    ctx = multiprocessing.get_context("fork")
    answer = ctx.Queue()
    child = ctx.Process(
        target=_deliver_with_a_file_size_limit, args=(path, events, size + 300, answer)
    )
    child.start()
    child.join(30)
    assert "File too large" in answer.get(timeout=5)
    assert path.stat().st_size == size  # the partial batch was cut back: one complete line
    JsonlFileSink(path, fsync=False).deliver(events)  # space again: the batch goes in once
    assert verify_file(path).events == 4 and verify_file(path).ok


def test_a_deleted_file_is_written_again_from_the_first_event(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}", path)
    log.record("one")
    log.record("two")
    path.unlink()
    log.record("three")
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_a_log_from_before_the_database_chain_is_kept_aside(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text('{"action":"old","hash":"x","prev_hash":"' + GENESIS + '"}\n')
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}", path)
    log.record("new")
    kept = list(tmp_path.glob("audit.jsonl.before-database-*"))
    assert len(kept) == 1 and '"old"' in kept[0].read_text()
    assert json.loads(path.read_text())["action"] == "new"


def test_external_call_records_intent_then_outcome(tmp_path):
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}")
    with log.external("incident.acknowledge", resource=("incident", "I1")) as outcome:
        outcome["status"] = "acknowledged"
    with pytest.raises(ConnectionError), log.external("incident.escalate") as outcome:
        raise ConnectionError("the service did not answer")
    with log.sessions() as session:
        events = chain.events_after(session, 0, 10)
    assert [(e["action"], e["result"]) for e in events] == [
        ("incident.acknowledge", "intent"),
        ("incident.acknowledge", "success"),
        ("incident.escalate", "intent"),
        ("incident.escalate", "failure"),
    ]
    assert events[1]["metadata"] == {"status": "acknowledged"}
    assert events[3]["metadata"]["error"] == "the service did not answer"


def test_no_intent_no_call(tmp_path):
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}")
    with engine_of(log).begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER full BEFORE INSERT ON guardrails_audit_event "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    called = []
    with pytest.raises(AuditError), log.external("incident.acknowledge"):
        called.append(1)
    assert called == []


def test_verify_command_on_an_empty_log(tmp_path, capsys):
    assert main(["audit", "verify", "--file", str(tmp_path / "none.jsonl")]) == 0
    assert "no audit events yet" in capsys.readouterr().out


def test_the_otlp_sink_sends_each_event_as_a_log_record(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from guardrails.auditing.outbox import OtlpLogSink
    from guardrails.testing import free_port

    received = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, self.headers["content-type"], json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        sink = OtlpLogSink(endpoint, {"service.name": APP})
        log = make_log(f"sqlite:///{tmp_path / 'a.db'}", sinks=[sink])
        event = log.record("approval.approve", resource=("request", 7))
        assert log.outbox.flush(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    path, content_type, payload = received[0]
    assert path == "/v1/logs" and content_type == "application/json"
    resource_logs = payload["resourceLogs"][0]
    assert resource_logs["resource"]["attributes"][0]["value"]["stringValue"] == APP
    record = resource_logs["scopeLogs"][0]["logRecords"][0]
    assert json.loads(record["body"]["stringValue"]) == event
    attributes = {a["key"]: a["value"] for a in record["attributes"]}
    assert attributes["event.id"] == {"stringValue": event["event_id"]}
    assert attributes["audit.seq"] == {"intValue": "1"}


def test_the_http_sink_keeps_one_connection_and_opens_a_new_one_after_a_failure():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from guardrails.auditing.outbox import DeliveryError, HttpSink
    from guardrails.testing import free_port

    connections, batches, cut = set(), [], threading.Event()

    class Collector(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a SIEM's endpoint does

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if cut.is_set():  # the connection dies without an answer (a proxy restart)
                self.close_connection = True
                return
            connections.add(self.client_address)
            batches.append(body)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Collector)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = HttpSink(f"http://127.0.0.1:{server.server_port}/events")
        for n in range(3):
            sink.deliver([{"seq": n}])
        assert len(batches) == 3 and len(connections) == 1  # one connection for every batch
        cut.set()
        with pytest.raises(DeliveryError):
            sink.deliver([{"seq": 3}])
        cut.clear()
        sink.deliver([{"seq": 3}])  # on a new connection, nothing carried over
    finally:
        server.shutdown()
        server.server_close()
    assert [b["events"][0]["seq"] for b in batches] == [0, 1, 2, 3] and len(connections) == 2


def test_a_replica_waits_without_spinning_while_another_holds_the_cursor(tmp_path, request):
    """Found in a two-replica trial: while one replica delivered to a slow SIEM, the other
    retried at once, thousands of transactions a second, and logged "recovered" meanwhile."""
    import time as clock

    from guardrails.auditing import outbox as ob

    url = fresh_url("postgresql", tmp_path, request)
    delivered = []

    class Recorder:
        name, local = "siem", False

        def position(self):
            return None

        def deliver(self, events):
            delivered.extend(events)

    log = make_log(url, sinks=[Recorder()])
    log.outbox.ensure_cursors()
    log.record("thing.create", resource=("thing", 1))
    calls = 0
    real = log.outbox._deliver_batch

    def counting(sink):
        nonlocal calls
        calls += 1
        return real(sink)

    log.outbox._deliver_batch = counting
    other = create_engine(db.with_driver(url))
    with other.connect() as conn, conn.begin():  # the other replica, inside its delivery
        conn.execute(text("SELECT seq FROM guardrails_audit_cursor FOR UPDATE"))
        started = clock.monotonic()
        while clock.monotonic() - started < 1.0:
            assert log.outbox.deliver() is False
            clock.sleep(0.01)
    other.dispose()
    assert calls <= 1 + 1.0 / ob.ELSEWHERE_WAIT + 1, calls  # ~3 looks in a second, not ~100
    assert log.outbox.state["siem"].failures == 0 and delivered == []
    assert log.outbox.flush(timeout=5) and [e["action"] for e in delivered] == ["thing.create"]


def test_a_log_that_cannot_be_written_never_fails_a_committed_event(url, monkeypatch):
    """The `audit` log line comes after the commit: a broken or closed log stream there must
    not turn a durable event into an error (a 500 for a committed change, or AuditError, the
    "not done" answer, for a group commit's callers, whose retry would then find the event)."""
    from guardrails.auditing import log as audit_log

    log = make_log(url)
    seen = []
    log.observers.append(lambda event: seen.append(event["event_id"]))

    def broken(*_args, **_kwargs):
        raise BrokenPipeError("the log stream is gone")

    monkeypatch.setattr(audit_log.log, "info", broken)
    monkeypatch.setattr(audit_log.log, "error", broken)
    engine = engine_of(log)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE thing (id INTEGER PRIMARY KEY)"))
    with log.sessions() as session, session.begin():
        session.execute(text("INSERT INTO thing VALUES (1)"))
        inside = log.record("thing.create", resource=("thing", 1))
    alone = log.record("thing.look", resource=("thing", 1))  # a group commit of its own
    if chain.chains_after_commit(session):
        log.chain_waiting()
    with log.sessions() as session:
        stored = [e["event_id"] for e in chain.events_after(session, 0, 10)]
        assert session.execute(text("SELECT count(*) FROM thing")).scalar() == 1
    assert sorted(stored) == sorted([inside["event_id"], alone["event_id"]])
    assert sorted(seen) == sorted(stored)  # the observers still ran, once each
