"""Server-side sessions: the browser holds only a signed, random session id.

The session data (the user's claims, and during sign-in the OAuth state, nonce and PKCE
verifier) stays in the app's database. A cookie whose signature does not verify is ignored and
counted as tampering. The app's one middleware (guardrails.web.app) exposes the data as
`request.session`, so libraries that expect Starlette sessions (authlib's client) work unchanged.

Reading a session is the one database access of every signed-in request, so it is cheap: a
primary-key read on a connection of its own, on the event loop, without a hop to a worker thread
or a checkout from the engine's pool. On a local SQLite file (WAL mode, where a reader never
waits for a writer) that is a sqlite3 connection; on PostgreSQL, psycopg's asyncio connection in
autocommit (one round trip, no BEGIN or ROLLBACK), opened with the engine's own connect
arguments and opened again when the engine is replaced (a rotated URL) or the connection breaks.
Whatever that reader cannot do (another database, a failed read) is done in a worker thread
through the engine, whose errors the app turns into its 503 page. Either way it reads the
database on every request, so a sign-out or a back-channel logout on one replica ends the
session on every replica at once: there is no cache to go stale.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from typing import Any

import anyio.to_thread
import structlog
from itsdangerous import BadSignature, Signer
from sqlalchemy import Engine, Float, String, Text, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from guardrails.core.db import GuardrailsModel, postgresql_time_limits
from guardrails.core.db_writers import in_memory
from guardrails.core.housekeeping import schedule

log = structlog.get_logger("guardrails.sessions")
PURGE_BATCH = 1000
SESSIONS_PURGE_EVERY = 300  # seconds between runs of the expired-session purge


class SessionRow(GuardrailsModel):
    __tablename__ = "guardrails_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


_TABLE = SessionRow.__table__
_LOAD = select(_TABLE.c.data, _TABLE.c.expires_at).where(_TABLE.c.id == bindparam("sid"))
_LOAD_SQLITE = str(_LOAD.compile(dialect=sqlite.dialect()))  # the same query, for sqlite3 itself
_LOAD_PG = str(_LOAD.compile(dialect=postgresql.psycopg.dialect()))  # and for psycopg itself
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}  # one-statement reads need no transaction
ASYNC_READ_TIMEOUT_S = 10  # the longest an event-loop read may wait: then the request is a 503
INLINE_BUSY_MS = 50  # the longest an inline read may wait for a lock before a thread takes over


class SessionData(dict):
    """A dict that remembers whether it changed and whether its id must be renewed."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.modified = False
        self.renew = False

    def __setitem__(self, key, value):
        self.modified = True
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.modified = True
        super().__delitem__(key)

    def pop(self, *args):
        self.modified = True
        return super().pop(*args)

    def update(self, *args, **kwargs):
        self.modified = True
        super().update(*args, **kwargs)

    def clear(self):
        self.modified = True
        super().clear()

    def setdefault(self, key, default=None):
        if key not in self:
            self.modified = True
        return super().setdefault(key, default)

    def regenerate(self) -> None:
        """Issue a new session id at the end of this request (call after sign-in)."""
        self.renew = True
        self.modified = True


_FAILED = object()  # a read the event loop's connection could not make


async def _close_quietly(conn: Any) -> None:
    try:
        await conn.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close: it is dropped
        log.debug("closing a broken session reader failed")


def _live(row: Any) -> dict[str, Any] | None:
    if row is None or row[1] < time.time():
        return None
    return json.loads(row[0])


class SessionStore:
    def __init__(self, maker: sessionmaker[Session], max_age: int):
        self.maker = maker
        self.max_age = max_age
        self._reader: tuple[Engine, sqlite3.Connection | None] | None = None
        self._reader_lock = threading.Lock()
        self._async: tuple[Engine, asyncio.AbstractEventLoop, Any] | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def load(self, sid: str) -> dict[str, Any] | None:
        """The session's data, or None when there is none or it expired (blocking).

        One statement in autocommit: no BEGIN before it and no ROLLBACK when the connection
        goes back to the pool (two round trips to PostgreSQL fewer than a transaction)."""
        with self.maker.kw["bind"].connect() as conn:
            conn.execution_options(**AUTOCOMMIT)  # before anything runs: no transaction begins
            return _live(conn.execute(_LOAD, {"sid": sid}).first())

    async def read(self, sid: str) -> dict[str, Any] | None:
        """`load` for the event loop: inline on a local SQLite file, on psycopg's asyncio
        connection for PostgreSQL, else (or when that read fails) in a worker thread. A
        PostgreSQL that does not answer within ASYNC_READ_TIMEOUT_S raises OperationalError
        (the request's 503)."""
        conn = self._inline_connection()
        if conn is not None:
            try:
                with self._reader_lock:
                    row = conn.execute(_LOAD_SQLITE, (sid,)).fetchone()
            except sqlite3.Error as exc:  # locked, gone, another thread's: the usual way
                log.warning("inline session read failed; reading in a thread", error=str(exc))
                self.close()
            else:
                return _live(row)
        engine = self.maker.kw.get("bind")
        if engine is not None and engine.dialect.name == "postgresql":
            row = await self._read_postgresql(engine, sid)
            if row is not _FAILED:
                return _live(row)
        return await anyio.to_thread.run_sync(self.load, sid)

    async def _read_postgresql(self, engine: Engine, sid: str) -> Any:
        """The row from this event loop's own psycopg connection; _FAILED when it could not be
        read that way (the caller reads it in a thread, through the engine); OperationalError
        when the database did not answer in time."""
        conn = None
        try:
            async with asyncio.timeout(ASYNC_READ_TIMEOUT_S):  # psycopg's async is asyncio's
                conn = await self._postgresql_connection(engine)
                cursor = await conn.execute(_LOAD_PG, {"sid": sid})
                return await cursor.fetchone()
        except BaseException as exc:  # a cancelled read may leave it mid-query: never reuse it
            if self._async is not None and self._async[2] is conn:
                self._async = None
            if conn is not None:
                await _close_quietly(conn)
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, TimeoutError):
                # The database took ASYNC_READ_TIMEOUT_S without answering: a read through the
                # engine would wait on the same database, with no time limit, holding a worker
                # thread. A 503 now; the next request opens a new connection.
                raise OperationalError(_LOAD_PG, None, exc) from exc
            log.warning("session read on the event loop failed; read in a thread", error=str(exc))
            return _FAILED

    async def _postgresql_connection(self, engine: Engine) -> Any:
        """This event loop's connection for `engine`, opened once (one opener at a time)."""
        loop = asyncio.get_running_loop()
        if (conn := self._held(engine, loop)) is not None:
            return conn
        lock = self._opening
        if lock is None or lock[0] is not loop:
            lock = self._opening = (loop, asyncio.Lock())
        async with lock[1]:
            if (conn := self._held(engine, loop)) is not None:  # opened while this one waited
                return conn
            import psycopg  # the driver guardrails installs for PostgreSQL (guardrails.core.db)

            args, params = engine.dialect.create_connect_args(engine.url)
            for key, value in postgresql_time_limits(engine.url).items():  # as the engine's
                params.setdefault(key, value)
            conn = await psycopg.AsyncConnection.connect(*args, **params, autocommit=True)
            old, self._async = self._async, (engine, loop, conn)
            if old is not None and old[1] is loop:
                await _close_quietly(old[2])
            return conn

    def _held(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> Any:
        """The open connection this event loop holds for `engine`, if any."""
        held = self._async
        if held is not None and held[0] is engine and held[1] is loop and not held[2].closed:
            return held[2]
        return None

    def _inline_connection(self) -> sqlite3.Connection | None:
        """The connection of the inline reads, opened once per engine (the URL may be rotated);
        None when the database is not a SQLite file in WAL mode."""
        engine = self.maker.kw.get("bind")
        reader = self._reader
        if reader is not None and reader[0] is engine:
            return reader[1]
        self.close()
        conn = None
        database = engine.url.database if engine is not None else None
        if engine is not None and engine.dialect.name == "sqlite" and not in_memory(database):
            conn = self._open_reader(engine)
        self._reader = (engine, conn)
        return conn

    @staticmethod
    def _open_reader(engine: Engine) -> sqlite3.Connection | None:
        proxied = engine.raw_connection()  # the engine's connect-time settings (WAL, ...)
        conn = proxied.driver_connection
        proxied.detach()  # ours alone: it never counts against, or waits for, the pool
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            conn.execute(f"PRAGMA busy_timeout={INLINE_BUSY_MS}")
        except sqlite3.Error:
            mode = None
        if str(mode).lower() != "wal":  # readers would wait for writers: not on the loop
            conn.close()
            return None
        return conn

    def close(self) -> None:
        """Close the inline reader's connection (a new one is opened when needed)."""
        reader, self._reader = self._reader, None
        if reader is not None and reader[1] is not None:
            reader[1].close()

    async def aclose(self) -> None:
        """Close every reader connection, the event loop's too (at the app's shutdown)."""
        self.close()
        held, self._async = self._async, None
        if held is not None and held[1] is asyncio.get_running_loop():
            await _close_quietly(held[2])

    def save(self, sid: str, data: dict[str, Any]) -> None:
        with self.maker.begin() as db:
            row = db.get(SessionRow, sid)
            payload = json.dumps(data, separators=(",", ":"))
            expires = time.time() + self.max_age
            if row is None:
                db.add(SessionRow(id=sid, data=payload, expires_at=expires))
            else:
                row.data, row.expires_at = payload, expires

    def delete(self, sid: str) -> None:
        with self.maker.begin() as db:
            db.execute(delete(SessionRow).where(SessionRow.id == sid))

    def end_user_sessions(self, sub: str | None, sid: str | None) -> int:
        """Delete the sessions of the provider session `sid` (with `sub`, when both are
        given), or every session of user `sub` (back-channel logout); returns how many.

        Reads each live session: fine for the few sessions a micro app holds."""
        ended = []
        with self.maker.begin() as db:
            rows = db.execute(
                select(SessionRow.id, SessionRow.data).where(SessionRow.expires_at >= time.time())
            )
            for row_id, payload in rows:
                data = json.loads(payload)
                user_sub = (data.get("user") or {}).get("sub")
                if sid is not None:
                    match = data.get("sid") == sid and (sub is None or user_sub == sub)
                else:
                    match = sub is not None and user_sub == sub
                if match:
                    ended.append(row_id)
            if ended:
                db.execute(delete(SessionRow).where(SessionRow.id.in_(ended)))
        return len(ended)

    def purge_expired(self, batch: int = PURGE_BATCH) -> int:
        """Delete every expired session, `batch` rows per transaction; returns how many."""
        total = 0
        while True:
            with self.maker.begin() as db:
                n = purge_expired_step(db, batch)
            total += n
            if n < batch:
                return total


def purge_expired_step(db: Session, batch: int, _manifest: Any = None) -> int:
    """One batch of the expired-session purge (the `sessions-purge` housekeeping job): at
    most `batch` rows, by the `expires_at` index; idempotent across replicas."""
    doomed = select(SessionRow.id).where(SessionRow.expires_at < time.time()).limit(batch)
    return db.execute(delete(SessionRow).where(SessionRow.id.in_(doomed))).rowcount or 0


schedule("sessions-purge", every=SESSIONS_PURGE_EVERY, batch=PURGE_BATCH)(purge_expired_step)


class _Signer(Signer):
    """itsdangerous' Signer with each key derived once, not on every signature check (the
    derivation is a keyed hash of the salt: the same result every time)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        name = secret_key.encode() if isinstance(secret_key, str) else secret_key
        key = self._derived.get(name)
        if key is None:
            key = self._derived[name] = super().derive_key(secret_key)
        return key


class SessionCookies:
    """The session cookie: a signed, random session id (`__Host-` prefixed on https).

    `keys` are tried newest last: after a rotation, cookies signed with the previous key stay
    valid (itsdangerous signs with the last key)."""

    def __init__(self, keys: list[str], secure: bool, max_age: int):
        self.signer = _Signer(keys, salt="guardrails.session")
        self.secure = secure
        self.max_age = max_age
        # __Host- cookies must be Secure, path=/ and host-only: the strongest browser binding.
        self.name = "__Host-microapp-session" if secure else "microapp-session"
        self._prefix = f"{self.name}=".encode("latin-1")

    def session_id(self, cookie_header: bytes) -> tuple[str | None, bool]:
        """The session id in a Cookie header, and whether a cookie failed its signature
        (tampering: the caller counts it)."""
        raw = None
        for part in cookie_header.split(b";"):
            part = part.strip()
            if part.startswith(self._prefix):
                raw = part[len(self._prefix) :]
        if not raw:
            return None, False
        try:
            return self.signer.unsign(raw).decode("ascii"), False
        except (BadSignature, UnicodeDecodeError):
            return None, True

    def header(self, sid: str | None) -> bytes:
        """A Set-Cookie value carrying `sid`, or clearing the cookie when `sid` is None."""
        value = self.signer.sign(sid).decode("ascii") if sid else ""
        parts = [
            f"{self.name}={value}",
            "Path=/",
            f"Max-Age={self.max_age if sid else 0}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts).encode("latin-1")
