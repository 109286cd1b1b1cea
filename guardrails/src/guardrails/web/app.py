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
from guardrails.core.db import Model
from guardrails.core.runtime import Runtime, build_runtime
from guardrails.secrets.store import CORE, SecretUnavailable
from guardrails.telemetry.otel import configure_logging
from guardrails.web.sessions import ServerSideSessionMiddleware, SessionStore
from guardrails.web.sso import (
    BACKCHANNEL_LOGOUT_PATH,
    SSO,
    NotAuthenticated,
    ProviderError,
    session_user,
)

log = structlog.get_logger("guardrails.web")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
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

        try:
            await self.app(scope, receive, send_wrapper)
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
        await anyio.to_thread.run_sync(Model.metadata.create_all, rt.engine)


class SecretsGate:
    """503 while the app's own secrets cannot be served; owns the session middleware.

    The session middleware is (re)built with the current session key; after a rotation,
    cookies signed with the previous key stay valid (itsdangerous signs with the last key).
    """

    def __init__(self, app: ASGIApp, runtime: Runtime, store: SessionStore, secure: bool):
        self.app = app
        self.runtime = runtime
        self.store = store
        self.secure = secure
        self._sessions: ASGIApp | None = None
        self._key: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/healthz" or path.startswith("/static/"):
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
        audit.record(
            "security.csrf",
            result="denied",
            resource=("route", request.url.path),
            metadata={"method": request.method},
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


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    if _wants_html(request):
        return render(
            request,
            "error.html",
            {"status": status, "title": title, "message": message},
            status_code=status,
        )
    return JSONResponse({"error": title, "detail": message}, status_code=status)


def _secrets_unavailable(request: Request) -> Response:
    support = request.app.state.guardrails.manifest.support_contact
    response = _error_page(
        request,
        503,
        "Temporarily unavailable",
        "This app cannot read the credentials it needs from its secrets store (Vault) right "
        "now, so it refuses to work rather than run without them. Nothing was changed. Please "
        f"try again in a few minutes; if it keeps happening, contact {support}.",
    )
    response.headers["retry-after"] = "30"
    return response


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
        log.error("identity provider unusable", reason=exc.reason, step=exc.step, check=exc.check)
        try:
            audit.record(
                "auth.login",
                result="failure",
                metadata={"reason": exc.reason, "step": exc.step, "check": exc.check},
            )
        except AuditError:
            log.error("audit write failed for a provider failure")
        support = request.app.state.guardrails.manifest.support_contact
        response = _error_page(
            request,
            503,
            "Sign-in unavailable",
            f"This app cannot use its identity provider right now ({exc.reason}), so nobody "
            "can sign in. Nothing was changed. Please try again in a few minutes; if it keeps "
            f"happening, contact {support}. For the operator: {exc.check}",
        )
        response.headers["retry-after"] = "30"
        return response

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
        return _error_page(request, exc.status, exc.title, str(exc))

    @app.exception_handler(AuditError)
    async def _audit_error(request: Request, exc: AuditError) -> Response:
        log.error("audit write failed; action refused", error=str(exc))
        return _error_page(
            request,
            503,
            "Action not carried out",
            "This action could not be recorded in the audit log, so it was not carried out. "
            "Nothing was changed. Please try again later; if it keeps happening, contact "
            f"{request.app.state.guardrails.manifest.support_contact}.",
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
        loaders = [FileSystemLoader(str(pages))] if pages else []
        env = Environment(
            loader=ChoiceLoader([*loaders, PackageLoader("guardrails", "templates")]),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates = Jinja2Templates(env=env, context_processors=[_common_context])


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
            Model.metadata.create_all(rt.engine)
            SessionStore(rt.sessionmaker, rt.settings.session_max_age).purge_expired()
        log.info(
            "started",
            app_id=rt.manifest.app_id,
            stage=rt.manifest.stage,
            guardrails=__version__,
            issuer=gr.sso.issuer,
        )
        yield
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

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        # Liveness: stays 200 while secrets are unavailable (a restart would not help).
        try:
            await prepare_secrets(rt)
            secrets_state = "ok"
        except SecretUnavailable:
            secrets_state = "unavailable"
        if rt.engine is not None:
            await anyio.to_thread.run_sync(_ping, rt)
        return {
            "status": "ok" if secrets_state == "ok" else "degraded",
            "secrets": secrets_state,
            "app_id": rt.manifest.app_id,
            "version": rt.version,
            "guardrails_version": __version__,
            "stage": rt.manifest.stage,
        }

    @app.get("/signed-out", include_in_schema=False)
    def signed_out(request: Request) -> Response:
        return render(request, "signed_out.html")

    gr.telemetry.instrument(app)
    return app
