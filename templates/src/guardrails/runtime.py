# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""The running app's shared objects, built once from Settings + manifest.

`build_runtime()` is used by the web app and by commands (retention purge, audit verify), so
both see the same database, audit log and rules. It also enforces the production stage: the
laptop fall-backs (SQLite, a local sign-in service, plain http, a throw-away session key) are
refused when `lifecycle.stage` is `production`.
"""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from guardrails import db
from guardrails.audit import AuditLog, JsonlChainSink, audit
from guardrails.config import ConfigError, Settings
from guardrails.manifest import Manifest, load_manifest

log = structlog.get_logger("guardrails.runtime")
LOCAL_HOSTS = ("http://localhost", "http://127.0.0.1")
# The local sign-in service accepts any client secret; this one never leaves a laptop.
LOCAL_CLIENT_SECRET = "local-sign-in-service"  # noqa: S105  # pragma: allowlist secret


def production_problems(settings: Settings, manifest: Manifest) -> list[str]:
    """What a production app may not use; empty outside production."""
    if manifest.stage != "production":
        return []
    issuer = settings.sso_issuer or manifest.sso_issuer
    problems = []
    if settings.database_url.startswith("sqlite"):
        problems.append("DATABASE_URL points at SQLite; production needs PostgreSQL")
    if issuer.startswith(LOCAL_HOSTS):
        problems.append(f"the SSO issuer {issuer} is the local sign-in service")
    if not settings.base_url.startswith("https://"):
        problems.append(f"MICROAPP_BASE_URL {settings.base_url} is not https")
    if not settings.session_key:
        problems.append("MICROAPP_SESSION_KEY is not set")
    if not settings.sso_client_secret:
        problems.append("MICROAPP_SSO_CLIENT_SECRET is not set")
    return problems


def app_version() -> str:
    """The owner's app version from pyproject.toml (installed distribution), if known."""
    for dist in metadata.packages_distributions().get("app", []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "0.0.0"


@dataclass
class Runtime:
    settings: Settings
    manifest: Manifest
    engine: Engine
    sessionmaker: sessionmaker[Session]
    audit_log: AuditLog
    session_key: str
    sso_issuer: str
    sso_client_secret: str
    version: str = field(default_factory=app_version)
    extras: dict[str, Any] = field(default_factory=dict)


def build_runtime(settings: Settings | None = None, manifest: Manifest | None = None) -> Runtime:
    settings = settings or Settings.from_env()
    manifest = manifest or load_manifest(settings.manifest_path)
    for notice in manifest.notices:
        log.warning(notice)
    problems = production_problems(settings, manifest)
    if problems:
        raise ConfigError(
            "microapp.yaml says stage: production, but "
            + "; ".join(problems)
            + ". Configure the production services (docs/how-to/go-to-production.md)."
        )
    session_key = settings.session_key
    if not session_key:
        session_key = secrets.token_urlsafe(32)
        log.warning("MICROAPP_SESSION_KEY not set: throw-away key, sign-ins end on restart")
    issuer = settings.sso_issuer or manifest.sso_issuer
    client_secret = settings.sso_client_secret
    if not client_secret:
        if not issuer.startswith(LOCAL_HOSTS):
            raise ConfigError(
                f"MICROAPP_SSO_CLIENT_SECRET is not set: the identity provider {issuer} needs "
                "the client secret registered for this app."
            )
        client_secret = LOCAL_CLIENT_SECRET
    engine = db.make_engine(settings.database_url)
    audit_log = AuditLog(
        app_id=manifest.app_id, sinks=[JsonlChainSink(settings.audit_file, settings.audit_fsync)]
    )
    return Runtime(
        settings=settings,
        manifest=manifest,
        engine=engine,
        sessionmaker=db.make_sessionmaker(engine),
        audit_log=audit_log,
        session_key=session_key,
        sso_issuer=issuer,
        sso_client_secret=client_secret,
    )


@contextmanager
def bound(rt: Runtime):
    """`guardrails.audit.record` writes to `rt`'s audit log inside this block (commands, tests)."""
    token = audit.bind(rt.audit_log)
    try:
        yield rt
    finally:
        audit._unbind(token)


@contextmanager
def runtime(settings: Settings | None = None):
    """For commands outside the web app: a Runtime with its audit log bound and tables made."""
    rt = build_runtime(settings)
    db.Model.metadata.create_all(rt.engine)
    try:
        with bound(rt):
            yield rt
    finally:
        rt.engine.dispose()
