"""`create_app()`: a FastAPI app with every guardrail switched on.

Server-side sessions, OIDC sign-in, CSRF checks on form posts, security headers, request ids,
audit context, telemetry and friendly error pages. Before each request the app's own secrets
are checked (guardrails.secrets): while they cannot be served, pages answer 503 - the app
neither crashes nor runs without them. The owner's code adds routers and pages:

    app = create_app(pages=Path(__file__).parent / "pages")
    app.include_router(routes.router)
"""

from __future__ import annotations

import gc
import hmac
import inspect
import re
import secrets
import tempfile
import threading
import uuid
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit

import anyio.to_thread
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, select_autoescape
from python_multipart.multipart import parse_options_header
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guardrails._version import __version__
from guardrails.auditing.log import AuditError, audit
from guardrails.connectors.registry import ConnectorError
from guardrails.core import context
from guardrails.core.context import RequestInfo
from guardrails.core.housekeeping import Scheduler
from guardrails.core.runtime import Runtime, build_runtime, prepare_database
from guardrails.secrets.store import CORE, SecretUnavailable
from guardrails.telemetry.otel import configure_logging
from guardrails.web.security import audit_denial, security_event
from guardrails.web.sessions import SessionCookies, SessionData, SessionStore
from guardrails.web.sso import (
    BACKCHANNEL_LOGOUT_PATH,
    SSO,
    NotAuthenticated,
    ProviderError,
    person,
    session_user,
)

log = structlog.get_logger("guardrails.web")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
PROBES = ("/livez", "/readyz", "/healthz")  # no sign-in, no session, no secrets gate
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


# Requests are traced and measured by GuardrailsMiddleware (guardrails.telemetry.otel.HttpServer):
# FastAPI's own telemetry (0.165 and later) would trace them a second time.
FASTAPI_TELEMETRY_OFF: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def _security_headers(issuer: str) -> list[tuple[str, str]]:
    """The security headers; the CSP's form-action also allows the identity provider's origin,
    because the sign-out form is redirected there (RP-initiated logout) and browsers check
    form-action along redirects."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    headers = []
    for name, value in SECURITY_HEADERS:
        text = value.decode()
        if name == b"content-security-policy" and origin and re.fullmatch(r"[!-~]+", origin):
            text = text.replace("form-action 'self'", f"form-action 'self' {origin}")
        headers.append((name.decode(), text))
    return headers


class GuardrailsMiddleware:
    """The app's one middleware (pure ASGI), around every HTTP request, outermost first:

    - the request id (the caller's well-formed `X-Request-Id`, else a new one) and the request
      context (guardrails.core.context: this app's Runtime and the request's info, bound once;
      the request id bound to log lines);
    - the secrets gate: 503 while the app's own secrets cannot be served, the database prepared
      once it answers (not for the probes and static files);
    - the server-side session: the signed cookie checked (a bad signature is counted as
      tampering), the session read (guardrails.web.sessions) into `scope["session"]`, and on
      the way out saved, renewed or cleared;
    - CSRF, for unsafe methods only (see `check_csrf`); safe methods pay nothing for it;
    - the request's SERVER span and `http.server.request.duration` (guardrails.telemetry);
    - on the way out, `X-Request-Id` and the security headers (and HSTS on https) on every
      answer; an exception no handler took becomes a page or JSON (503 for a dependency, else
      500) that carries them too.
    """

    def __init__(self, app: ASGIApp, guardrails: Guardrails):
        self.app = app
        self.gr = guardrails
        self.runtime = rt = guardrails.runtime
        self.store = guardrails.session_store
        self.secure = rt.settings.secure_cookies
        self.headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in _security_headers(rt.sso_issuer)
        ]
        if self.secure:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))
        self._names = {name for name, _ in self.headers} | {b"x-request-id"}
        self._cookies: SessionCookies | None = None
        self._key: str | None = None
        self.http = rt.telemetry.http_server() if rt.telemetry is not None else None

    def cookies(self) -> SessionCookies:
        """The session cookie's signer for the current session key (it may be rotated)."""
        rt = self.runtime
        if self._cookies is None or rt.session_key != self._key:
            keys = [k for k in (rt.previous_session_key, rt.session_key) if k]
            self._cookies = SessionCookies(keys, self.secure, self.store.max_age)
            self._key = rt.session_key
        return self._cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = cookie = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value
            elif name == b"cookie" and not cookie:
                cookie = value
        request_id = incoming.decode("latin-1")
        if not REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        client = scope.get("client")
        info = RequestInfo(request_id=request_id, source_ip=client[0] if client else None)
        token = context.bind(self.runtime, info)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        extra = [*self.headers, (b"x-request-id", request_id.encode("latin-1"))]
        started = False
        status: int | None = None
        sid: str | None = None
        session: SessionData | None = None

        async def send_with_headers(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                if session is not None and session.modified:
                    await self._save_session(message, sid, session)
                started = True
                status = message["status"]
                own = list(message.get("headers", ()))
                present = {name.lower() for name, _ in own}
                headers = [h for h in own if h[0].lower() != b"x-request-id"]
                headers += [h for h in extra if h[0] not in present or h[0] == b"x-request-id"]
                message["headers"] = headers
            await send(message)

        path = scope["path"]
        traced = None
        error: BaseException | None = None
        try:
            if path in PROBES or path.startswith("/static/"):  # not traced, nor measured
                await self.app(scope, receive, send_with_headers)
                return
            if self.http is not None:
                traced = self.http.start(scope)
            try:
                await prepare_secrets(self.runtime)
            except SecretUnavailable as exc:
                log.error("request refused: the app's secrets are unavailable", error=str(exc))
                await _secrets_unavailable(Request(scope))(scope, receive, send_with_headers)
                return
            if not self.gr.tables_ready:
                await anyio.to_thread.run_sync(self.gr.ensure_tables)  # 503 while down
            sid, session = await self._read_session(scope, cookie)
            scope["session"] = session
            if scope["method"] not in SAFE_METHODS:
                refusal, receive = await check_csrf(scope, receive, session)
                if refusal is not None:
                    await refusal(scope, receive, send_with_headers)
                    return
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - every failure gets a page, headers, request id
            error = exc
            if started:  # the response is under way: nothing more can be said to the client
                log.exception("request failed after its response started")
                raise
            session = None  # nothing of a failed request is saved
            response = _failure_response(Request(scope), exc, request_id)
            await response(scope, receive, send_with_headers)
        finally:
            if traced is not None:
                self.http.end(traced, scope, status, error)
            context.unbind(token)
            structlog.contextvars.unbind_contextvars("request_id")

    async def _read_session(self, scope: Scope, cookie: bytes) -> tuple[str | None, SessionData]:
        if not cookie:
            return None, SessionData()
        sid, tampered = self.cookies().session_id(cookie)
        if tampered:
            scope["guardrails.session_tampered"] = True
            security_event("session_cookie_tampered", "session cookie with a bad signature")
        if sid is None:
            return None, SessionData()
        data = await self.store.read(sid)
        if data is None:
            return None, SessionData()
        return sid, SessionData(data)

    async def _save_session(self, message: Message, sid: str | None, session: SessionData) -> None:
        """Save a changed session before its answer starts: a new id after sign-in (the old
        row deleted), none after sign-out (the cookie cleared)."""
        cookies = self.cookies()
        current = sid
        if current and (session.renew or not session):
            await anyio.to_thread.run_sync(self.store.delete, current)
            current = None
        headers = list(message.get("headers", ()))
        if session:
            current = current or secrets.token_urlsafe(32)
            await anyio.to_thread.run_sync(self.store.save, current, dict(session))
            headers.append((b"set-cookie", cookies.header(current)))
        elif sid:
            headers.append((b"set-cookie", cookies.header(None)))
        message["headers"] = headers


async def prepare_secrets(rt: Runtime) -> None:
    """Make sure the app's own secrets are current (off the event loop when Vault may be called).

    Raises SecretUnavailable; creates the tables when a (new) database engine was made.
    """
    if rt.ready and not rt.secrets.needs_fetch(CORE):
        return
    if await anyio.to_thread.run_sync(rt.refresh_secrets):
        await anyio.to_thread.run_sync(prepare_database, rt)
        rt.audit_log.outbox.start()


# ---------------------------------------------------------------------- CSRF
def csrf_token(request: Request) -> str:
    """The session's CSRF token, for `<input type=hidden name=csrf_token>` in forms."""
    session = request.session
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


URLENCODED = b"application/x-www-form-urlencoded"
FORM_TYPES = (URLENCODED, b"multipart/form-data")
CSRF_REFUSED = "This form has expired or came from another site. Reload the page and try again."
BODY_IN_MEMORY = 1024 * 1024  # bytes of a form body kept in memory for the route; then a file
CHUNK = 64 * 1024
SMALL_FORM = 64 * 1024  # an url-encoded body up to this size is scanned for the token directly
FORM_FIELDS = 1000  # Starlette's limit on a form's fields (its parser answers 400 beyond it)


def _same_token(expected: str, sent: str) -> bool:
    """Whether `sent` is the session's CSRF token, in constant time. Compared as bytes:
    hmac.compare_digest refuses str holding anything but ASCII with a TypeError, which made a
    non-ASCII token (any client can send one) a 500 instead of a refusal."""
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogateescape"))


async def check_csrf(
    scope: Scope, receive: Receive, session: SessionData
) -> tuple[Response | None, Receive]:
    """Every state-changing browser request (not GET, HEAD, OPTIONS or TRACE) must echo the
    session's CSRF token, in the `X-CSRF-Token` header or the form field `csrf_token`.

    Returns the refusal (403, a `security.csrf` event and the `csrf` counter) or None, and the
    `receive` to hand on: when the token is read from a form, the body read to find it is
    replayed to the route. Bearer-token callers carry no cookies, so they cannot be forged
    cross-site and are exempt, as is the provider's back-channel logout (its token is signed).
    """
    if scope["path"] == BACKCHANNEL_LOGOUT_PATH:
        return None, receive
    sent_header = content_type = None
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return None, receive
        if name == b"x-csrf-token":
            sent_header = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:  # the first, as Starlette's
            content_type = value
    request = Request(scope, receive)
    sent: Any = sent_header
    if sent is None and content_type is not None and content_type.lower().startswith(FORM_TYPES):
        sent, receive = await _form_token(request, receive, content_type)
        if isinstance(sent, Response):
            return sent, receive
    expected = session.get("csrf")
    if expected and isinstance(sent, str) and _same_token(expected, sent):
        return None, receive
    method, path = scope["method"], scope["path"]
    security_event("csrf", f"{method} {path}")
    user = session_user(request)  # this check runs before the route's sign-in check
    audit_denial(
        "security.csrf",
        result="denied",
        resource=("route", path),
        metadata={"method": method},
        actor=user.as_actor() if user else None,
    )
    return _error_page(request, 403, TITLES[403], CSRF_REFUSED), receive


async def _form_token(
    request: Request, receive: Receive, content_type: bytes
) -> tuple[Any, Receive]:
    """The form's `csrf_token`, read as the route will read it, and a `receive` that replays
    the body to the route.

    A small url-encoded form (what a browser's forms send) is scanned directly, field by field
    as Starlette's parser splits and decodes them; any other form goes through Starlette's own
    parsers and limits, its body kept in memory up to BODY_IN_MEMORY bytes and in a temporary
    file beyond (uploads)."""
    if parse_options_header(content_type)[0] == URLENCODED:  # Starlette's test
        head, complete = await _read_body(receive, SMALL_FORM)
        if complete:
            token = _urlencoded_field(head, "csrf_token")
            if token is not _TOO_MANY:
                return token, _replay_bytes(head, receive)
        receive = _replay_bytes(head, receive, more=not complete)
    return await _parsed_form_token(request, receive)


_TOO_MANY = object()  # more fields than Starlette's parser accepts: it gives the answer


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body's first bytes (until it ends or passes `limit`) and whether that is all of it.
    A client that goes away meanwhile raises ClientDisconnect, as Starlette's reads do."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def _urlencoded_field(body: bytes, wanted: str) -> Any:
    """The last value of field `wanted` in an url-encoded body, None when absent, split and
    decoded as Starlette's FormParser does (`&` between fields; a name without `=` has an
    empty value; each part latin-1, then `unquote_plus`); _TOO_MANY past FORM_FIELDS."""
    value = None
    fields = 0
    for part in body.split(b"&"):
        if not part:
            continue
        fields += 1
        if fields > FORM_FIELDS:
            return _TOO_MANY
        name, _, raw = part.partition(b"=")
        if unquote_plus(name.decode("latin-1")) == wanted:
            value = unquote_plus(raw.decode("latin-1"))
    return value


def _replay_bytes(head: bytes, receive: Receive, more: bool = False) -> Receive:
    """A `receive` that first gives `head` as one message (`more`: the rest of the body
    follows from `receive`), then hands on to `receive`."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": head, "more_body": more}

    return replay


async def _parsed_form_token(request: Request, receive: Receive) -> tuple[Any, Receive]:
    """`_form_token` through Starlette's parsers, for uploads, large and unusual forms."""
    body = tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY)  # noqa: SIM115 - closed by replay

    async def tee() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            body.write(message.get("body", b""))
        return message

    reader = Request(request.scope, tee)
    try:
        form = await reader.form()
        token = form.get("csrf_token")
    except StarletteHTTPException as exc:  # a malformed form: what the route would answer
        body.close()
        title = TITLES.get(exc.status_code, "Error")
        return _error_page(request, exc.status_code, title, str(exc.detail)), receive
    finally:
        await reader.close()
    total = body.tell()
    body.seek(0)
    done = False

    async def replay() -> Message:
        nonlocal done
        if done:
            return await receive()  # http.disconnect
        chunk = body.read(CHUNK)
        more = body.tell() < total
        if not more:
            done = True
            body.close()
        return {"type": "http.request", "body": chunk, "more_body": more}

    return token, replay


# ---------------------------------------------------------------------- pages
def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not request.headers.get("authorization")


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """Render one of the app's pages (or a guardrails page) with the common context."""
    gr: Guardrails = request.app.state.guardrails
    return gr.templates.TemplateResponse(request, name, context or {}, status_code=status_code)


def _common_context(request: Request) -> dict[str, Any]:
    gr: Guardrails = request.app.state.guardrails
    user = getattr(request.state, "user", None) or session_user(request)
    return {
        "user": user,
        "manifest": gr.manifest,
        "csrf_token": csrf_token(request) if user else "",
        "guardrails_version": __version__,
    }


def _request_id(request: Request) -> str | None:
    info = context.current_request()
    return info.request_id if info else None


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    request_id = _request_id(request)
    if _wants_html(request):
        try:
            return render(
                request,
                "error.html",
                {"status": status, "title": title, "message": message, "request_id": request_id},
                status_code=status,
            )
        except Exception:  # noqa: BLE001 - the page itself failed: answer in JSON instead
            log.exception("error page could not be rendered")
    return JSONResponse(
        {"error": title, "detail": message, "request_id": request_id}, status_code=status
    )


DATABASE_RETRY_AFTER = 10  # seconds: a locked SQLite file or a PostgreSQL fail-over


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be used right now (locked, down, pool exhausted),
    as opposed to a bug in a query."""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa_exc.OperationalError)


def _unavailable(request: Request, title: str, message: str, retry_after: int) -> Response:
    """A 503 page (or JSON) that says when to try again."""
    response = _error_page(request, 503, title, message)
    response.headers["retry-after"] = str(retry_after)
    return response


# What a 503 says when one of the app's own dependencies is down, and when to try again.
UNAVAILABLE = {
    "database": (
        "This app cannot use its database right now (it is busy, locked or unreachable). "
        "Nothing was changed. Please try again in a few seconds; if it keeps happening, "
        "contact {support}.",
        DATABASE_RETRY_AFTER,
    ),
    "secrets": (
        "This app cannot read the credentials it needs from its secrets store (Vault) right "
        "now, so it refuses to work rather than run without them. Nothing was changed. Please "
        "try again in a few minutes; if it keeps happening, contact {support}.",
        30,
    ),
}


def _dependency_unavailable(request: Request, dependency: str) -> Response:
    message, retry_after = UNAVAILABLE[dependency]
    support = request.app.state.guardrails.manifest.support_contact
    return _unavailable(
        request, "Temporarily unavailable", message.format(support=support), retry_after
    )


def _failure_response(request: Request, exc: Exception, request_id: str) -> Response:
    """The answer to an exception no handler took: a 503 for a dependency that failed (with
    Retry-After), else a 500; both as a page (or JSON) with the request id, never a bare
    text/plain 500."""
    if database_unavailable(exc):
        log.error("database unavailable", error=str(exc).splitlines()[0][:300])
        return _dependency_unavailable(request, "database")
    if isinstance(exc, ProviderError):
        return _provider_failure_page(request, exc)
    if isinstance(exc, SecretUnavailable):
        return _secrets_unavailable(request)
    if isinstance(exc, AuditError):  # e.g. a CSRF refusal that could not be audited
        return _audit_failure_page(request, exc)
    log.exception("request failed", request_id=request_id)
    return _error_page(
        request,
        500,
        "Error",
        "Something went wrong on our side. Nothing was changed. Please try again; if it keeps "
        "happening, contact the app's support with the request id.",
    )


def _secrets_unavailable(request: Request) -> Response:
    return _dependency_unavailable(request, "secrets")


def _provider_failure_page(request: Request, exc: ProviderError) -> Response:
    log.error("identity provider unusable", reason=exc.reason, step=exc.step, check=exc.check)
    try:
        audit.record(
            "auth.login",
            result="failure",
            metadata={"reason": exc.reason, "step": exc.step, "check": exc.check},
        )
    except Exception:  # noqa: BLE001 - the page must still be served
        log.error("audit write failed for a provider failure")
    support = request.app.state.guardrails.manifest.support_contact
    return _unavailable(
        request,
        "Sign-in unavailable",
        f"This app cannot use its identity provider right now ({exc.reason}), so nobody "
        "can sign in. Nothing was changed. Please try again in a few minutes; if it keeps "
        f"happening, contact {support}. For the operator: {exc.check}",
        30,
    )


TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    429: "Too many requests",
    503: "Temporarily unavailable",
}

# What the page says when the route gave no sentence of its own (Starlette's default detail is
# the status phrase, which the page's title already says).
PLAIN_DETAILS = {
    404: "There is no page at this address. Check the link, or start again from the start page.",
    405: "This page cannot be used that way. Start again from the start page.",
}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if _wants_html(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return JSONResponse(
            {"error": "Unauthorized", "detail": exc.reason},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(ProviderError)
    async def _provider_error(request: Request, exc: ProviderError) -> Response:
        return _provider_failure_page(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title = TITLES.get(exc.status_code, "Error")
        detail = str(exc.detail)
        if detail == HTTPStatus(exc.status_code).phrase:
            detail = PLAIN_DETAILS.get(exc.status_code, detail)
        page = _error_page(request, exc.status_code, title, detail)
        page.headers.update(exc.headers or {})  # e.g. Retry-After on a 429
        return page

    @app.exception_handler(SecretUnavailable)
    async def _secret_unavailable(request: Request, exc: SecretUnavailable) -> Response:
        log.error("request refused: a secret is unavailable", error=str(exc))
        return _secrets_unavailable(request)

    @app.exception_handler(ConnectorError)
    async def _connector_error(request: Request, exc: ConnectorError) -> Response:
        log.error("connector call failed", error=str(exc), status=exc.status)
        if exc.status >= 500 and exc.status != 503:
            return _error_page(
                request, 500, "Error", "Something went wrong on our side. Nothing was changed."
            )
        page = _error_page(request, exc.status, exc.title, str(exc))
        if exc.retry_after:
            page.headers["retry-after"] = str(exc.retry_after)
        return page

    @app.exception_handler(AuditError)
    async def _audit_error(request: Request, exc: AuditError) -> Response:
        return _audit_failure_page(request, exc)


def _audit_failure_page(request: Request, exc: AuditError) -> Response:
    log.error("audit write failed; action refused", error=str(exc))
    return _unavailable(
        request,
        "Action not carried out",
        "This action could not be recorded in the audit log, so it was not carried out. "
        "Nothing was changed. Please try again later; if it keeps happening, contact "
        f"{request.app.state.guardrails.manifest.support_contact}.",
        30,
    )


class Guardrails:
    """What `request.app.state.guardrails` holds for routes and dependencies."""

    def __init__(self, runtime: Runtime, pages: Path | None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.manifest = runtime.manifest
        self.sessionmaker = runtime.sessionmaker
        self.audit_log = runtime.audit_log
        self.sso = SSO(runtime)
        self.session_store = SessionStore(runtime.sessionmaker, runtime.settings.session_max_age)
        self.telemetry = runtime.telemetry
        self.tables_ready = False
        loaders = [FileSystemLoader(str(pages))] if pages else []
        env = Environment(
            loader=ChoiceLoader([*loaders, PackageLoader("guardrails", "templates")]),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        env.filters["person"] = person  # a stored user id (issuer#sub) as people read it
        self.templates = Jinja2Templates(env=env, context_processors=[_common_context])

    def ensure_tables(self) -> None:
        """Prepare the database once it answers (it may be down at start-up): migrated (or
        refused when behind, guardrails.core.migrate.DatabaseBehind) and the chain head made."""
        if not self.tables_ready and self.runtime.engine is not None:
            prepare_database(self.runtime)
            self.runtime.audit_log.outbox.start()  # delivery to the sinks (idempotent)
            self.tables_ready = True


def _ping(rt: Runtime) -> None:
    with rt.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


# Apps of this process that have started and not stopped (a test runs several in one process).
_RUNNING = [0]
_RUNNING_LOCK = threading.Lock()


def _freeze_start_up_heap() -> None:
    """What start-up built (modules, the app, its models and templates: most of the heap) lives
    as long as the app: moved out of the collector's sight (gc.freeze), it is not walked again
    by every full collection (a 70-140 ms pause each, measured under load). Garbage is
    collected first, so none of it is frozen for the process's lifetime."""
    with _RUNNING_LOCK:
        _RUNNING[0] += 1
        gc.collect()
        gc.freeze()


def _unfreeze_start_up_heap() -> None:
    """The heap goes back to the collector when the process's last running app stops (an app
    that stops while another still runs leaves that one's heap frozen)."""
    with _RUNNING_LOCK:
        _RUNNING[0] -= 1
        if _RUNNING[0] == 0:
            gc.unfreeze()


def create_app(
    *, pages: Path | None = None, runtime: Runtime | None = None, title: str | None = None
) -> FastAPI:
    """Build the app: guardrails on, owner routers to be added by the caller."""
    rt = runtime or build_runtime(defer_secrets=True)
    configure_logging(rt.settings.log_format)
    gr = Guardrails(rt, pages)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if rt.engine is not None:
            try:
                await anyio.to_thread.run_sync(gr.ensure_tables)
                await anyio.to_thread.run_sync(gr.session_store.purge_expired)
            except sa_exc.SQLAlchemyError as exc:  # start anyway: /livez 200, /readyz 503
                log.error(
                    "database unavailable at start-up; pages answer 503 until it is back",
                    error=str(exc).splitlines()[0][:300],
                )
        housekeeping = Scheduler(rt)  # sessions purge and the app's jobs, every few minutes
        housekeeping.start()
        log.info(
            "started",
            app_id=rt.manifest.app_id,
            stage=rt.manifest.stage,
            guardrails=__version__,
            issuer=gr.sso.issuer,
        )
        _freeze_start_up_heap()
        try:
            yield
        finally:
            _unfreeze_start_up_heap()
            housekeeping.stop()
            await gr.session_store.aclose()
            gr.telemetry.shutdown()
            rt.close()

    app = FastAPI(
        **FASTAPI_TELEMETRY_OFF,
        title=title or rt.manifest.name,
        version=rt.version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.guardrails = gr
    app.add_middleware(GuardrailsMiddleware, guardrails=gr)
    _install_error_handlers(app)
    app.include_router(gr.sso.router())
    app.mount(
        "/static/guardrails",
        StaticFiles(packages=[("guardrails", "static")]),
        name="guardrails-static",
    )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> RedirectResponse:
        # Browsers ask for it before reading the page's <link rel="icon">.
        return RedirectResponse("/static/guardrails/favicon.svg", status_code=301)

    async def readiness() -> tuple[int, dict[str, Any]]:
        try:
            await prepare_secrets(rt)
            secrets_state = "ok"
        except SecretUnavailable:
            secrets_state = "unavailable"
        database = "ok"
        if rt.engine is not None:
            try:
                await anyio.to_thread.run_sync(_ping, rt)
            except sa_exc.SQLAlchemyError as exc:
                log.error("readiness: database unavailable", error=str(exc).splitlines()[0][:300])
                database = "unavailable"
        body = {
            "status": "ok" if secrets_state == database == "ok" else "degraded",
            "secrets": secrets_state,
            "database": database,
            "app_id": rt.manifest.app_id,
            "version": rt.version,
            "guardrails_version": __version__,
            "stage": rt.manifest.stage,
        }
        return (200 if database == "ok" else 503), body

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, Any]:
        # Liveness: the process answers. No dependency is checked, so an outage of the
        # database, Vault or the identity provider never makes the platform restart the app.
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        # Readiness: 503 while the database or the app's own secrets cannot be used, so the
        # platform sends no traffic here until they are back.
        status, body = await readiness()
        if body["secrets"] != "ok":
            status = 503
        headers = {"retry-after": str(DATABASE_RETRY_AFTER)} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        # The summary for people and older probes: 200 while the app can serve (secrets
        # "degraded" included: pages answer 503 themselves), 503 when the database is down.
        status, body = await readiness()
        headers = {"retry-after": str(DATABASE_RETRY_AFTER)} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get("/signed-out", include_in_schema=False)
    def signed_out(request: Request) -> Response:
        return render(request, "signed_out.html")

    return app
