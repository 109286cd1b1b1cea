"""SQL connector: SQLAlchemy over a database URL that comes from a secret.

    rows = connector("hr-db").query("SELECT name, email FROM staff WHERE id = :id", id=42)
    rows[0]["email"]      # already masked by the connector's `masking:` rules
    connector("hr-db").execute("UPDATE staff SET seen = :now WHERE id = :id", now=t, id=42)

- Parameters only: values travel as bind parameters (`:name`), never inside the SQL text. A
  quoted literal, a dollar-quoted string or a second statement is refused (QueryRefused).
- `query()` always runs read-only: on PostgreSQL inside `SET TRANSACTION READ ONLY`; on SQLite
  under an authorizer that allows reading only. `access: read-only` connectors add a database
  opened read-only (SQLite `mode=ro`; PostgreSQL `default_transaction_read_only`) and refuse
  `execute()`. A refused write is audited (`connector.write`, result denied). Keep the database
  account read-only as well: the connector is the second line, not the only one.
- `timeout_seconds` (default 10) cancels a slow statement; `max_rows` (default 1000) caps the
  rows returned (`rows.truncated` tells). Masking (guardrails.connectors.masking) runs before
  rows leave.
- The URL is re-read through the secret cache on each call: a rotated password is picked up.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from typing import Any
from urllib.parse import quote

import structlog
from opentelemetry import trace
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql.expression import Executable

from guardrails.auditing.log import audit
from guardrails.connectors.errors import (
    ConnectorError,
    ConnectorUnavailable,
    QueryRefused,
    refuse,
)
from guardrails.connectors.masking import Masker
from guardrails.core.context import current_request
from guardrails.core.db import postgresql_time_limits, with_driver
from guardrails.core.db_writers import in_memory

log = structlog.get_logger("guardrails.sql_connector")
# What a read-only SQLite statement may do (sqlite3 authorizer action codes).
SQLITE_READING = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
    sqlite3.SQLITE_TRANSACTION,
}
DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_]*\$")


class Rows(list):
    """Masked result rows (dicts), with `columns` and `truncated` (more than max_rows)."""

    def __init__(self, rows: list[dict[str, Any]], columns: list[str], truncated: bool):
        super().__init__(rows)
        self.columns = columns
        self.truncated = truncated


def check_sql(sql: str) -> None:
    """Refuse SQL text that carries values or more than one statement."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            i = sql.find("\n", i)
            i = n if i < 0 else i
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == '"':  # a quoted identifier
            end = sql.find('"', i + 1)
            i = n if end < 0 else end + 1
        elif ch == "'" or DOLLAR_QUOTE.match(sql, i):
            raise QueryRefused(
                "values must be bind parameters, not text inside the SQL: write "
                "`WHERE name = :name` and pass name=... (a quoted literal was found)"
            )
        elif ch == ";":
            if sql[i + 1 :].strip():
                raise QueryRefused("one statement per call: the SQL text contains ';' mid-way")
            i = n
        else:
            i += 1


def _sqlite_authorizer(action, *_args) -> int:
    return sqlite3.SQLITE_OK if action in SQLITE_READING else sqlite3.SQLITE_DENY


def _sqlite_no_attach(action, *_args) -> int:
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else 0


class SqlConnector:
    """One declared `type: sql` connector."""

    def __init__(self, spec: dict[str, Any], registry):
        self.name = spec["name"]
        self.registry = registry
        self.read_only = spec["access"] == "read-only"
        self.timeout = float(spec.get("timeout_seconds", 10))
        self.max_rows = int(spec.get("max_rows", 1000))
        self.masker = Masker(spec.get("masking") or {}, registry.masking_key)
        self.unmasked_for = frozenset(spec.get("unmasked_for") or ())
        self.secret_name = registry.secret_name(spec)
        self._engine: Engine | None = None
        self._url: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ engine
    def _make_engine(self, raw_url: str) -> Engine:
        url = make_url(with_driver(raw_url))
        backend = url.get_backend_name()
        if backend == "sqlite":
            database = url.database or ""
            if self.read_only:
                if in_memory(database):
                    raise ConnectorError(f"{self.name}: a read-only SQLite connector needs a file")
                url = URL.create(
                    "sqlite",
                    database=f"file:{quote(database)}",
                    query={"mode": "ro", "uri": "true"},
                )
            engine = create_engine(url, hide_parameters=True)
            guard = _sqlite_authorizer if self.read_only else _sqlite_no_attach

            @event.listens_for(engine, "connect")
            def _on_connect(conn, _record):
                conn.set_authorizer(guard)

            return engine
        if backend == "postgresql":
            options = postgresql_time_limits(url)
            if self.read_only:
                options["options"] = "-c default_transaction_read_only=on"
            return create_engine(
                url, hide_parameters=True, pool_pre_ping=True, connect_args=options
            )
        raise ConnectorError(
            f"{self.name}: {backend} is not supported; the sql connector enforces its rules on "
            "SQLite and PostgreSQL"
        )

    def engine(self) -> Engine:
        """The engine for the current URL (re-read through the secret cache)."""
        url = self.registry.secrets.get(self.secret_name)
        with self._lock:
            if url != self._url or self._engine is None:
                old, self._engine, self._url = self._engine, self._make_engine(url), url
                if old is not None:
                    log.info("database URL changed (rotated): new connections", connector=self.name)
                    old.dispose()
            return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # ------------------------------------------------------------------ running
    def _statement(self, sql: str | Executable):
        if isinstance(sql, str):
            check_sql(sql)
            return text(sql), sql
        if isinstance(sql, Executable):
            return sql, str(sql)
        raise QueryRefused("pass SQL text with :parameters, or a SQLAlchemy statement")

    def _run(self, sql, params: dict[str, Any], *, reading: bool):
        statement, shown = self._statement(sql)
        operation = shown.strip().split(None, 1)[0].upper() if shown.strip() else ""
        tracer = self.registry.tracer
        with tracer.start_as_current_span(f"connector {self.name} {operation}".strip()) as span:
            span.set_attribute("microapp.connector.name", self.name)
            span.set_attribute("microapp.connector.type", "sql")
            span.set_attribute("db.operation.name", operation)
            span.set_attribute("db.query.text", shown[:1000])
            engine = self.engine()
            span.set_attribute("db.system.name", engine.dialect.name)
            try:
                return self._execute(engine, statement, params, reading, operation, span)
            except DBAPIError as exc:
                raise self._translate(exc, operation, span) from None
            except SQLAlchemyError as exc:  # e.g. a missing bind parameter
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise ConnectorError(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def _execute(self, engine: Engine, statement, params, reading: bool, operation: str, span):
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            sqlite = engine.dialect.name == "sqlite"
            deadline = time.monotonic() + self.timeout
            if sqlite:
                raw.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
                if reading:
                    raw.set_authorizer(_sqlite_authorizer)
            try:
                with conn.begin() as tx:
                    if not sqlite:
                        if reading:
                            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                        conn.exec_driver_sql(
                            f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}"
                        )
                    # A server-side cursor streams big results (PostgreSQL takes SELECT only).
                    streaming = reading and operation in ("SELECT", "WITH", "VALUES", "TABLE")
                    result = conn.execution_options(stream_results=streaming).execute(
                        statement, params
                    )
                    if not reading:
                        count = result.rowcount
                        audit.record(
                            "connector.write",
                            resource=("connector", self.name),
                            metadata={"operation": operation, "rows": count},
                        )
                        return count
                    columns = list(result.keys()) if result.returns_rows else []
                    fetched = result.fetchmany(self.max_rows + 1) if columns else []
                    tx.rollback()  # reading never commits
            finally:
                if sqlite:
                    raw.set_progress_handler(None, 0)
                    raw.set_authorizer(_sqlite_authorizer if self.read_only else _sqlite_no_attach)
        truncated = len(fetched) > self.max_rows
        if truncated:
            log.warning("row limit reached", connector=self.name, max_rows=self.max_rows)
        span.set_attribute("db.response.returned_rows", min(len(fetched), self.max_rows))
        span.set_attribute("microapp.connector.truncated", truncated)
        kept = fetched[: self.max_rows]
        if self._caller_sees_clear_text():
            span.set_attribute("microapp.connector.masked", False)
            return Rows([dict(zip(columns, row, strict=True)) for row in kept], columns, truncated)
        span.set_attribute("microapp.connector.masked", True)
        return Rows(self.masker.apply(columns, kept), columns, truncated)

    def _caller_sees_clear_text(self) -> bool:
        """True only when the signed-in caller holds a role listed in `unmasked_for`."""
        info = current_request()
        roles = set(info.actor.roles) if info is not None and info.actor is not None else set()
        return bool(self.unmasked_for & roles)

    def _translate(self, exc: DBAPIError, operation: str, span) -> ConnectorError:
        orig = exc.orig
        message = str(orig).lower()
        sqlstate = getattr(orig, "sqlstate", None)
        span.set_status(trace.Status(trace.StatusCode.ERROR, sqlstate or type(orig).__name__))
        writes = ("readonly", "not authorized", "data-modifying")
        if sqlstate == "25006" or any(word in message for word in writes):
            what = operation or "statement"
            message = (
                f"{self.name} is read-only: the {what} tried to change data and was refused"
                if self.read_only
                else f"{self.name}: query() only reads; the {what} was refused (use execute())"
            )
            return refuse(self.name, "write", message, operation=operation)
        if sqlstate == "57014" or message == "interrupted":
            return ConnectorUnavailable(
                f"{self.name}: the query took longer than {self.timeout:g} s and was cancelled"
            )
        if exc.connection_invalidated or sqlstate in ("08001", "08006") or "connect" in message:
            return ConnectorUnavailable(f"{self.name}: the database cannot be reached")
        return ConnectorError(f"{self.name}: {type(orig).__name__}: {orig}")

    # ------------------------------------------------------------------ public
    def query(self, sql: str | Executable, **params: Any) -> Rows:
        """Read: rows as dicts (masked), at most max_rows. Never changes data."""
        return self._run(sql, params, reading=True)

    def execute(self, sql: str | Executable, **params: Any) -> int:
        """Write (read-write connectors only): runs, audits `connector.write`, commits."""
        if self.read_only:
            statement = sql if isinstance(sql, str) else str(sql)
            operation = statement.strip().split(None, 1)[0].upper() if statement.strip() else ""
            raise refuse(
                self.name,
                "write",
                f"{self.name} is declared read-only in microapp.yaml: writes are refused",
                operation=operation,
            )
        return self._run(sql, params, reading=False)
