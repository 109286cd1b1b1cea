"""`create_app()`: a FastAPI app with every guardrail switched on.

Server-side sessions, OIDC sign-in, CSRF checks on form posts, security headers, request ids,
audit context, telemetry and friendly error pages. Before each request the app's own secrets
are checked (guardrails.secrets): while they cannot be served, pages answer 503 - the app
neither crashes nor runs without them. The owner's code adds routers and pages:

    app = create_app(pages=Path(__file__).parent / "pages")
    app.include_router(routes.router)
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio.to_thread
import structlog
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, select_autoescape
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
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
from guardrails.web.sessions import ServerSideSessionMiddleware, SessionStore
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


class RequestContextMiddleware:
    """Request id, the request context (guardrails.core.context: this app's Runtime and the
    request's info, bound once) and security headers for every HTTP request."""

    def __init__(self, app: ASGIApp, runtime: Runtime):
        self.app = app
        self.runtime = runtime
        self.hsts = runtime.settings.secure_cookies
        self.headers = _security_headers(runtime.sso_issuer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        client = scope.get("client")
        info = RequestInfo(request_id=request_id, source_ip=client[0] if client else None)
        token = context.bind(self.runtime, info)
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                for name, value in self.headers:
                    if name not in headers:
                        headers[name] = value
                if self.hsts:
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_wrapper(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - every failure gets a page, headers, request id
            if started:  # the response is under way: nothing more can be said to the client
                log.exception("request failed after its response started")
                raise
            response = _failure_response(Request(scope), exc, request_id)
            await response(scope, receive, send_wrapper)
        finally:
            context.unbind(token)
            structlog.contextvars.unbind_contextvars("request_id")


async def prepare_secrets(rt: Runtime) -> None:
    """Make sure the app's own secrets are current (off the event loop when Vault may be called).

    Raises SecretUnavailable; creates the tables when a (new) database engine was made.
    """
    if rt.ready and not rt.secrets.needs_fetch(CORE):
        return
    if await anyio.to_thread.run_sync(rt.refresh_secrets):
        await anyio.to_thread.run_sync(prepare_database, rt)
        rt.audit_log.outbox.start()


class SecretsGate:
    """503 while the app's own secrets cannot be served; owns the session middleware.

    The session middleware is (re)built with the current session key; after a rotation,
    cookies signed with the previous key stay valid (itsdangerous signs with the last key).
    """

    def __init__(
        self, app: ASGIApp, runtime: Runtime, store: SessionStore, secure: bool, guardrails=None
    ):
        self.app = app
        self.runtime = runtime
        self.guardrails = guardrails
        self.store = store
        self.secure = secure
        self._sessions: ASGIApp | None = None
        self._key: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PROBES or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        rt = self.runtime
        try:
            await prepare_secrets(rt)
        except SecretUnavailable as exc:
            log.error("request refused: the app's secrets are unavailable", error=str(exc))
            response = _secrets_unavailable(Request(scope))
            await response(scope, receive, send)
            return
        if self.guardrails is not None and not self.guardrails.tables_ready:
            await anyio.to_thread.run_sync(self.guardrails.ensure_tables)  # 503 while down
        if self._sessions is None or rt.session_key != self._key:
            keys = [k for k in (rt.previous_session_key, rt.session_key) if k]
            self._sessions = ServerSideSessionMiddleware(
                self.app, store=self.store, secret_key=keys, secure=self.secure
            )
            self._key = rt.session_key
        await self._sessions(scope, receive, send)


# ---------------------------------------------------------------------- CSRF
def csrf_token(request: Request) -> str:
    """The session's CSRF token, for `<input type=hidden name=csrf_token>` in forms."""
    session = request.session
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


async def csrf_protect(request: Request) -> None:
    """Every state-changing browser request must echo the session's CSRF token.

    Bearer-token callers carry no cookies, so they cannot be forged cross-site and are exempt.
    """
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("authorization", "")[:7].lower() == "bearer ":
        return
    if request.url.path == BACKCHANNEL_LOGOUT_PATH:  # the provider's signed logout token
        return
    expected = request.session.get("csrf") if "session" in request.scope else None
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get("csrf_token")
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(expected, sent):
        security_event("csrf", f"{request.method} {request.url.path}")
        user = session_user(request)  # this check runs before the route's sign-in check
        audit_denial(
            "security.csrf",
            result="denied",
            resource=("route", request.url.path),
            metadata={"method": request.method},
            actor=user.as_actor() if user else None,
        )
        raise HTTPException(
            403, "This form has expired or came from another site. Reload the page and try again."
        )


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
        page = _error_page(request, exc.status_code, title, str(exc.detail))
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
        yield
        housekeeping.stop()
        gr.telemetry.shutdown()
        rt.close()

    app = FastAPI(
        title=title or rt.manifest.name,
        version=rt.version,
        lifespan=lifespan,
        dependencies=[Depends(csrf_protect)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.guardrails = gr
    app.add_middleware(
        SecretsGate,
        runtime=rt,
        store=gr.session_store,
        secure=rt.settings.secure_cookies,
        guardrails=gr,
    )
    app.add_middleware(RequestContextMiddleware, runtime=rt)
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

    gr.telemetry.instrument(app)
    return app
