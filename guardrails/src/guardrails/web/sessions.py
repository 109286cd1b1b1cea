"""Server-side sessions: the browser holds only a signed, random session id.

The session data (the user's claims, and during sign-in the OAuth state, nonce and PKCE
verifier) stays in the app's database. A cookie whose signature does not verify is ignored and
counted as tampering. The middleware exposes the data as `request.session`, so libraries that
expect Starlette sessions (authlib's client) work unchanged.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import anyio.to_thread
import structlog
from itsdangerous import BadSignature, Signer
from sqlalchemy import Float, String, Text, bindparam, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guardrails.core.db import GuardrailsModel
from guardrails.core.housekeeping import schedule
from guardrails.web.security import security_event

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


class SessionStore:
    def __init__(self, maker: sessionmaker[Session], max_age: int):
        self.maker = maker
        self.max_age = max_age

    def load(self, sid: str) -> dict[str, Any] | None:
        # Runs on every request: a plain column select, half the cost of an ORM `db.get`.
        with self.maker() as db:
            row = db.execute(_LOAD, {"sid": sid}).first()
            if row is None or row.expires_at < time.time():
                return None
            return json.loads(row.data)

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


class ServerSideSessionMiddleware:
    """ASGI middleware: signed session-id cookie in, `scope["session"]` for the request."""

    def __init__(self, app: ASGIApp, store: SessionStore, secret_key: str, secure: bool):
        self.app = app
        self.store = store
        self.signer = Signer(secret_key, salt="guardrails.session")
        self.secure = secure
        # __Host- cookies must be Secure, path=/ and host-only: the strongest browser binding.
        self.cookie_name = "__Host-microapp-session" if secure else "microapp-session"

    async def _read(self, scope: Scope) -> tuple[str | None, SessionData]:
        raw = HTTPConnection(scope).cookies.get(self.cookie_name)
        if not raw:
            return None, SessionData()
        try:
            sid = self.signer.unsign(raw).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            scope["guardrails.session_tampered"] = True
            security_event("session_cookie_tampered", "session cookie with a bad signature")
            return None, SessionData()
        data = await anyio.to_thread.run_sync(self.store.load, sid)
        if data is None:
            return None, SessionData()
        return sid, SessionData(data)

    def _cookie(self, value: str, max_age: int) -> str:
        parts = [
            f"{self.cookie_name}={value}",
            "Path=/",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sid, session = await self._read(scope)
        scope["session"] = session

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and session.modified:
                headers = MutableHeaders(scope=message)
                current = sid
                if current and (session.renew or not session):
                    await anyio.to_thread.run_sync(self.store.delete, current)
                    current = None
                if session:
                    current = current or secrets.token_urlsafe(32)
                    await anyio.to_thread.run_sync(self.store.save, current, dict(session))
                    signed = self.signer.sign(current).decode("ascii")
                    headers.append("Set-Cookie", self._cookie(signed, self.store.max_age))
                elif sid:
                    headers.append("Set-Cookie", self._cookie("", 0))
            await send(message)

        await self.app(scope, receive, send_wrapper)
