"""The hash-chained audit log and its verifier."""

import json
import multiprocessing
import types

import pytest

from guardrails import audit_trail
from guardrails.auditing.log import (
    GENESIS,
    Actor,
    AuditError,
    AuditLog,
    JsonlChainSink,
    verify_file,
)
from guardrails.cli import main
from guardrails.core import context


def make_log(path):
    return AuditLog(app_id="test-app", sinks=[JsonlChainSink(path, fsync=False)])


def test_events_are_chained(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = make_log(path)
    first = log.record("approval.submit", resource=("request", 1), actor=Actor("a@x.io", ("r",)))
    second = log.record("approval.approve", resource=("request", 1), result="denied")
    assert first["prev_hash"] == GENESIS
    assert second["prev_hash"] == first["hash"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["action"] for e in lines] == ["approval.submit", "approval.approve"]
    assert lines[0]["actor"] == {"id": "a@x.io", "roles": ["r"]}
    assert lines[1]["actor"]["id"] == "anonymous" and lines[1]["result"] == "denied"
    result = verify_file(path)
    assert result.ok and result.events == 2


def test_trail_of_one_resource_newest_first_skipping_a_damaged_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = make_log(path)
    token = context.bind(types.SimpleNamespace(audit_log=log))  # an app with only its audit log
    try:
        assert audit_trail(("incident", "INC1")) == []  # no file yet
        log.record("incident.acknowledge", resource=("incident", "INC1"))
        log.record("incident.note", resource=("incident", "INC2"))
        log.record("incident.escalate", resource=("incident", "INC1"))
        with path.open("a") as fh:  # as seen while another process is still writing it
            fh.write('{"resource":{"type":"incident","id":"INC1"}, "act')
        trail = audit_trail(("incident", "INC1"))
    finally:
        context.unbind(token)
    assert [e["action"] for e in trail] == ["incident.escalate", "incident.acknowledge"]


def test_trail_reads_only_what_was_appended_since_the_last_view(tmp_path):
    from guardrails.auditing.trail import TrailIndex

    path = tmp_path / "audit.jsonl"
    log = make_log(path)
    for i in range(300):
        log.record("incident.note", resource=("incident", f"INC{i % 30}"))
    index = TrailIndex(path)
    assert len(index.events(("incident", "INC7"), 50)) == 10  # first view: one scan
    read_up_to = index.offset
    assert read_up_to == path.stat().st_size
    log.record("incident.escalate", resource=("incident", "INC7"))
    log.record("incident.note", resource=("incident", "INC8"))
    seen = []  # the byte ranges read (the real reader, with its calls noted)
    original = index._lines
    index._lines = lambda f, start, end: seen.append((start, end)) or original(f, start, end)
    newest = index.events(("incident", "INC7"), 50)
    assert seen == [(read_up_to, path.stat().st_size)]  # only the two new lines were read
    assert newest[0]["action"] == "incident.escalate" and len(newest) == 11
    assert [e["resource"]["id"] for e in newest] == ["INC7"] * 11
    path.write_text("")  # a new file (rotated): the index starts again
    assert index.events(("incident", "INC7"), 50) == []


@pytest.mark.parametrize("tamper", ["edit", "delete", "swap"])
def test_verify_detects_tampering(tmp_path, tamper, capsys):
    path = tmp_path / "audit.jsonl"
    log = make_log(path)
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


def test_unknown_result_is_refused(tmp_path):
    with pytest.raises(ValueError, match="result must be one of"):
        make_log(tmp_path / "a.jsonl").record("x", result="maybe")


def test_write_failure_raises_audit_error(tmp_path):
    blocked = tmp_path / "audit.jsonl"
    blocked.mkdir()  # a directory where the file should be: every write fails
    with pytest.raises(AuditError, match="cannot append"):
        make_log(blocked).record("approval.approve")


def _append_many(path, n):
    log = make_log(path)
    for i in range(n):
        log.record("load.test", resource=("n", i))


def test_concurrent_writers_keep_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(path, 25)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    result = verify_file(path)
    assert result.ok, result.problems
    assert result.events == 100


def test_verify_command_on_an_empty_log(tmp_path, capsys):
    assert main(["audit", "verify", "--file", str(tmp_path / "none.jsonl")]) == 0
    assert "no audit events yet" in capsys.readouterr().out
