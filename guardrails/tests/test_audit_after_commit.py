"""PostgreSQL: an event recorded in a change's transaction is queued there and chained right
after the commit (decision 0011), so concurrent audited commits no longer queue for the chain's
head row. What must still hold: the change and its event commit together or not at all; every
committed event is chained, once, in one unbroken chain; a process that dies between its commit
and the chaining round loses nothing (housekeeping chains what it left)."""

import threading
import time

import pytest
from sqlalchemy import create_engine, select, text

from guardrails.auditing import chain
from guardrails.auditing.log import CHAIN_BATCH, chain_waiting_step
from guardrails.cli import main
from guardrails.core import db
from tests.test_audit import APP, engine_of, fresh_url, make_log


@pytest.fixture
def pg_url(request, tmp_path):
    return fresh_url("postgresql", tmp_path, request)


def _thing_table(log) -> None:
    with engine_of(log).begin() as conn:
        conn.execute(text("CREATE TABLE thing (id INTEGER PRIMARY KEY, state TEXT)"))


def _change(log, n: int) -> dict:
    with log.sessions() as session, session.begin():
        session.execute(text("INSERT INTO thing VALUES (:n, 'new')"), {"n": n})
        return log.record("thing.create", resource=("thing", n))


def _changes_at_once(log, threads: int, each: int) -> list[BaseException]:
    """`threads` writers starting together, each making `each` audited changes; their errors."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        start.wait()
        try:
            for i in range(each):
                _change(log, k * 1000 + i)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    return errors


def _waiting(log) -> int:
    with log.sessions() as session:
        return chain.waiting_count(session)


def test_concurrent_changes_each_commit_one_event_in_one_chain(pg_url):
    log = make_log(pg_url)
    _thing_table(log)
    threads, each = 8, 15
    assert _changes_at_once(log, threads, each) == []
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok, check.problems
    assert check.events == threads * each and check.waiting == 0
    with log.sessions() as session:
        things = session.scalars(text("SELECT id FROM thing")).all()
        resources = session.scalars(select(chain.AuditEventRow.resource_id)).all()
    assert sorted(map(str, things)) == sorted(resources)  # each change has its one event
    assert log.chainer.rounds < threads * each  # busy moments shared a round


def test_a_rolled_back_change_queues_nothing(pg_url):
    log = make_log(pg_url)
    _thing_table(log)
    with pytest.raises(RuntimeError), log.sessions() as session, session.begin():
        session.execute(text("INSERT INTO thing VALUES (1, 'new')"))
        log.record("thing.create", resource=("thing", 1))
        raise RuntimeError("the commit never happens")
    assert _waiting(log) == 0
    assert chain.verify_db(engine_of(log), APP).events == 0


def test_a_change_commits_while_another_replica_holds_the_chain(pg_url):
    """The change's commit does not wait for the chain's lock (that was the bottleneck); its
    event is chained as soon as the lock is free."""
    log = make_log(pg_url)
    _thing_table(log)
    holder = create_engine(db.with_driver(pg_url))
    done = threading.Event()
    with holder.connect() as conn:
        trans = conn.begin()
        conn.execute(text("SELECT seq FROM guardrails_audit_head FOR UPDATE"))  # a chainer
        worker = threading.Thread(target=lambda: (_change(log, 7), done.set()))
        worker.start()
        seen = None
        deadline = time.monotonic() + 10
        while seen is None and time.monotonic() < deadline:  # the change is committed...
            with holder.connect() as other:
                seen = other.execute(text("SELECT state FROM thing WHERE id = 7")).scalar()
            time.sleep(0.02)
        assert seen == "new"
        assert not done.is_set()  # ...while its chaining round waits for the lock
        assert _waiting(log) == 1
        trans.rollback()
    worker.join(20)
    assert done.is_set()
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok and check.events == 1 and check.waiting == 0
    holder.dispose()


def test_events_left_by_a_failed_round_are_chained_by_housekeeping(pg_url, capsys):
    """A process that stops (or fails) between its commit and its chaining round: the change
    and its event are committed; `audit verify` says the event waits; the housekeeping job
    chains it."""
    log = make_log(pg_url)
    _thing_table(log)
    real = log.chainer.run_round
    log.chainer.run_round = lambda: (_ for _ in ()).throw(RuntimeError("killed"))
    _change(log, 1)  # the request still succeeds: its change and event are committed
    _change(log, 2)
    log.chainer.run_round = real
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok and check.events == 0 and check.waiting == 2
    assert main(["audit", "verify", "--database", pg_url]) == 0
    assert "2 committed event(s) wait to be chained" in capsys.readouterr().out
    manifest = type("M", (), {"app_id": APP})()
    with log.sessions() as session, session.begin():
        assert chain_waiting_step(session, CHAIN_BATCH, manifest) == 2
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok and check.events == 2 and check.waiting == 0
    with log.sessions() as session:
        ids = session.scalars(
            select(chain.AuditEventRow.resource_id).order_by(chain.AuditEventRow.seq)
        ).all()
    assert ids == ["1", "2"]  # chained in the order they were committed


def test_the_job_does_nothing_on_sqlite(tmp_path):
    log = make_log(f"sqlite:///{tmp_path / 'a.db'}")
    with log.sessions() as session, session.begin():
        assert chain_waiting_step(session, CHAIN_BATCH, type("M", (), {"app_id": APP})()) == 0
        event = log.record("thing.create", resource=("thing", 1), session=session)
    assert event["seq"] == 1  # SQLite chains in the change's transaction


def test_rounds_need_no_second_connection_while_requests_hold_theirs(pg_url):
    """Each request's session gives its connection back before its chaining round: with a pool
    as small as the number of writers, a round still finds a connection (else it would wait
    out the pool's timeout while the requests behind it hold every connection)."""
    log = make_log(pg_url)
    _thing_table(log)
    small = create_engine(db.with_driver(pg_url), pool_size=2, max_overflow=0, pool_timeout=3)
    log.sessions.configure(bind=small)
    threads, each = 6, 5
    assert _changes_at_once(log, threads, each) == []
    check = chain.verify_db(small, APP)
    assert check.ok and check.events == threads * each
    assert check.waiting == 0  # no round gave up for want of a connection
    small.dispose()


def test_fields_no_column_can_hold_are_chained_all_the_same(pg_url):
    """A field too long for its column, or holding a NUL (which PostgreSQL's text refuses),
    must not leave its event unchained: it would hold up every event queued after it."""
    log = make_log(pg_url)
    _thing_table(log)
    with log.sessions() as session, session.begin():
        session.execute(text("INSERT INTO thing VALUES (1, 'new')"))
        log.record("thing.\x00create", resource=("t" * 65, "a\x00b"))
    _change(log, 2)
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok and check.events == 2 and check.waiting == 0
    with log.sessions() as session:
        first = session.get(chain.AuditEventRow, 1)
    assert first.resource_type == "t" * 64 and first.resource_id == "ab"
    assert '"id":"a\\u0000b"' in first.body  # the event itself is kept exactly


def test_a_request_waits_for_the_round_that_took_its_event(pg_url):
    """Another replica's round took this request's event and waits for the chain's head: this
    request's round waits for that one instead of returning with its event unchained."""
    log, other = make_log(pg_url), make_log(pg_url)
    _thing_table(log)
    holder = create_engine(db.with_driver(pg_url))
    conn = holder.connect()
    trans = conn.begin()
    conn.execute(text("SELECT seq FROM guardrails_audit_head FOR UPDATE"))  # a third replica
    real = log.chainer.run_round
    threads: list[threading.Thread] = []

    def after_the_other_replica_took_it():
        threads.append(threading.Thread(target=other.chain_waiting))
        threads[0].start()
        time.sleep(0.3)  # it has taken the event from the intake and waits for the head
        threads.append(threading.Timer(0.5, trans.rollback))  # the third replica lets go
        threads[1].start()
        real()

    log.chainer.run_round = after_the_other_replica_took_it
    started = time.monotonic()
    _change(log, 1)
    assert time.monotonic() - started >= 0.7  # it waited for the other round...
    check = chain.verify_db(engine_of(log), APP)
    assert check.events == 1 and check.waiting == 0  # ...so its event was chained on return
    for t in threads:
        t.join(10)
    conn.close()
    holder.dispose()


def test_a_savepoint_released_then_rolled_back_counts_nothing(pg_url):
    log = make_log(pg_url)
    _thing_table(log)
    counted: list[str] = []
    log.observers.append(lambda event: counted.append(event["action"]))
    with pytest.raises(RuntimeError), log.sessions() as session, session.begin():
        with session.begin_nested():
            session.execute(text("INSERT INTO thing VALUES (1, 'new')"))
            log.record("thing.phantom", resource=("thing", 1))
        raise RuntimeError("the outer transaction rolls back")
    _change(log, 2)
    assert counted == ["thing.create"]
    check = chain.verify_db(engine_of(log), APP)
    assert check.events == 1 and check.waiting == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_rolled_back_savepoint_takes_its_events_with_it(kind, tmp_path, request):
    """The outer transaction commits, a savepoint inside it rolled back: the savepoint's event
    is neither counted nor exported (the file would hold an event the database does not)."""
    path = tmp_path / "audit.jsonl"
    log = make_log(fresh_url(kind, tmp_path, request), path)
    _thing_table(log)
    counted: list[str] = []
    log.observers.append(lambda event: counted.append(event["action"]))
    with log.sessions() as session, session.begin():
        session.execute(text("INSERT INTO thing VALUES (1, 'new')"))
        log.record("thing.create", resource=("thing", 1))
        try:
            with session.begin_nested():
                session.execute(text("UPDATE thing SET state = 'gone' WHERE id = 1"))
                log.record("thing.phantom", resource=("thing", 1))
                raise RuntimeError("the savepoint rolls back")
        except RuntimeError:
            pass
        with session.begin_nested():  # a savepoint released: its event stays
            log.record("thing.kept", resource=("thing", 1))
    _change(log, 2)
    assert counted == ["thing.create", "thing.kept", "thing.create"]
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok and check.events == 3 and check.waiting == 0
    log.outbox.flush()
    from guardrails.auditing.log import verify_file

    exported = [line.split('"action":"')[1].split('"')[0] for line in path.read_text().splitlines()]
    assert exported == ["thing.create", "thing.kept", "thing.create"]
    assert verify_file(path).ok
