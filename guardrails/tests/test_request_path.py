"""The GET path of issue 17: what the one middleware does cheaply must still be right.

The session read on a SQLite file runs on the event loop without a cache, so a sign-out seen by
one process is seen by every other at once; the CSRF check reads a form's token and the route
still gets the whole body; the role dependencies are plain calls that authenticate once.
"""

import hashlib

import anyio
from fastapi import APIRouter, Depends, Request

from guardrails import User, create_app, current_user, require_role, require_user
from guardrails.core.db import make_engine, make_sessionmaker
from guardrails.testing import login, serve
from guardrails.web.sessions import SessionStore


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
