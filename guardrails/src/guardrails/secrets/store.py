"""Secrets: `secret("hr-db-url")` resolves a reference declared under `secrets:` in microapp.yaml.

A reference is `vault:<mount>/<path>#<key>` (HashiCorp Vault, KV version 2, read by
guardrails.secrets.vault) or `env:NAME` (an environment variable: laptops and test stages only).
A value read from Vault is kept in memory for MICROAPP_SECRETS_TTL seconds (or its lease, when
shorter) and re-read half-way through. While Vault cannot be reached the kept value is served
until it expires; after that `SecretUnavailable` is raised and the web app answers 503 for the
routes that need it - never a crash, never a fall-back to something less safe.

Without VAULT_ADDR (a laptop) the dev backend answers instead: a `vault:` secret named
`hr-db-url` is read from MICROAPP_SECRET_HR_DB_URL (environment or the git-ignored .env), and
the app's own secrets fall back to MICROAPP_SESSION_KEY, MICROAPP_SSO_CLIENT_SECRET and
DATABASE_URL. `lifecycle.stage: production` refuses the dev backend at start-up.

Values never reach a log, a span, an audit event or an error message: those name the secret.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import trace

from guardrails.core.context import current_runtime
from guardrails.core.rules import CORE_SECRETS
from guardrails.secrets.errors import (  # the errors are part of this module's surface
    SecretError,
    SecretNotDeclared,
    SecretUnavailable,
    VaultForbidden,
    VaultRefused,
    VaultUnreachable,
)

__all__ = [
    "CORE",
    "SecretError",
    "SecretNotDeclared",
    "SecretRef",
    "SecretStore",
    "SecretUnavailable",
    "VaultForbidden",
    "VaultRefused",
    "VaultUnreachable",
    "build_store",
    "config_problems",
    "declared",
    "dev_variable",
    "secret",
]

log = structlog.get_logger("guardrails.secrets")
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"  # no "." or ".." segments
VAULT_REF = re.compile(
    rf"^vault:(?P<mount>{_SEGMENT})/(?P<path>{_SEGMENT}(?:/{_SEGMENT})*)#(?P<key>[A-Za-z0-9._-]+)$"
)
ENV_REF = re.compile(r"^env:(?P<var>[A-Z][A-Z0-9_]*)$")
# The app's own secrets, and the setting each falls back to on a laptop.
CORE = CORE_SECRETS


@dataclass(frozen=True)
class SecretRef:
    """A parsed reference; `str()` gives the reference text (never a value)."""

    text: str
    scheme: str  # vault | env
    mount: str = ""
    path: str = ""
    key: str = ""
    var: str = ""

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        if match := VAULT_REF.match(text):
            return cls(text, "vault", match["mount"], match["path"], match["key"])
        if match := ENV_REF.match(text):
            return cls(text, "env", var=match["var"])
        raise ValueError(
            f"{text!r} is not a secret reference: use vault:<mount>/<path>#<key> "
            "(e.g. vault:kv/apps/leave-requests/db#url) or env:NAME"
        )

    @property
    def location(self) -> str:
        return f"{self.mount}/{self.path}#{self.key}" if self.scheme == "vault" else self.var

    def __str__(self) -> str:
        return self.text


def dev_variable(name: str) -> str:
    """The dev backend's variable for a `vault:` secret: hr-db-url -> MICROAPP_SECRET_HR_DB_URL."""
    return "MICROAPP_SECRET_" + name.upper().replace("-", "_")


@dataclass
class _Entry:
    value: str
    expires: float
    refresh: float


class SecretStore:
    """Resolves declared secrets through Vault (cached) or the dev backend."""

    def __init__(
        self,
        refs: Mapping[str, SecretRef],
        *,
        vault: Any = None,
        environ: Mapping[str, str] | None = None,
        fallbacks: Mapping[str, str | None] | None = None,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        tracer: trace.Tracer | None = None,
    ):
        self.refs = dict(refs)
        self.vault = vault  # guardrails.secrets.vault.VaultClient, or None for the dev backend
        self.environ = dict(environ or {})
        self.fallbacks = dict(fallbacks or {})
        self.ttl = ttl
        self.retry = min(10.0, max(0.5, ttl / 10))  # pause between attempts while Vault fails
        self.clock = clock
        self.tracer = tracer or trace.get_tracer("guardrails.secrets")
        self._cache: dict[str, _Entry] = {}
        self._failing: dict[str, tuple[float, str]] = {}  # name -> (next attempt, reason)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def backend(self) -> str:
        return "vault" if self.vault is not None else "dev"

    # ------------------------------------------------------------------ reading
    def get(self, name: str) -> str:
        """The value of secret `name`, or SecretNotDeclared / SecretUnavailable."""
        ref = self.refs.get(name)
        if ref is None and name not in self.fallbacks:
            raise SecretNotDeclared(
                f"secret {name!r} is not declared: add it under `secrets:` in microapp.yaml"
            )
        with self.tracer.start_as_current_span("secret.read") as span:
            span.set_attribute("microapp.secret.name", name)
            try:
                if ref is not None and ref.scheme == "vault" and self.vault is not None:
                    span.set_attribute("microapp.secret.backend", "vault")
                    return self._from_vault(name, ref, span)
                span.set_attribute("microapp.secret.backend", "env")
                return self._from_env(name, ref)
            except SecretUnavailable as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.reason))
                raise

    def _from_env(self, name: str, ref: SecretRef | None) -> str:
        if ref is not None and ref.scheme == "env":
            value = self.environ.get(ref.var)
            where = f"the environment variable {ref.var} is not set"
        else:
            value = self.environ.get(dev_variable(name)) or self.fallbacks.get(name)
            where = (
                f"no Vault is configured (VAULT_ADDR) and {dev_variable(name)} is not set "
                "(put it in .env on a laptop)"
            )
        if not value:
            raise SecretUnavailable(name, where)
        return value

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _from_vault(self, name: str, ref: SecretRef, span) -> str:
        now = self.clock()
        entry = self._cache.get(name)
        if entry and now < entry.refresh:
            span.set_attribute("microapp.secret.cache", "hit")
            return entry.value
        lock = self._lock(name)
        failing = self._failing.get(name)
        if entry and now < entry.expires:
            # Due for a refresh: one caller refreshes; the others (and everyone while Vault is
            # failing and the next attempt is not due) keep using the value in hand.
            if (failing and now < failing[0]) or not lock.acquire(blocking=False):
                span.set_attribute("microapp.secret.cache", "stale")
                return entry.value
        elif failing and now < failing[0]:
            raise SecretUnavailable(name, failing[1])
        else:
            lock.acquire()
        try:
            return self._fetch(name, ref, span)
        finally:
            lock.release()

    def _fetch(self, name: str, ref: SecretRef, span) -> str:
        now = self.clock()
        entry = self._cache.get(name)
        if entry and now < entry.refresh:  # another caller refreshed it meanwhile
            return entry.value
        span.set_attribute("microapp.secret.cache", "refresh" if entry else "miss")
        try:
            value, lease = self.vault.read(ref)
        except VaultUnreachable as exc:
            reason = f"Vault cannot be reached ({exc})"
            self._failing[name] = (now + self.retry, reason + " and no valid cached value")
            if entry and now < entry.expires:
                log.warning(
                    "vault unreachable: serving the cached secret until it expires",
                    secret=name,
                    expires_in=round(entry.expires - now, 1),
                    error=str(exc),
                )
                span.set_attribute("microapp.secret.cache", "stale")
                return entry.value
            self._cache.pop(name, None)
            log.error(
                "vault unreachable and the cached secret expired", secret=name, error=str(exc)
            )
            raise SecretUnavailable(name, reason + "; the cached value has expired") from None
        except VaultRefused as exc:
            self._cache.pop(name, None)
            self._failing[name] = (now + self.retry, f"Vault refused: {exc}")
            log.error("vault refused a secret", secret=name, error=str(exc))
            raise SecretUnavailable(name, f"Vault refused: {exc}") from None
        ttl = min(lease, self.ttl) if lease and lease > 0 else self.ttl
        self._cache[name] = _Entry(value, now + ttl, now + ttl / 2)
        if self._failing.pop(name, None):
            log.info("vault reachable again: secret refreshed", secret=name)
        return value

    # ------------------------------------------------------------------ state
    def needs_fetch(self, names: Iterable[str]) -> bool:
        """True when reading any of `names` may talk to Vault (so: not on the event loop)."""
        if self.vault is None:
            return False
        now = self.clock()
        for name in names:
            ref = self.refs.get(name)
            if ref is None or ref.scheme != "vault":
                continue
            entry = self._cache.get(name)
            if entry is None or now >= entry.refresh:
                return True
        return False

    def vault_names(self) -> list[str]:
        return sorted(n for n, r in self.refs.items() if r.scheme == "vault")


# ---------------------------------------------------------------------- building
def declared(manifest) -> dict[str, SecretRef]:
    """The manifest's secrets, plus connectors' inline references (named `connector:<name>`)."""
    refs = {
        name: SecretRef.parse(text) for name, text in (manifest.raw.get("secrets") or {}).items()
    }
    for conn in manifest.raw.get("connectors") or []:
        text = conn.get("secret")
        if text and text.startswith(("vault:", "env:")):
            refs[f"connector:{conn['name']}"] = SecretRef.parse(text)
    return refs


def config_problems(manifest, refs: Mapping[str, SecretRef]) -> list[str]:
    """Connectors that name a secret the manifest does not declare."""
    found = []
    for conn in manifest.raw.get("connectors") or []:
        text = conn.get("secret")
        if text and not text.startswith(("vault:", "env:")) and text not in refs:
            found.append(
                f"connector {conn['name']} uses secret {text!r}, which is not declared under "
                "`secrets:` in microapp.yaml"
            )
    return found


def build_store(
    settings,
    manifest,
    refs=None,
    *,
    clock: Callable[[], float] = time.monotonic,
    tracer: trace.Tracer | None = None,
    fallbacks: Mapping[str, str] | None = None,
) -> SecretStore:
    """The store for one app: Vault when VAULT_ADDR is set, else the dev backend. `tracer`
    (the app's telemetry) traces secret reads and Vault calls; `fallbacks` are the values of
    the app's own secrets when neither Vault nor the settings have one (laptop defaults)."""
    refs = declared(manifest) if refs is None else refs
    tracer = tracer or trace.get_tracer("guardrails.secrets")
    vault = None
    if settings.vault.addr:
        from guardrails.secrets.vault import VaultClient

        vault = VaultClient(settings.vault, clock=clock, tracer=tracer)
    configured = {
        "session-key": settings.session_key,
        "sso-client-secret": settings.sso_client_secret,
        "database-url": settings.database_url,
    }
    for name, value in (fallbacks or {}).items():
        configured[name] = configured.get(name) or value
    return SecretStore(
        refs,
        vault=vault,
        environ=settings.environ,
        fallbacks=configured,
        ttl=settings.secrets_ttl,
        clock=clock,
        tracer=tracer,
    )


# ---------------------------------------------------------------------- secret()
def secret(name: str) -> str:
    """The current value of secret `name` (declared under `secrets:` in microapp.yaml).

    Call it when you need the value - do not keep it in a global: Vault may rotate it. Raises
    SecretUnavailable (the web app answers 503) when it cannot be served safely.
    """
    rt = current_runtime()
    if rt is None or rt.secrets is None:
        raise SecretError("no app is running: call secret() in a request or inside runtime()")
    return rt.secrets.get(name)
