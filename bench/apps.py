"""The two ASGI apps the load benchmark compares (imported by uvicorn in the app's venv).

`guarded()` is a generated app exactly as `make dev` / production build it (`app.main:build`,
configured by the environment: session check, CSRF, audit, telemetry all on), plus three bench
routes. `bare()` is a plain FastAPI app with the same three routes and nothing else. The route
bodies are shared, so the difference between the two is what the guardrails cost:

    GET  /bench/hello   a constant HTML string (the guardrails' overhead, undiluted)
    GET  /bench/page    20 rows from SQLite + a Jinja template (a typical micro-app page)
    POST /bench/action  a form post that stores one row (a "submit"); the guarded one also
                        checks CSRF and records the audit event in the row's transaction

Only for the benchmark: nothing here is part of the template.
"""

import os
import threading
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, select_autoescape
from sqlalchemy import Engine, Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

PAGE = Environment(autoescape=select_autoescape(default=True)).from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
</head><body><header>Signed in as {{ user }}</header><main><h1>{{ title }}</h1>
<table><thead><tr><th>#</th><th>Title</th><th>Status</th><th>Owner</th></tr></thead><tbody>
{% for row in rows %}<tr><td>{{ row.id }}</td><td>{{ row.title }}</td><td>{{ row.status }}</td>
<td>{{ row.owner }}</td></tr>
{% endfor %}</tbody></table></main></body></html>"""
)
HELLO = "<!doctype html><title>hello</title><p>hello</p>"
ROWS = 20


def _item_columns(base: type) -> type:
    class BenchItem(base):
        __tablename__ = "bench_item"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        title: Mapped[str] = mapped_column(String(120))
        status: Mapped[str] = mapped_column(String(16))
        owner: Mapped[str] = mapped_column(String(254))

    return BenchItem


def _seed(maker: sessionmaker[Session], item: type) -> None:
    with maker.begin() as db:
        if db.scalar(select(item.id).limit(1)) is None:
            db.add_all(
                item(title=f"Request {i} <&>", status="submitted", owner=f"user{i}@example.com")
                for i in range(1, ROWS + 1)
            )


def _note_columns(base: type) -> type:
    class BenchNote(base):
        __tablename__ = "bench_note"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        note: Mapped[str] = mapped_column(String(200))

    return BenchNote


def _page(db: Session, item: type, user: str) -> HTMLResponse:
    rows = db.scalars(select(item).order_by(item.id).limit(ROWS)).all()
    return HTMLResponse(PAGE.render(title="Requests", user=user, rows=rows))


# ------------------------------------------------------------------------- the bare app
class BareModel(DeclarativeBase):
    pass


BareItem = _item_columns(BareModel)
BareNote = _note_columns(BareModel)


def bare() -> FastAPI:
    """Plain FastAPI: same routes, same SQLite settings, no guardrails at all."""
    from guardrails.core.db import make_engine, make_sessionmaker  # same engine settings (WAL...)

    engine: Engine = make_engine(os.environ["DATABASE_URL"])
    BareModel.metadata.create_all(engine)
    maker = make_sessionmaker(engine)
    _seed(maker, BareItem)

    def db_session() -> Iterator[Session]:
        with maker() as session:
            yield session

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bench/hello")
    def hello() -> HTMLResponse:
        return HTMLResponse(HELLO)

    @app.get("/bench/page")
    def page(db: Annotated[Session, Depends(db_session)]) -> HTMLResponse:
        return _page(db, BareItem, "bench@example.com")

    @app.post("/bench/action")
    def action(
        db: Annotated[Session, Depends(db_session)], note: Annotated[str, Form()] = ""
    ) -> JSONResponse:
        with db.begin():
            db.add(BareNote(note=note[:200]))
        return JSONResponse({"ok": True, "note": len(note)})

    return app


# ------------------------------------------------------------------------- the guarded app
class Timings:
    """How long each `audit.record` of the bench's POST took (for /bench/audit-stats): the
    event and its append to the chain inside the row's transaction (the chain's lock, the hash,
    the event row; on PostgreSQL the wait for the chain's head row too)."""

    def __init__(self):
        self.durations: list[float] = []
        self.lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self.lock:
            self.durations.append(seconds)

    def take(self) -> list[float]:
        with self.lock:
            out, self.durations = self.durations, []
        return out


def guarded() -> FastAPI:
    """The generated app as production builds it (environment-configured), plus bench routes."""
    from app.main import build  # the kind's own app: every guardrail and the owner's routes
    from guardrails.web.app import csrf_token  # internal: the bench echoes it as a browser does

    from guardrails import User, audit, db_session, require_user

    class BenchModel(DeclarativeBase):  # not the owner's Model: their migrations never see it
        pass

    item, note_row = _item_columns(BenchModel), _note_columns(BenchModel)
    app = build()
    gr = app.state.guardrails
    gr.ensure_tables()  # the app's migrations first: a table they do not know would be "adopted"
    item.__table__.create(gr.runtime.engine, checkfirst=True)
    note_row.__table__.create(gr.runtime.engine, checkfirst=True)
    _seed(gr.sessionmaker, item)
    timings = Timings()
    router = APIRouter(prefix="/bench")
    Member = Annotated[User, Depends(require_user)]

    @router.get("/hello")
    def hello(user: Member) -> HTMLResponse:
        return HTMLResponse(HELLO)

    @router.get("/page")
    def page(user: Member, db: Annotated[Session, Depends(db_session)]) -> HTMLResponse:
        return _page(db, item, user.id)

    @router.post("/action")
    def action(
        user: Member, db: Annotated[Session, Depends(db_session)], note: Annotated[str, Form()] = ""
    ) -> JSONResponse:
        with db.begin():  # the change and its event commit together
            row = note_row(note=note[:200])
            db.add(row)
            db.flush()
            started = time.perf_counter()
            audit.record("bench.action", resource=("note", row.id), metadata={"note": len(note)})
            timings.add(time.perf_counter() - started)
        return JSONResponse({"ok": True, "note": len(note)})

    @router.get("/csrf")
    def csrf(request: Request, user: Member) -> dict[str, str]:
        """The session's CSRF token (the benchmark's form posts echo it, as a browser does)."""
        return {"csrf_token": csrf_token(request)}

    @router.get("/audit-stats")
    def audit_stats(user: Member) -> dict[str, list[float]]:
        return {"append_seconds": timings.take()}

    app.include_router(router)
    return app
