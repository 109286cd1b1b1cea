"""The audit write path: standalone events that arrive together share one commit (AuditLog's
group commit); the file export is delivered without a database write."""

import threading

import pytest
from sqlalchemy import event, select

from guardrails.auditing import chain
from guardrails.auditing.log import AuditError, GroupCommit, verify_file
from tests.test_audit import APP, engine_of, make_log, url  # noqa: F401 - the url fixture

THREADS, EACH = 8, 12


def test_concurrent_standalone_events_share_commits_and_are_committed_on_return(url):  # noqa: F811
    log = make_log(url)
    start = threading.Barrier(THREADS)
    problems: list[str] = []

    def writer(n: int) -> None:
        start.wait()
        for i in range(EACH):
            written = log.record("bench.action", resource=("thing", f"{n}-{i}"))
            with log.sessions() as session:  # committed before record returned
                found = session.scalar(
                    select(chain.AuditEventRow.seq).where(
                        chain.AuditEventRow.event_id == written["event_id"]
                    )
                )
            if found != written["seq"]:
                problems.append(f"{written['event_id']} not committed at {written['seq']}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    check = chain.verify_db(engine_of(log), APP)
    assert check.ok and check.events == THREADS * EACH
    assert log.group.events == THREADS * EACH
    assert log.group.batches < log.group.events  # some events shared a commit
    engine_of(log).dispose()


def test_a_failed_shared_commit_retries_each_event_alone():
    """One bad event costs only its own caller: the others are written on their own."""
    entered, release = threading.Event(), threading.Event()
    written: list[list[str]] = []

    def write(events):
        names = [e["name"] for e in events]
        if names == ["first"]:  # hold the first commit until the others queue behind it
            entered.set()
            release.wait(5)
        if "bad" in names:
            raise AuditError("the database refused it")
        written.append(names)
        return [{**e, "seq": len(written)} for e in events]

    group = GroupCommit(write)
    results: dict[str, object] = {}

    def submit(name: str) -> None:
        try:
            results[name] = group.submit({"name": name})["name"]
        except AuditError as exc:
            results[name] = exc

    first = threading.Thread(target=submit, args=("first",))
    first.start()
    assert entered.wait(5)
    others = [threading.Thread(target=submit, args=(n,)) for n in ("a", "bad", "b")]
    for t in others:
        t.start()
    while len(group._waiting) < 3:  # the test waits for the queue to form
        threading.Event().wait(0.005)
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert results["first"] == "first" and results["a"] == "a" and results["b"] == "b"
    assert isinstance(results["bad"], AuditError)
    assert written[0] == ["first"] and sorted(n for w in written[1:] for n in w) == ["a", "b"]
    assert group.batches == 2  # the first alone, then the three together (which failed)


def test_an_interrupted_commit_never_returns_an_unwritten_event():
    def write(events):
        raise KeyboardInterrupt

    group = GroupCommit(write)
    with pytest.raises(KeyboardInterrupt):
        group.submit({"name": "x"})
    assert group.batches == 1 and not group._writing  # the next one can lead


def test_the_file_export_costs_no_database_write(tmp_path):
    """The file is its own cursor: delivering to it moves no cursor row (no write, no fsync)."""
    path = tmp_path / "audit.jsonl"
    log = make_log(f"sqlite:///{tmp_path / 'app.db'}", path)
    log.outbox.ensure_cursors()
    for n in range(3):
        log.record("thing.do", resource=("thing", n))
    assert verify_file(path).events == 3  # written at each commit
    with log.sessions() as session:
        assert session.get(chain.SinkCursor, "file").seq == 0
    engine_of(log).dispose()


def test_committed_events_go_to_the_file_without_reading_them_back(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = make_log(f"sqlite:///{tmp_path / 'app.db'}", path)
    log.record("thing.do", resource=("thing", 0))
    statements: list[str] = []
    event.listen(engine_of(log), "before_cursor_execute", lambda *a: statements.append(a[2]))
    log.record("thing.do", resource=("thing", 1))
    assert verify_file(path).events == 2
    assert not [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    path.unlink()  # the file behind the table: caught up from it, from the first event
    log.record("thing.do", resource=("thing", 2))
    assert verify_file(path).events == 3
    engine_of(log).dispose()
