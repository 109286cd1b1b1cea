"""FastAPI dependencies that reach the running app's shared objects."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session


def db_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: a Session bound to the app's engine, closed after the request."""
    with request.app.state.guardrails.sessionmaker() as session:
        yield session
