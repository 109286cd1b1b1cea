"""Helpers for app and guardrails tests (install `microapp-guardrails[testing]`).

Nothing here is mocked: the fixtures of the pytest plugin `guardrails.testing.plugin` (loaded by
the app's tests/conftest.py: `pytest_plugins = ["guardrails.testing.plugin"]`) run the real
local OIDC provider, `serve()` runs the real app under uvicorn on a free local port, and
`login()` follows the real redirects, as a browser does.

    def test_something(live_app, demo):
        with signed_in(live_app, demo["approver"]) as client:
            assert client.get("/").status_code == 200
            client.post_form("/requests", {"title": "Laptop"})   # CSRF token added

Production code never imports this package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import uvicorn

from guardrails.auditing import chain
from guardrails.auditing.chain import AuditEventRow, AuditIntake
from guardrails.core.manifest import Manifest
from guardrails.core.rules import is_local_url
from guardrails.core.runtime import Runtime, bound
from guardrails.core.settings import Settings
from guardrails.testing.demo_incidents import DemoIncidents, serve_demo_incidents
from guardrails.testing.devserver import DemoUser, demo_users, local_access_token, run_idp
from guardrails.testing.vault import VaultServer

__all__ = [
    "DemoIncidents",
    "DemoUser",
    "LiveApp",
    "SignedInClient",
    "VaultServer",
    "audit_events",
    "audit_unwritable",
    "bound",
    "demo_users",
    "free_port",
    "local_access_token",
    "login",
    "provider_id_token",
    "run_idp",
    "serve",
    "serve_demo_incidents",
    "signed_in",
    "test_settings",
    "with_free_local_ports",
]
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for every test client: httpx otherwise reads the whole CA bundle again
    for each new client (tens of milliseconds each, thousands of clients in a test run)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class LiveApp:
    url: str
    runtime: Runtime
    app: object = None

    @property
    def audit_file(self) -> Path:
        return self.runtime.settings.audit_file

    def client(self) -> httpx.Client:
        return httpx.Client(
            follow_redirects=True, timeout=15, headers={"accept": "text/html"}, verify=tls()
        )

    def audit_events(self) -> list[dict]:
        return audit_events(self.runtime)


def audit_events(runtime: Runtime) -> list[dict]:
    """Every event of the runtime's audit chain (in its database), oldest first. Events still
    waiting to be chained (PostgreSQL) are chained first, and the outbox is flushed, so the
    audit file (and any other sink) holds them too."""
    runtime.audit_log.chain_waiting()
    runtime.audit_log.outbox.flush(timeout=10)
    with runtime.sessionmaker() as session:
        return chain.events_after(session, 0, 1_000_000)


# where an audit event is written on PostgreSQL: the chain, and the intake of a change's events
_PG_AUDIT_TABLES = (AuditEventRow.__tablename__, AuditIntake.__tablename__)


@contextlib.contextmanager
def audit_unwritable(runtime: Runtime) -> Iterator[None]:
    """Inside the block the database refuses every audit event (as a full disk would): a
    real trigger in the app's database, dropped afterwards (SQLite or PostgreSQL; there on the
    intake too, where a change's event is first written)."""
    refuse = "database or disk is full (guardrails.testing.audit_unwritable)"
    with runtime.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION guardrails_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$BEGIN RAISE EXCEPTION '{refuse}'; END$$"
            )
            for table in _PG_AUDIT_TABLES:
                conn.exec_driver_sql(
                    f"CREATE TRIGGER guardrails_refuse BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION guardrails_refuse()"
                )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER guardrails_refuse BEFORE INSERT ON guardrails_audit_event "
                f"BEGIN SELECT RAISE(ABORT, '{refuse}'); END"
            )
    try:
        yield
    finally:
        with runtime.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                for table in _PG_AUDIT_TABLES:
                    conn.exec_driver_sql(f"DROP TRIGGER guardrails_refuse ON {table}")
                conn.exec_driver_sql("DROP FUNCTION guardrails_refuse()")
            else:
                conn.exec_driver_sql("DROP TRIGGER guardrails_refuse")


@contextlib.contextmanager
def serve(factory: Callable[[Runtime], object], runtime: Runtime) -> Iterator[LiveApp]:
    """Run `factory(runtime)` under uvicorn in a thread until the block ends."""
    port = int(runtime.settings.base_url.rsplit(":", 1)[1])
    asgi = factory(runtime)
    config = uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.05)
    try:
        yield LiveApp(url=runtime.settings.base_url, runtime=runtime, app=asgi)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_settings(tmp_path: Path, issuer: str, **overrides) -> Settings:
    """Settings for a throw-away app: its own SQLite file, audit log and port."""
    values = {
        "base_url": f"http://localhost:{free_port()}",
        "database_url": f"sqlite:///{tmp_path / 'app.db'}",
        "audit_file": tmp_path / "audit.jsonl",
        "audit_fsync": False,
        "session_key": "test-session-key-" + "x" * 32,
        "sso_issuer": issuer,
        "otel_disabled": True,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a helper, not a test


def login(client: httpx.Client, app: LiveApp, email: str, next_path: str = "/") -> httpx.Response:
    """Sign in through the real provider: app -> provider form -> pick user -> app."""
    form = client.get(f"{app.url}/login", params={"next": next_path})
    form.raise_for_status()
    if "/oauth2/authorize" not in str(form.url):
        raise AssertionError(f"expected the provider's sign-in form, got {form.url}")
    done = client.post(str(form.url), data={"sub": email})
    done.raise_for_status()
    return done


def with_free_local_ports(manifest: Manifest) -> Manifest:
    """The manifest with each connector URL on this machine (127.0.0.1 or localhost, as the
    demo services use) moved to a free port, so that tests never collide with `make dev`."""
    moved: dict[int, int] = {}
    connectors = []
    for spec in manifest.raw.get("connectors") or []:
        spec = dict(spec)
        for key in ("base_url", "token_url"):
            url = httpx.URL(spec[key]) if spec.get(key) else None
            if url is not None and is_local_url(spec[key]) and url.port:
                port = moved.setdefault(url.port, free_port())
                spec[key] = str(url.copy_with(port=port))
        connectors.append(spec)
    if not moved:
        return manifest
    return dataclasses.replace(manifest, raw={**manifest.raw, "connectors": connectors})


class SignedInClient(httpx.Client):
    """An httpx client signed in to a LiveApp; keeps the session's CSRF token (`token`)."""

    token: str = ""

    def post_form(self, path: str, data: dict | None = None, **kwargs) -> httpx.Response:
        """POST a form to `path` (relative to the app) with the CSRF token added."""
        return self.post(path, data={**(data or {}), "csrf_token": self.token}, **kwargs)


@contextlib.contextmanager
def signed_in(app: LiveApp, email: str, next_path: str = "/") -> Iterator[SignedInClient]:
    """A client signed in as `email` through the real provider, with the CSRF token kept.

    Relative URLs go to the app: `client.get("/")`, `client.post_form("/x", {"a": 1})`.
    """
    with SignedInClient(
        base_url=app.url,
        follow_redirects=True,
        timeout=15,
        headers={"accept": "text/html"},
        verify=tls(),
    ) as client:
        page = login(client, app, email, next_path)
        found = CSRF_INPUT.search(page.text)
        if found is None:  # the landing page was not one of the app's pages: try the home page
            found = CSRF_INPUT.search(client.get("/").text)
        client.token = found[1] if found else ""
        yield client


def provider_id_token(issuer: str, client_id: str, email: str) -> str:
    """A real ID token from the local provider for `email` (authorization code flow, no app).

    APIs refuse it as a bearer token (ID tokens are not API credentials): use
    `local_access_token` for an access token.
    """
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    redirect_uri = "http://localhost/callback"
    with httpx.Client(timeout=10, verify=tls()) as http:
        config = http.get(f"{issuer}/.well-known/openid-configuration").json()
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge.decode(),
            "code_challenge_method": "S256",
        }
        answer = http.post(config["authorization_endpoint"], params=params, data={"sub": email})
        location = httpx.URL(answer.headers["location"])
        token = http.post(
            config["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": location.params["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(client_id, "any-secret"),
        )
        token.raise_for_status()
        return token.json()["id_token"]
