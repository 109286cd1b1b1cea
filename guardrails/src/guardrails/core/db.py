"""Database: one SQLAlchemy 2 engine per app, SQLite by default, DATABASE_URL switches.

App models subclass `Model`; `guardrails.db_session` (guardrails.web.deps) is the FastAPI
dependency that yields a Session. Guardrails' own tables (sessions, the audit chain and its
delivery cursors) subclass `GuardrailsModel`, whose metadata is separate, so that the owner's
migrations (`migrations/`, Alembic) never see them and guardrails migrates them on its own
(guardrails.core.migrate).

On SQLite, writers queue in-process for the file's write gate (guardrails.core.db_writers)
before they reach SQLite's lock, instead of sleeping in its busy handler. SQLite runs in WAL
mode (readers never block the writer) with `synchronous=FULL`: each commit is fsynced before it
returns, so a committed change, and its audit event, survives a power cut.

Every engine pings a pooled connection before use (`pool_pre_ping`), so that after a database
restart the next request gets a fresh connection instead of an error: the app recovers without
a restart. A database that cannot be reached raises `sqlalchemy.exc.OperationalError` (a
`DBAPIError`), which the web app maps to a 503 page.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from guardrails.core.db_writers import BUSY_TIMEOUT_S, GatedConnection, in_memory

SQLITE_POOL = 40  # connections kept open to a SQLite file (each opened when first needed)
SQLITE_MMAP = 64 * 1024 * 1024  # bytes of a SQLite file read through a memory map
# PostgreSQL connections kept per process, and opened beyond them at busy moments (closed when
# returned). SQLAlchemy's default of 5 kept was below what 8 requests at once check out, so a
# busy app opened and closed a connection per request (a TCP and authentication handshake each).
# Every replica can hold up to the sum, plus one for session reads (guardrails.web.sessions):
# size PostgreSQL's max_connections for (replicas x 21) + the migration Job.
PG_POOL, PG_OVERFLOW = 10, 10

# libpq's time limits for a PostgreSQL that stops answering without closing the connection (a
# network cut, a primary that failed over): an attempt to connect gives up after
# connect_timeout seconds; a connection whose peer is gone is found by TCP keepalives (after
# 30 s idle, 3 probes 10 s apart) while it waits for an answer, and dropped after
# tcp_user_timeout ms when what it sent stays unacknowledged. Without them a query on a dead
# connection waits for the operating system's defaults (keepalives after two hours), holding a
# worker thread and a pool connection. Every connection to PostgreSQL takes them: the app's
# engine, its session reads, its SQL connectors. A libpq parameter in the URL's query string
# wins (postgresql://...?keepalives_idle=60).
PG_TIME_LIMITS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def postgresql_time_limits(url: str | URL) -> dict[str, str]:
    """PG_TIME_LIMITS, without those the URL sets itself."""
    query = make_url(url).query
    return {key: value for key, value in PG_TIME_LIMITS.items() if key not in query}


class Model(DeclarativeBase):
    """Base class of every table of the app's own data (the owner's models)."""


class GuardrailsModel(DeclarativeBase):
    """Base class of guardrails' own tables (template-owned; migrated by guardrails)."""


def create_all(engine: Engine) -> None:
    """Create every missing table, guardrails' and the app's (tests and throw-away databases;
    real databases are migrated: `python -m guardrails db upgrade`)."""
    GuardrailsModel.metadata.create_all(engine)
    Model.metadata.create_all(engine)


def with_driver(url: str) -> str:
    """`postgresql://` means psycopg 3, the driver guardrails installs (the one mapping)."""
    return "postgresql+psycopg://" + url[13:] if url.startswith("postgresql://") else url


def make_engine(database_url: str) -> Engine:
    """The app's engine. Its errors never quote the statement's values (`hide_parameters`): a
    failed query's message reaches the logs with its traceback, and the values are people's data,
    session contents and audit events."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        file = not in_memory(url.database) and "mode=memory" not in str(url)
        if file:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # A file database keeps as many connections as requests run at once (anyio's 40
        # worker threads): one beyond the pool is closed when returned, and the next starts with
        # an empty page cache and reads every page again - a cost that grows with the data.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "factory": GatedConnection},
            pool_pre_ping=True,
            hide_parameters=True,
            **({"pool_size": SQLITE_POOL} if file else {}),
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # foreign keys on; readers never block the writer
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # durable commits (WAL's NORMAL is not)
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")  # other processes
            # Reads through the operating system's page cache, shared by every connection,
            # instead of each of the pool's connections keeping its own copy of the pages it
            # read (2 MB each by default): at 100,000 rows the list page served 0.84 of its
            # 10-row throughput with it, 0.71 without (docs/performance.md). Writes still go
            # through write(); a full disk fails a commit, not a read.
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP}")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=PG_POOL,
        max_overflow=PG_OVERFLOW,
        hide_parameters=True,
        connect_args=postgresql_time_limits(url),
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
