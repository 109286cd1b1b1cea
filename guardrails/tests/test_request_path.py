"""The GET path of issue 17: what the one middleware does cheaply must still be right.

The session read on a SQLite file, and on PostgreSQL, runs on the event loop without a cache, so
a sign-out seen by one process is seen by every other at once; a PostgreSQL restart or a
rotated engine costs a fallback read in a thread, never a wrong answer; the CSRF check reads a
form's token and the route still gets the whole body; the role dependencies are plain calls that
authenticate once.
"""

import hashlib
import time
from types import SimpleNamespace
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from guardrails import (
    User,
    audit,
    create_app,
    current_user,
    db_session,
    require_role,
    require_user,
)
from guardrails.core import db
from guardrails.core.db import make_engine, make_sessionmaker
from guardrails.testing import login, serve
from guardrails.web.app import (
    _TOO_MANY,
    FORM_FIELDS,
    SMALL_FORM,
    URLENCODED,
    _read_body,
    _replay_bytes,
    _urlencoded_field,
)
from guardrails.web.sessions import SessionStore

from .test_audit import fresh_url


def test_a_sign_out_in_one_process_ends_the_session_in_every_other_at_once(runtime):
    """Two stores on one SQLite file stand for two replicas (or workers): B reads on its event
    loop, without a thread and without a cache, and sees A's sign-out on its next read."""
    url = runtime.settings.database_url
    replica_a = SessionStore(runtime.sessionmaker, max_age=60)
    replica_b = SessionStore(make_sessionmaker(make_engine(url)), max_age=60)
    from guardrails.core.runtime import prepare_database

    prepare_database(runtime)
    replica_a.save("sid-1", {"user": {"sub": "ann"}})
    assert replica_b._inline_connection() is not None  # noqa: SLF001 - read on the loop
    assert anyio.run(replica_b.read, "sid-1") == {"user": {"sub": "ann"}}
    replica_a.delete("sid-1")  # sign-out (or back-channel logout) on replica A
    assert anyio.run(replica_b.read, "sid-1") is None
    replica_a.save("sid-2", {"user": {"sub": "bob"}})
    assert replica_a.end_user_sessions("bob", None) == 1  # back-channel logout by subject
    assert anyio.run(replica_b.read, "sid-2") is None
    replica_b.close()
    replica_a.close()


def _stores_on_postgresql(tmp_path, request):
    from guardrails.core import db

    url = db.with_driver(fresh_url("postgresql", tmp_path, request))
    engine = make_engine(url)
    db.create_all(engine)
    return url, SessionStore(make_sessionmaker(engine), max_age=60)


def test_postgresql_sessions_are_read_on_the_event_loop_and_sign_outs_seen_at_once(
    tmp_path, request, monkeypatch
):
    url, replica_a = _stores_on_postgresql(tmp_path, request)
    replica_b = SessionStore(make_sessionmaker(make_engine(url)), max_age=60)
    threaded = []
    monkeypatch.setattr(replica_b, "load", lambda sid: threaded.append(sid))

    async def reads():
        replica_a.save("sid-1", {"user": {"sub": "ann"}})
        first = await replica_b.read("sid-1")
        conn = replica_b._async[2]  # noqa: SLF001 - the event loop's own connection
        replica_a.delete("sid-1")  # sign-out on replica A
        after = await replica_b.read("sid-1")
        replica_a.save("sid-2", {"user": {"sub": "bob"}})
        third = await replica_b.read("sid-2")
        same = replica_b._async[2] is conn  # noqa: SLF001 - one connection, kept
        await replica_b.aclose()
        return first, after, third, same, conn.closed

    first, after, third, same, closed = anyio.run(reads)
    assert first == {"user": {"sub": "ann"}} and after is None and third["user"]["sub"] == "bob"
    assert same and closed and threaded == []  # no read went to a worker thread


def test_a_broken_event_loop_connection_falls_back_to_the_engine_and_reconnects(tmp_path, request):
    url, store = _stores_on_postgresql(tmp_path, request)
    store.save("sid-1", {"user": {"sub": "ann"}})

    async def reads():
        assert (await store.read("sid-1"))["user"]["sub"] == "ann"
        broken = store._async[2]  # noqa: SLF001
        await broken.close()  # as a server restart or a network cut leaves it
        assert (await store.read("sid-1"))["user"]["sub"] == "ann"  # reopened, not an error
        reopened = store._async[2]  # noqa: SLF001
        assert reopened is not broken and not reopened.closed
        # the engine is replaced (a rotated database URL): the next read uses a new connection
        store.maker.configure(bind=make_engine(url))
        assert (await store.read("sid-1"))["user"]["sub"] == "ann"
        assert store._async[2] is not reopened and reopened.closed  # noqa: SLF001
        await store.aclose()

    anyio.run(reads)


def test_a_postgresql_that_refuses_falls_back_to_the_engine_read(tmp_path, request, monkeypatch):
    """When the event loop's read fails, the engine's read in a thread decides: its errors are
    the ones the app turns into its 503 page."""
    import psycopg

    _, store = _stores_on_postgresql(tmp_path, request)
    store.save("sid-1", {"user": {"sub": "ann"}})

    async def refuse(*args, **kwargs):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refuse)
    assert anyio.run(store.read, "sid-1")["user"]["sub"] == "ann"  # read in a thread instead
    assert store._async is None  # noqa: SLF001


def test_a_session_read_that_hangs_is_given_up_with_a_503_and_the_next_reconnects(
    tmp_path, request, monkeypatch
):
    """A PostgreSQL that stops answering mid-read (a network cut without a reset) must not hold
    the request forever: past ASYNC_READ_TIMEOUT_S the read ends in OperationalError (the
    request's 503), not in a read through the engine, which would wait on the same database
    with no time limit in a worker thread. The half-used connection is dropped, never reused,
    and once the database answers again the next read opens a new one."""
    import time

    import psycopg
    from sqlalchemy.exc import OperationalError

    from guardrails.web import sessions
    from guardrails.web.app import database_unavailable

    _, store = _stores_on_postgresql(tmp_path, request)
    store.save("sid-1", {"user": {"sub": "ann"}})
    monkeypatch.setattr(sessions, "ASYNC_READ_TIMEOUT_S", 0.3)
    execute = psycopg.AsyncConnection.execute
    through_the_engine: list[str] = []
    monkeypatch.setattr(store, "load", lambda sid: through_the_engine.append(sid))

    async def hang(self, *args, **kwargs):
        await anyio.sleep(30)

    async def reads():
        assert (await store.read("sid-1"))["user"]["sub"] == "ann"
        held = store._async[2]  # noqa: SLF001
        monkeypatch.setattr(psycopg.AsyncConnection, "execute", hang)
        started = time.monotonic()
        with pytest.raises(OperationalError) as refused:
            await store.read("sid-1")
        waited = time.monotonic() - started
        dropped = held.closed and store._async is None  # noqa: SLF001
        monkeypatch.setattr(psycopg.AsyncConnection, "execute", execute)
        again = await store.read("sid-1")
        return refused.value, waited, dropped, again, store._async[2] is not held  # noqa: SLF001

    refused, waited, dropped, again, new = anyio.run(reads)
    assert database_unavailable(refused) and 0.3 <= waited < 5 and dropped
    assert again["user"]["sub"] == "ann" and new and through_the_engine == []


def _form_app(runtime):
    app = create_app(runtime=runtime)
    router = APIRouter()

    @router.get("/token")
    def token(request: Request, user: User = Depends(require_user)):
        return {"csrf": request.session.get("csrf")}

    @router.post("/upload")
    async def upload(request: Request, user: User = Depends(require_role("admin"))):
        form = await request.form()
        data = await form["file"].read()
        return {"note": form["note"], "size": len(data), "sha": hashlib.sha256(data).hexdigest()}

    @router.post("/form")
    async def form(request: Request, user: User = Depends(require_user)):
        form = await request.form()
        return {"fields": len(form.multi_items()), "note": form.get("note")}

    @router.post("/note")
    def note(request: Request, who: User | None = Depends(current_user)):
        # current_user and require_role share one authentication per request
        return {"who": who.label if who else None}

    app.include_router(router)
    return app


def test_the_route_gets_the_whole_form_after_the_csrf_check(runtime, demo):
    """The token is read from the form in the middleware; the body it read is replayed, in
    memory or (an upload larger than a megabyte) from a temporary file."""
    upload = bytes(range(256)) * 8192  # 2 MiB: beyond what is kept in memory
    with serve(_form_app, runtime) as live, live.client() as client:
        login(client, live, demo["admin"], next_path="/token")
        token = client.get(f"{live.url}/token").json()["csrf"]
        answer = client.post(
            f"{live.url}/upload",
            data={"csrf_token": token, "note": "ünïcode"},
            files={"file": ("blob.bin", upload, "application/octet-stream")},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "note": "ünïcode",
            "size": len(upload),
            "sha": hashlib.sha256(upload).hexdigest(),
        }
        forged = client.post(
            f"{live.url}/upload",
            data={"csrf_token": token + "x", "note": "x"},
            files={"file": ("blob.bin", b"x", "application/octet-stream")},
        )
        assert forged.status_code == 403
        assert forged.headers["x-request-id"] and forged.headers["x-frame-options"] == "DENY"
        by_header = client.post(f"{live.url}/note", headers={"x-csrf-token": token})
        assert by_header.json() == {"who": demo["admin"]}
        assert client.post(f"{live.url}/note").status_code == 403  # no token at all


FORMS = [
    b"csrf_token=abc&x=1",
    b"x=1&csrf_token=first&csrf_token=last",
    b"csrf%5Ftoken=encoded-name",
    b"csrf_token=a+b%2Bc%20d",
    b"&&csrf_token=between-empty-fields&&",
    b"csrf_token",
    b"csrf_token=",
    b"csrf_token=%C3%A9t%C3%A9",
    b"csrf_token=\xe9t\xe9",
    b"csrf_token=a=b",
    b"csrf_token=semi;colon=1",
    b"x=1;csrf_token=not-a-field",
    b"",
    b"=no-name&csrf_token=x",
    b"csrf_token=%zz%4",
    b"csrf+token=plus-name",
    b"CSRF_TOKEN=other-case",
    "&".join([f"f{i}=v" for i in range(FORM_FIELDS - 1)] + ["csrf_token=at-the-limit"]).encode(),
]


def _starlette_form_token(body: bytes):
    """What Starlette's own form parser makes of `body` (the route's view of the form)."""
    from starlette.requests import Request as StarletteRequest

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def parse():
        scope = {"type": "http", "method": "POST", "headers": [(b"content-type", URLENCODED)]}
        return (await StarletteRequest(scope, receive).form()).get("csrf_token")

    return anyio.run(parse)


@pytest.mark.parametrize("body", FORMS)
def test_a_small_forms_token_is_read_as_starlettes_parser_reads_it(body):
    """The middleware scans small url-encoded forms itself (Starlette's parser is slow): it must
    find the token Starlette's parser would, whatever the splitting, escapes or duplicates."""
    assert _urlencoded_field(body, "csrf_token") == _starlette_form_token(body)


def test_a_form_with_too_many_fields_is_left_to_starlettes_parser():
    body = "&".join(f"f{i}=v" for i in range(FORM_FIELDS + 1)).encode()
    assert _urlencoded_field(body, "csrf_token") is _TOO_MANY
    with pytest.raises(Exception, match="Too many fields"):
        _starlette_form_token(body)


def test_url_encoded_forms_small_large_and_too_many_fields(runtime, demo):
    """A small form is checked by the middleware's own scan, a larger one by Starlette's
    parser; either way the route gets the whole form, and a forged or missing token is
    refused. A form with more fields than Starlette allows gets Starlette's 400."""
    with serve(_form_app, runtime) as live, live.client() as client:
        login(client, live, demo["admin"], next_path="/token")
        token = client.get(f"{live.url}/token").json()["csrf"]

        def post(fields):
            headers = {"content-type": "application/x-www-form-urlencoded"}
            return client.post(f"{live.url}/form", content=urlencode(fields), headers=headers)

        small = post([("note", "ünïcode & co"), ("csrf_token", token)])
        assert small.status_code == 200, small.text
        assert small.json() == {"fields": 2, "note": "ünïcode & co"}
        large_note = "x" * (SMALL_FORM + 1000)
        large = post([("note", large_note), ("csrf_token", token)])
        assert large.status_code == 200, large.text
        assert large.json() == {"fields": 2, "note": large_note}
        assert post([("note", "x"), ("csrf_token", token + "x")]).status_code == 403
        assert post([("note", large_note), ("csrf_token", "forged")]).status_code == 403
        assert post([("note", "x")]).status_code == 403
        many = [(f"f{i}", "v") for i in range(FORM_FIELDS)] + [("csrf_token", token)]
        refused = post(many)
        assert refused.status_code == 400
        assert "Too many fields" in refused.text
        assert post(many[1:]).json() == {"fields": FORM_FIELDS, "note": None}


def test_the_scan_reads_no_more_than_it_needs_and_the_route_gets_the_rest():
    """Past SMALL_FORM the middleware stops reading (the rest streams on to Starlette's parser
    and the route); a client that goes away is a ClientDisconnect, as in Starlette's reads."""
    from starlette.requests import ClientDisconnect

    chunks = [bytes([65 + i]) * 10_000 for i in range(10)]

    def messages(items):
        queue = list(items)

        async def receive():
            return queue.pop(0)

        return receive, queue

    receive, queue = messages(
        [{"type": "http.request", "body": c, "more_body": i < 9} for i, c in enumerate(chunks)]
    )

    async def read_all():
        head, complete = await _read_body(receive, 25_000)
        assert (len(head), complete, len(queue)) == (30_000, False, 7)
        replay = _replay_bytes(head, receive, more=True)
        body = b""
        while True:
            message = await replay()
            body += message["body"]
            if not message["more_body"]:
                return body

    assert anyio.run(read_all) == b"".join(chunks)
    receive, _ = messages(
        [{"type": "http.request", "body": b"a=", "more_body": True}, {"type": "http.disconnect"}]
    )
    with pytest.raises(ClientDisconnect):
        anyio.run(_read_body, receive, SMALL_FORM)


def test_the_heap_built_at_start_up_is_frozen_while_the_app_runs(runtime):
    """A full collection walks every tracked object: with the start-up heap frozen it walks
    only what requests made. Shutdown gives the objects back to the collector (a test process
    starts many apps; an app's own cycles must still be collectable once it is gone)."""
    import gc

    with serve(lambda rt: create_app(runtime=rt), runtime):
        frozen = gc.get_freeze_count()
    assert frozen > 10_000, frozen
    assert gc.get_freeze_count() == 0


def test_the_heap_stays_frozen_until_the_last_app_stops_and_no_garbage_is_frozen(
    runtime, tmp_path, idp, manifest
):
    """Two apps in one process: the first to stop leaves the other's heap frozen (it had
    unfrozen the whole process), and garbage left from before the start is collected, not
    frozen for the app's lifetime."""
    import gc
    import weakref

    from guardrails.core.runtime import build_runtime
    from guardrails.testing import test_settings

    class Cycle:
        pass

    other = build_runtime(test_settings(tmp_path / "other", idp), manifest)
    gc.disable()  # no automatic collection in between: only the app's start may free it
    try:
        garbage = Cycle()
        garbage.me = garbage  # unreachable once the name goes: only the collector frees it
        gone = weakref.ref(garbage)
        del garbage
        with serve(lambda rt: create_app(runtime=rt), runtime):
            assert gone() is None
            with serve(lambda rt: create_app(runtime=rt), other):
                pass
            still = gc.get_freeze_count()
    finally:
        gc.enable()
    assert still > 10_000, still
    assert gc.get_freeze_count() == 0


# ---------------------------------------------------------------------- db_session
def _hops(monkeypatch) -> list[str]:
    """Every call to a worker thread from now on (anyio's, which Starlette and FastAPI use)."""
    calls: list[str] = []
    real = anyio.to_thread.run_sync

    async def counted(func, *args, **kwargs):
        calls.append(getattr(func, "__qualname__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return calls


def _db_app(runtime):
    app = _form_app(runtime)  # its /token route answers the session's CSRF token
    router = APIRouter()

    @router.get("/one")
    async def one(db: Session = Depends(db_session), user: User = Depends(require_user)):
        return {"one": db.execute(text("SELECT 1")).scalar()}

    @router.post("/half-done")
    def half_done(db: Session = Depends(db_session), user: User = Depends(require_user)):
        db.execute(text("CREATE TABLE IF NOT EXISTS t_half (x INTEGER)"))
        db.commit()
        db.execute(text("INSERT INTO t_half VALUES (1)"))  # never committed: the route fails
        raise RuntimeError("the route failed after writing")

    @router.get("/count")
    def count(db: Session = Depends(db_session), user: User = Depends(require_user)):
        return {"rows": db.execute(text("SELECT count(*) FROM t_half")).scalar()}

    @router.post("/refuse")
    def refuse(db: Session = Depends(db_session), user: User = Depends(require_user)):
        db.begin()  # left open: the refusal recorded in it is written when it ends, at close
        audit.record("thing.refuse", result="denied", resource=("thing", 1))
        return {"refused": True}

    app.include_router(router)
    return app


def test_db_session_takes_no_worker_thread_on_sqlite_and_gives_every_connection_back(
    runtime, demo, monkeypatch
):
    """`db_session` is made on the event loop (no connection until its first query) and, on a
    SQLite file, closed there: an async route that reads pays no hop to a worker thread, where
    FastAPI's sync generator would pay two. A failed route's write is rolled back at close, the
    write gate is free again, and no connection stays checked out."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("the SQLite path (MICROAPP_TEST_DATABASE_URL names a server)")
    with serve(_db_app, runtime) as live, live.client() as client:
        login(client, live, demo["admin"], next_path="/one")  # and the app is warm
        hops = _hops(monkeypatch)
        assert client.get(f"{live.url}/one").json() == {"one": 1}
        assert hops == []
        csrf = client.get(f"{live.url}/token").json()["csrf"]
        answer = client.post(f"{live.url}/half-done", headers={"x-csrf-token": csrf})
        assert answer.status_code == 500
        assert client.get(f"{live.url}/count").json() == {"rows": 0}  # rolled back
        _eventually(lambda: runtime.engine.pool.checkedout() == 0)  # closed after the answer
        with runtime.engine.begin() as conn:  # the write gate was given back: no wait, no error
            conn.execute(text("INSERT INTO t_half VALUES (2)"))
        # A transaction whose end writes (a refusal recorded in it) is not ended on the loop:
        # that write waits for the write gate and an fsync.
        del hops[:]
        answer = client.post(f"{live.url}/refuse", headers={"x-csrf-token": csrf})
        assert answer.json() == {"refused": True}
        _eventually(lambda: "Session.close" in hops)
        refusal = [("thing.refuse", "denied")]
        _eventually(
            lambda: [(e["action"], e["result"]) for e in live.audit_events()[-1:]] == refusal
        )
        _eventually(lambda: runtime.engine.pool.checkedout() == 0)


def _eventually(check, seconds: float = 5.0) -> None:
    """`check()` becomes true within `seconds` (a dependency's exit runs after the answer)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_db_session_on_postgresql_is_closed_in_a_thread_even_when_the_request_is_cancelled(
    tmp_path, request, monkeypatch
):
    """PostgreSQL's close is a ROLLBACK round trip: in a worker thread, not on the event loop,
    and shielded, so that a request cancelled meanwhile (the client went away) still gives
    its connection back to the pool."""
    engine = make_engine(db.with_driver(fresh_url("postgresql", tmp_path, request)))
    maker = make_sessionmaker(engine)
    state = SimpleNamespace(guardrails=SimpleNamespace(sessionmaker=maker))
    fake = SimpleNamespace(app=SimpleNamespace(state=state))
    hops = _hops(monkeypatch)

    async def requests():
        untouched = db_session(fake)
        await untouched.__anext__()  # a route that never queried: nothing to give back
        await untouched.aclose()
        assert hops == []
        with anyio.CancelScope() as scope:
            used = db_session(fake)
            session = await used.__anext__()
            assert session.execute(text("SELECT 1")).scalar() == 1
            assert engine.pool.checkedout() == 1
            scope.cancel()  # the client went away before the dependency's exit
            await used.aclose()
        assert hops == ["Session.close"]

    anyio.run(requests)
    assert engine.pool.checkedout() == 0
    engine.dispose()


def test_db_session_closes_without_waiting_for_a_worker_thread_the_routes_hold(tmp_path, request):
    """Every worker thread may be held by a route waiting for a database connection while the
    request that holds the connection waits to close it: the close must not queue for those
    threads (a limiter of its own, as FastAPI gives a sync dependency's exit). Scaled down: one
    worker thread, one connection; the second request gets it once the first one closes."""
    url = db.with_driver(fresh_url("postgresql", tmp_path, request))
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=5)
    app = FastAPI()
    app.state.guardrails = SimpleNamespace(sessionmaker=sessionmaker(bind=engine))

    @app.get("/q")
    def query(db: Session = Depends(db_session)):
        value = db.execute(text("SELECT 1")).scalar()
        time.sleep(0.3)  # the route's own work, holding its thread and the connection
        return {"value": value}

    async def two_requests():
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1  # this loop's only
        answers = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:

            async def one(name: str, delay: float) -> None:
                await anyio.sleep(delay)
                started = time.monotonic()
                answer = await client.get("/q")
                answers[name] = (answer.status_code, time.monotonic() - started)

            async with anyio.create_task_group() as group:
                group.start_soon(one, "first", 0)
                group.start_soon(one, "second", 0.1)
        return answers

    answers = anyio.run(two_requests)
    assert answers["first"][0] == answers["second"][0] == 200, answers
    assert answers["second"][1] < 3, answers  # not after the pool's 5 s timeout
    assert engine.pool.checkedout() == 0
    engine.dispose()
