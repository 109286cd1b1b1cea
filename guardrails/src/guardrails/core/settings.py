"""Run-time settings: the one place that reads the process environment.

Per-app facts live in microapp.yaml (see guardrails.core.manifest); this module holds what differs
between a laptop and production: URLs, file locations, keys. Every other module receives a
`Settings` object instead of reading os.environ itself. On a laptop, a git-ignored `.env` file
in the app folder fills in what the environment does not set (production refuses it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(RuntimeError):
    """Settings that cannot work, reported with what to change."""


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a `.env` file (comments, blank lines and `export ` are allowed)."""
    values = {}
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class VaultSettings:
    """How to reach HashiCorp Vault (the standard VAULT_* variables, plus file variants)."""

    addr: str | None = None  # VAULT_ADDR; unset: secrets come from the dev backend
    namespace: str | None = None  # VAULT_NAMESPACE (hvac does not read it itself)
    cacert: str | None = None  # VAULT_CACERT: CA bundle that signed Vault's certificate
    auth_method: str = "token"  # VAULT_AUTH_METHOD: token | approle | kubernetes
    auth_mount: str | None = None  # VAULT_AUTH_MOUNT; default: approle / kubernetes
    token: str | None = field(default=None, repr=False)  # VAULT_TOKEN
    token_file: str | None = None  # VAULT_TOKEN_FILE (e.g. a Vault Agent sink)
    role_id: str | None = field(default=None, repr=False)  # VAULT_ROLE_ID
    role_id_file: str | None = None  # VAULT_ROLE_ID_FILE
    secret_id: str | None = field(default=None, repr=False)  # VAULT_SECRET_ID
    secret_id_file: str | None = None  # VAULT_SECRET_ID_FILE
    kubernetes_role: str | None = None  # VAULT_KUBERNETES_ROLE
    kubernetes_jwt_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    timeout: float = 5.0  # VAULT_CLIENT_TIMEOUT, seconds per Vault request

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> VaultSettings:
        def get(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        method = get("VAULT_AUTH_METHOD")
        if method is None:
            if get("VAULT_ROLE_ID") or get("VAULT_ROLE_ID_FILE"):
                method = "approle"
            elif get("VAULT_KUBERNETES_ROLE"):
                method = "kubernetes"
            else:
                method = "token"
        return cls(
            addr=(get("VAULT_ADDR") or "").rstrip("/") or None,
            namespace=get("VAULT_NAMESPACE"),
            cacert=get("VAULT_CACERT"),
            auth_method=method.lower(),
            auth_mount=get("VAULT_AUTH_MOUNT"),
            token=get("VAULT_TOKEN"),
            token_file=get("VAULT_TOKEN_FILE"),
            role_id=get("VAULT_ROLE_ID"),
            role_id_file=get("VAULT_ROLE_ID_FILE"),
            secret_id=get("VAULT_SECRET_ID"),
            secret_id_file=get("VAULT_SECRET_ID_FILE"),
            kubernetes_role=get("VAULT_KUBERNETES_ROLE"),
            kubernetes_jwt_file=get("VAULT_KUBERNETES_JWT_FILE") or cls.kubernetes_jwt_file,
            timeout=float(get("VAULT_CLIENT_TIMEOUT") or cls.timeout),
        )


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    manifest_path: Path = Path("microapp.yaml")
    base_url: str = "http://localhost:8000"
    database_url: str = "sqlite:///var/app.db"
    audit_file: Path | None = Path("var/audit.jsonl")  # the JSONL sink; None: no file
    audit_fsync: bool = False  # the file is an export: the database's commit is the record
    audit_http_url: str | None = None  # MICROAPP_AUDIT_HTTP_URL: POST batches of events
    audit_otlp_endpoint: str | None = None  # MICROAPP_AUDIT_OTLP_ENDPOINT: OTLP/HTTP logs
    audit_checkpoint_interval: float = 60.0  # MICROAPP_AUDIT_CHECKPOINT_INTERVAL (seconds)
    migrations_path: Path = Path("migrations")  # MICROAPP_MIGRATIONS: the app's Alembic folder
    session_key: str | None = field(default=None, repr=False)
    session_max_age: int = 8 * 3600
    sso_issuer: str | None = None  # overrides the manifest's issuer (e.g. `make dev`)
    sso_client_secret: str | None = field(default=None, repr=False)
    vault: VaultSettings = field(default_factory=VaultSettings)
    secrets_ttl: float = 300.0  # MICROAPP_SECRETS_TTL: how long a secret read from Vault is kept
    dotenv_file: Path | None = None  # the .env file that was read, if any
    otel_disabled: bool = False
    otel_traces_exporter: str = "none"  # otlp | console | none
    otel_metrics_exporter: str = "none"
    otlp_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP base URL)
    otel_traces_sampler: str | None = None  # OTEL_TRACES_SAMPLER; None: guardrails.telemetry's
    otel_traces_sampler_arg: str | None = None  # OTEL_TRACES_SAMPLER_ARG (a ratio)
    otel_shutdown_timeout: float = 2.0  # MICROAPP_OTEL_SHUTDOWN_TIMEOUT: last flush, seconds
    log_format: str = "console"  # console | json
    ratelimit_storage_url: str | None = None  # RATELIMIT_STORAGE_URL (limits); None: memory
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        dotenv = Path(env.get("MICROAPP_DOTENV", ".env")) if environ is None else None
        if dotenv is not None and dotenv.is_file():
            env = {**read_dotenv(dotenv), **env}  # the real environment wins
        else:
            dotenv = None
        otlp = bool(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        default_exporter = "otlp" if otlp else "none"
        base_url = env.get("MICROAPP_BASE_URL", cls.base_url).rstrip("/")
        return cls(
            manifest_path=Path(env.get("MICROAPP_MANIFEST", "microapp.yaml")),
            base_url=base_url,
            database_url=env.get("DATABASE_URL", cls.database_url),
            audit_file=(
                Path(env.get("MICROAPP_AUDIT_FILE", str(cls.audit_file)))
                if env.get("MICROAPP_AUDIT_FILE", "x").strip().lower() not in ("", "none")
                else None
            ),
            audit_fsync=_flag(env.get("MICROAPP_AUDIT_FSYNC"), cls.audit_fsync),
            migrations_path=Path(env.get("MICROAPP_MIGRATIONS") or "migrations"),
            audit_http_url=(env.get("MICROAPP_AUDIT_HTTP_URL") or "").strip() or None,
            audit_otlp_endpoint=(env.get("MICROAPP_AUDIT_OTLP_ENDPOINT") or "").strip() or None,
            audit_checkpoint_interval=float(
                env.get("MICROAPP_AUDIT_CHECKPOINT_INTERVAL") or cls.audit_checkpoint_interval
            ),
            session_key=env.get("MICROAPP_SESSION_KEY") or None,
            session_max_age=int(env.get("MICROAPP_SESSION_MAX_AGE", cls.session_max_age)),
            sso_issuer=(env.get("MICROAPP_SSO_ISSUER") or "").strip() or None,
            sso_client_secret=env.get("MICROAPP_SSO_CLIENT_SECRET") or None,
            vault=VaultSettings.from_env(env),
            secrets_ttl=float(env.get("MICROAPP_SECRETS_TTL") or cls.secrets_ttl),
            dotenv_file=dotenv,
            otel_disabled=_flag(env.get("OTEL_SDK_DISABLED"), False),
            otel_traces_exporter=env.get("OTEL_TRACES_EXPORTER", default_exporter).lower(),
            otel_metrics_exporter=env.get("OTEL_METRICS_EXPORTER", default_exporter).lower(),
            otlp_endpoint=(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").rstrip("/") or None,
            otel_traces_sampler=(env.get("OTEL_TRACES_SAMPLER") or "").strip().lower() or None,
            otel_traces_sampler_arg=(env.get("OTEL_TRACES_SAMPLER_ARG") or "").strip() or None,
            otel_shutdown_timeout=float(
                env.get("MICROAPP_OTEL_SHUTDOWN_TIMEOUT") or cls.otel_shutdown_timeout
            ),
            log_format=env.get("MICROAPP_LOG_FORMAT", "console").lower(),
            ratelimit_storage_url=(env.get("RATELIMIT_STORAGE_URL") or "").strip() or None,
            environ=env,
        )

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry the Secure flag whenever the app is served over https."""
        return self.base_url.startswith("https://")
