# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""Run-time settings: the one place that reads the process environment.

Per-app facts live in microapp.yaml (see guardrails.manifest); this module holds what differs
between a laptop and production: URLs, file locations, keys. Every other module receives a
`Settings` object instead of reading os.environ itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(RuntimeError):
    """Settings that cannot work, reported with what to change."""


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    manifest_path: Path = Path("microapp.yaml")
    base_url: str = "http://localhost:8000"
    database_url: str = "sqlite:///var/app.db"
    audit_file: Path = Path("var/audit.jsonl")
    audit_fsync: bool = True
    session_key: str | None = None
    session_max_age: int = 8 * 3600
    sso_issuer: str | None = None  # overrides the manifest's issuer (e.g. `make dev`)
    sso_client_secret: str | None = None
    otel_disabled: bool = False
    otel_traces_exporter: str = "none"  # otlp | console | none
    otel_metrics_exporter: str = "none"
    otlp_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP base URL)
    log_format: str = "console"  # console | json
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        otlp = bool(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        default_exporter = "otlp" if otlp else "none"
        base_url = env.get("MICROAPP_BASE_URL", cls.base_url).rstrip("/")
        return cls(
            manifest_path=Path(env.get("MICROAPP_MANIFEST", "microapp.yaml")),
            base_url=base_url,
            database_url=env.get("DATABASE_URL", cls.database_url),
            audit_file=Path(env.get("MICROAPP_AUDIT_FILE", str(cls.audit_file))),
            audit_fsync=_flag(env.get("MICROAPP_AUDIT_FSYNC"), True),
            session_key=env.get("MICROAPP_SESSION_KEY") or None,
            session_max_age=int(env.get("MICROAPP_SESSION_MAX_AGE", cls.session_max_age)),
            sso_issuer=(env.get("MICROAPP_SSO_ISSUER") or "").rstrip("/") or None,
            sso_client_secret=env.get("MICROAPP_SSO_CLIENT_SECRET") or None,
            otel_disabled=_flag(env.get("OTEL_SDK_DISABLED"), False),
            otel_traces_exporter=env.get("OTEL_TRACES_EXPORTER", default_exporter).lower(),
            otel_metrics_exporter=env.get("OTEL_METRICS_EXPORTER", default_exporter).lower(),
            otlp_endpoint=(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").rstrip("/") or None,
            log_format=env.get("MICROAPP_LOG_FORMAT", "console").lower(),
            environ=env,
        )

    @property
    def secure_cookies(self) -> bool:
        """Cookies carry the Secure flag whenever the app is served over https."""
        return self.base_url.startswith("https://")
