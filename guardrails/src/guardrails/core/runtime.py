"""The running app's shared objects, built once from Settings + manifest.

`build_runtime()` is used by the web app and by commands (retention purge, audit verify), so
both see the same database, audit log and rules. It also enforces the production stage: the
laptop fall-backs (SQLite, a local sign-in service, plain http, a throw-away session key,
secrets from environment variables) are refused when `lifecycle.stage` is `production`.

The app's own secrets - session key, SSO client secret, database URL - come through
guardrails.secrets (Vault in production). `refresh_secrets()` re-reads them from the cache on
every request, so a rotated value is picked up; when Vault stays away past the cache TTL they
become unavailable and the web app answers 503 until it is back. If Vault is unreachable when
the web app starts, it still starts (`defer_secrets`) and answers 503 until Vault answers.
"""

from __future__ import annotations

import functools
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from guardrails.auditing import chain
from guardrails.auditing.log import AuditLog
from guardrails.auditing.outbox import HttpSink, JsonlFileSink, OtlpLogSink, Outbox
from guardrails.connectors import registry as connectors_mod
from guardrails.connectors.registry import Connectors
from guardrails.core import context, db
from guardrails.core.manifest import Manifest, load_manifest
from guardrails.core.rules import is_local_url, production_problems
from guardrails.core.settings import ConfigError, Settings
from guardrails.secrets import store as secret_store
from guardrails.secrets.store import SecretError, SecretStore, SecretUnavailable
from guardrails.telemetry.otel import Telemetry

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = structlog.get_logger("guardrails.runtime")
# The local sign-in service accepts any client secret; this one never leaves a laptop.
LOCAL_CLIENT_SECRET = "local-sign-in-service"  # noqa: S105  # pragma: allowlist secret


@functools.cache
def app_version() -> str:
    """The owner's app version from pyproject.toml (installed distribution), if known. Read
    once per process: finding which distribution holds `app` reads every installed package's
    file list (over a second in a large environment, paid by each runtime built before)."""
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
    engine: Engine | None  # None until the database URL could be read (Vault down at start)
    sessionmaker: sessionmaker[Session]
    audit_log: AuditLog
    session_key: str | None = field(repr=False)
    sso_issuer: str
    sso_client_secret: str | None = field(repr=False)
    secrets: SecretStore | None = None
    connectors: Connectors | None = None
    telemetry: Telemetry | None = None
    version: str = field(default_factory=app_version)
    extras: dict[str, Any] = field(default_factory=dict)
    database_url: str | None = field(default=None, repr=False)
    previous_session_key: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def ready(self) -> bool:
        """The app's own secrets have been read at least once."""
        return bool(self.engine is not None and self.session_key and self.sso_client_secret)

    def refresh_secrets(self) -> bool:
        """Re-read the session key, client secret and database URL (cached; may call Vault).

        Raises SecretUnavailable when one cannot be served. Returns True when a new database
        engine was made (first read, or the URL was rotated): the caller creates the tables.
        """
        store = self.secrets
        key = store.get("session-key")
        client_secret = store.get("sso-client-secret")
        url = store.get("database-url")
        if self.manifest.stage == "production" and url.startswith("sqlite"):
            raise SecretUnavailable("database-url", "SQLite; production needs PostgreSQL")
        with self._lock:
            if key != self.session_key:
                if self.session_key:
                    log.warning("session key rotated: sessions signed with the old key stay valid")
                self.previous_session_key, self.session_key = self.session_key, key
            self.sso_client_secret = client_secret
            if url == self.database_url and self.engine is not None:
                return False
            engine = db.make_engine(db.with_driver(url))
            old, self.engine, self.database_url = self.engine, engine, url
            self.sessionmaker.configure(bind=self.engine)
        if old is not None:
            log.warning("database URL changed (rotated): new connections use it")
            old.dispose()
        return True

    def close(self) -> None:
        if self.audit_log.outbox is not None:
            self.audit_log.outbox.stop()
        if self.connectors is not None:
            self.connectors.close()
        if self.engine is not None:
            self.engine.dispose()


def build_runtime(
    settings: Settings | None = None,
    manifest: Manifest | None = None,
    *,
    defer_secrets: bool = False,
    export_telemetry: bool = True,
    tracer_provider: TracerProvider | None = None,
) -> Runtime:
    """The Runtime for one app. With `defer_secrets` (the web app), Vault being unreachable at
    start-up is not fatal: the app starts and answers 503 until the secrets can be read.

    The telemetry providers are built first and handed to what they trace (secret store, Vault
    client, connectors, audit log) in their constructors. `export_telemetry=False` (commands)
    starts no exporter; `tracer_provider` replaces the configured one (tests).
    """
    settings = settings or Settings.from_env()
    manifest = manifest or load_manifest(settings.manifest_path)
    for notice in manifest.notices:
        log.warning(notice)
    try:
        refs = secret_store.declared(manifest)
    except ValueError as exc:
        raise ConfigError(f"microapp.yaml: {exc}") from None
    problems = secret_store.config_problems(manifest, refs) + connectors_mod.spec_problems(manifest)
    if problems:
        raise ConfigError("microapp.yaml: " + "; ".join(problems) + ".")
    problems = production_problems(settings, manifest, refs)
    if problems:
        raise ConfigError(
            "microapp.yaml says stage: production, but "
            + "; ".join(problems)
            + ". Configure the production services (docs/how-to/go-to-production.md and "
            "docs/how-to/secrets-and-connectors.md)."
        )
    issuer = settings.sso_issuer or manifest.sso_issuer
    version = app_version()
    telemetry = Telemetry(
        settings, manifest, version, export=export_telemetry, tracer_provider=tracer_provider
    )
    fallbacks = {}
    if not settings.session_key:
        fallbacks["session-key"] = secrets.token_urlsafe(32)
        if refs.get("session-key") is None or not settings.vault.addr:
            log.warning("MICROAPP_SESSION_KEY not set: throw-away key, sign-ins end on restart")
    if not settings.sso_client_secret and is_local_url(issuer):
        fallbacks["sso-client-secret"] = LOCAL_CLIENT_SECRET
    try:
        store = secret_store.build_store(
            settings, manifest, refs, tracer=telemetry.tracer, fallbacks=fallbacks
        )
    except SecretError as exc:
        raise ConfigError(f"Vault settings: {exc}") from None
    sessions = db.make_sessionmaker(None)
    audit_log = AuditLog(
        app_id=manifest.app_id,
        sessions=sessions,
        outbox=Outbox(
            manifest.app_id,
            sessions,
            audit_sinks(settings, telemetry),
            on_failure=telemetry.count_delivery_failure,
            checkpoint=telemetry.audit_checkpoint,
            checkpoint_interval=settings.audit_checkpoint_interval,
        ),
        observers=[telemetry.count_audit_event],
    )
    telemetry.watch_outbox(audit_log.outbox)
    rt = Runtime(
        settings=settings,
        manifest=manifest,
        engine=None,
        sessionmaker=sessions,
        audit_log=audit_log,
        session_key=None,
        sso_issuer=issuer,
        sso_client_secret=None,
        secrets=store,
        connectors=Connectors(
            manifest,
            store,
            telemetry.tracer,
            ratelimit_storage_url=settings.ratelimit_storage_url,
        ),
        telemetry=telemetry,
        version=version,
    )
    try:
        rt.refresh_secrets()
    except SecretUnavailable as exc:
        ref = store.refs.get(exc.name)
        from_vault = store.backend == "vault" and ref is not None and ref.scheme == "vault"
        if exc.name == "sso-client-secret" and not from_vault:
            raise ConfigError(
                f"MICROAPP_SSO_CLIENT_SECRET is not set: the identity provider {issuer} needs "
                "the client secret registered for this app."
            ) from None
        if not (defer_secrets and from_vault) or "SQLite" in exc.reason:
            raise ConfigError(f"cannot start: {exc}") from None
        log.error("secrets unavailable at start-up: 503 until Vault answers", error=str(exc))
    return rt


def audit_sinks(settings: Settings, telemetry: Telemetry) -> list:
    """The outbox's sinks, from the settings (module docstring of guardrails.auditing.outbox)."""
    sinks: list = []
    if settings.audit_file is not None:
        sinks.append(JsonlFileSink(settings.audit_file, settings.audit_fsync))
    if settings.audit_http_url:
        sinks.append(HttpSink(settings.audit_http_url))
    if settings.audit_otlp_endpoint:
        sinks.append(OtlpLogSink(settings.audit_otlp_endpoint, telemetry.resource_attributes()))
    return sinks


def prepare_database(rt: Runtime) -> None:
    """Make sure the database is migrated and the audit chain has its head row.

    A database behind the code is refused (guardrails.core.migrate.DatabaseBehind, with the
    command to run), except a laptop's: SQLite outside production is upgraded here. An app
    without a `migrations/` folder (made before migrations existed) gets its missing tables
    created, with a warning.
    """
    from guardrails.core import migrate

    projects = [migrate.guardrails_project(), migrate.app_project(rt.settings.migrations_path)]
    laptop = rt.engine.dialect.name == "sqlite" and rt.manifest.stage != "production"
    migrate.ensure_current(rt.engine, projects, may_upgrade=laptop)
    if not projects[1].heads() and db.Model.metadata.tables:
        missing = set(db.Model.metadata.tables) - set(inspect(rt.engine).get_table_names())
        if missing:
            log.warning(
                "no migrations/ folder: creating the app's missing tables (add migrations: "
                "docs/how-to/change-a-model.md)",
                tables=sorted(missing),
            )
            db.Model.metadata.create_all(rt.engine)
    chain.ensure_head(rt.engine, rt.manifest.app_id)


@contextmanager
def bound(rt: Runtime):
    """Inside this block `audit.record`, `secret()` and `connector()` use `rt` (commands, tests):
    `rt` is the current app of guardrails.core.context."""
    token = context.bind(rt)
    try:
        yield rt
    finally:
        context.unbind(token)


@contextmanager
def runtime(settings: Settings | None = None, manifest: Manifest | None = None):
    """For commands outside the web app: a Runtime with its audit log, secrets and connectors
    bound (`audit.record`, `secret()`, `connector()` work inside the block) and tables made.

        with runtime() as rt:          # Settings from the environment, microapp.yaml
            purge_old_requests(rt)
    """
    rt = build_runtime(settings, manifest, export_telemetry=False)
    prepare_database(rt)
    try:
        with bound(rt):
            yield rt
    finally:
        rt.audit_log.outbox.flush(timeout=5.0)  # the command's events reach the sinks
        rt.close()
