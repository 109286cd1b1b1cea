"""FastAPI dependencies that reach the running app's shared objects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from fastapi import Request
from sqlalchemy.orm import Session

from guardrails.auditing.log import AuditLog


async def db_session(request: Request) -> AsyncIterator[Session]:
    """FastAPI dependency: a Session bound to the app's engine, closed after the request.

    An async dependency, so FastAPI makes the Session on the event loop: making one opens no
    connection (that happens at its first query, in the route's own thread), and a sync
    generator would cost a hop to a worker thread and back for nothing. It is closed on the
    event loop when closing does no network round trip (it never connected, or its database
    is SQLite, whose rollback of a read is a no-op in the driver, and the transaction holds no
    refusal to audit at its end); otherwise, e.g. PostgreSQL's ROLLBACK, in a worker thread,
    shielded so that a client that goes away cannot leave the connection unreturned."""
    session = request.app.state.guardrails.sessionmaker()
    try:
        yield session
    finally:
        if not session.in_transaction() or (
            session.get_bind().dialect.name == "sqlite" and not AuditLog.writes_at_end(session)
        ):
            session.close()
        else:
            # A limiter of its own, not the shared pool of worker threads: with every worker
            # thread taken by routes that wait for a database connection, a close waiting for
            # a thread would hold the connection they wait for (FastAPI's sync dependencies
            # exit the same way).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))
