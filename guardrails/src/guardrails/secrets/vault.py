"""HashiCorp Vault through hvac: log in, keep the token alive, read KV version 2 secrets.

Auth methods (VAULT_AUTH_METHOD): `token` (VAULT_TOKEN, or VAULT_TOKEN_FILE such as a Vault
Agent sink, read again on every login), `approle` (role id and secret id, each from
VAULT_ROLE_ID_FILE / VAULT_SECRET_ID_FILE or the variable) and `kubernetes` (the service-account
JWT file and VAULT_KUBERNETES_ROLE). VAULT_ADDR, VAULT_NAMESPACE and VAULT_CACERT are passed to
hvac explicitly; TLS is always verified.

The token is renewed (renew-self) once two thirds of its lease have passed. When renewal is
refused, or can no longer extend the token (its max TTL), the client logs in again. A 403 on a
read gets one fresh login before it counts as refused. Errors come in two kinds: VaultUnreachable
(network, timeout, sealed, 5xx, 429: cached values may serve) and VaultRefused (Vault said no).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import hvac.exceptions as hvac_errors
import requests
import structlog
from opentelemetry import trace

from guardrails.core.settings import VaultSettings
from guardrails.secrets.errors import VaultForbidden, VaultRefused, VaultUnreachable

if TYPE_CHECKING:  # the store imports this module (lazily): no import back at run time
    from guardrails.secrets.store import SecretRef

log = structlog.get_logger("guardrails.vault")
TRANSIENT = (
    hvac_errors.VaultDown,
    hvac_errors.InternalServerError,
    hvac_errors.BadGateway,
    hvac_errors.RateLimitExceeded,
    hvac_errors.VaultNotInitialized,
    hvac_errors.UnexpectedError,
)
METHODS = ("token", "approle", "kubernetes")


def _read_file(path: str | None, what: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text("utf-8").strip() or None
    except OSError as exc:
        raise VaultRefused(f"cannot read {what} from {path}: {exc.strerror}") from None


def _errors(exc: hvac_errors.VaultError) -> str:
    errors = exc.errors if isinstance(exc.errors, list) else [exc.errors]
    return "; ".join(str(e) for e in errors if e) or "no details"


class VaultClient:
    """One app's Vault session. Thread-safe: calls are serialised (they are rare, cached)."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        tracer: trace.Tracer | None = None,
    ):
        if settings.auth_method not in METHODS:
            raise VaultRefused(
                f"unknown VAULT_AUTH_METHOD {settings.auth_method!r}: "
                f"use one of {', '.join(METHODS)}"
            )
        if settings.cacert and not Path(settings.cacert).exists():
            raise VaultRefused(f"VAULT_CACERT {settings.cacert} does not exist")
        self.settings = settings
        self.clock = clock
        self.tracer = tracer or trace.get_tracer("guardrails.vault")
        self._lock = threading.RLock()
        # token="" (not None): hvac must not pick a token up from the environment or ~/.vault-token
        self._client = hvac.Client(
            url=settings.addr,
            token="",
            namespace=settings.namespace or None,
            verify=settings.cacert or True,
            timeout=settings.timeout,
        )
        self._logged_in = False
        self._expires: float | None = None  # None: the token never expires
        self._renew_at: float | None = None
        self._renewable = False

    # ------------------------------------------------------------------ plumbing
    def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        """Run one hvac call in a span, turning its failures into VaultUnreachable/VaultRefused."""
        with self.tracer.start_as_current_span(f"vault {op}") as span:
            span.set_attribute("vault.operation", op)
            span.set_attribute("vault.auth_method", self.settings.auth_method)
            if self.settings.namespace:
                span.set_attribute("vault.namespace", self.settings.namespace)
            try:
                return fn()
            except requests.exceptions.SSLError:
                span.set_status(trace.Status(trace.StatusCode.ERROR, "tls"))
                raise VaultRefused(
                    f"{op}: the TLS certificate of {self.settings.addr} cannot be verified "
                    "(set VAULT_CACERT to the CA bundle that signed it)"
                ) from None
            except requests.exceptions.RequestException as exc:  # refused, reset, timed out
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "no answer"
                raise VaultUnreachable(f"{op}: {kind} from {self.settings.addr}") from None
            except hvac_errors.Forbidden as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, "403"))
                raise VaultForbidden(f"{op}: {_errors(exc)} (HTTP 403)") from None
            except TRANSIENT as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise VaultUnreachable(f"{op}: {_errors(exc)} ({type(exc).__name__})") from None
            except hvac_errors.VaultError as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise VaultRefused(f"{op}: {_errors(exc)} ({type(exc).__name__})") from None

    def _set_lease(self, ttl: int, renewable: bool) -> None:
        now = self.clock()
        self._logged_in = True
        self._renewable = renewable
        if ttl <= 0:  # e.g. a root token: no expiry, nothing to renew
            self._expires = self._renew_at = None
        else:
            self._expires = now + ttl
            self._renew_at = now + ttl * 2 / 3

    # ------------------------------------------------------------------ auth
    def login(self) -> None:
        """(Re-)authenticate with the configured method."""
        s = self.settings
        self._logged_in = False
        if s.auth_method == "token":
            token = _read_file(s.token_file, "the Vault token") or s.token
            if not token:
                raise VaultRefused("no Vault token: set VAULT_TOKEN or VAULT_TOKEN_FILE")
            self._client.token = token
            try:
                info = self._call("token lookup-self", self._client.auth.token.lookup_self)
            except VaultForbidden:
                raise VaultRefused(
                    "the Vault token was refused (expired or revoked): give the app a new one"
                ) from None
            data = info["data"]
            self._set_lease(int(data.get("ttl") or 0), bool(data.get("renewable")))
            return
        if s.auth_method == "approle":
            role_id = _read_file(s.role_id_file, "the AppRole role id") or s.role_id
            secret_id = _read_file(s.secret_id_file, "the AppRole secret id") or s.secret_id
            if not role_id or not secret_id:
                raise VaultRefused(
                    "AppRole needs VAULT_ROLE_ID (or _FILE) and VAULT_SECRET_ID (or _FILE)"
                )
            mount = s.auth_mount or "approle"
            response = self._call(
                "approle login",
                lambda: self._client.auth.approle.login(
                    role_id=role_id, secret_id=secret_id, mount_point=mount, use_token=True
                ),
            )
        else:
            jwt = _read_file(s.kubernetes_jwt_file, "the service-account token")
            if not jwt or not s.kubernetes_role:
                raise VaultRefused(
                    "Kubernetes auth needs VAULT_KUBERNETES_ROLE and the service-account token "
                    f"file ({s.kubernetes_jwt_file})"
                )
            mount = s.auth_mount or "kubernetes"
            response = self._call(
                "kubernetes login",
                lambda: self._client.auth.kubernetes.login(
                    role=s.kubernetes_role, jwt=jwt, mount_point=mount, use_token=True
                ),
            )
        auth = response["auth"]
        self._set_lease(int(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
        log.info("vault login", method=s.auth_method, lease_seconds=auth.get("lease_duration"))

    def _renew(self) -> None:
        before = (self._expires or 0) - self.clock()
        response = self._call("token renew-self", self._client.auth.token.renew_self)
        auth = response["auth"]
        ttl = int(auth.get("lease_duration") or 0)
        if 0 < ttl <= before + 1:
            # Renewal no longer extends the token (its max TTL is near): log in afresh.
            if self.settings.auth_method != "token":
                log.info("vault token at its max TTL: logging in again")
                self.login()
                return
            log.warning("vault token at its max TTL and cannot be renewed", expires_in=ttl)
            self._set_lease(ttl, False)
            return
        self._set_lease(ttl, bool(auth.get("renewable")))

    def ensure_token(self) -> None:
        """A usable token: log in if there is none or it expired; renew when two thirds passed."""
        now = self.clock()
        if not self._logged_in or (self._expires is not None and now >= self._expires - 1):
            self.login()
            return
        if self._renew_at is None or now < self._renew_at:
            return
        if not self._renewable:
            self.login()
            return
        try:
            self._renew()
        except VaultRefused as exc:
            log.info("vault refused to renew the token: logging in again", error=str(exc))
            self.login()

    # ------------------------------------------------------------------ reading
    def _read(self, ref: SecretRef) -> tuple[str, int]:
        try:
            response = self._call(
                "kv read",
                lambda: self._client.secrets.kv.v2.read_secret_version(
                    path=ref.path, mount_point=ref.mount, raise_on_deleted_version=True
                ),
            )
        except VaultForbidden:
            raise
        except VaultRefused as exc:
            if "InvalidPath" in str(exc):
                raise VaultRefused(
                    f"no secret at {ref.mount}/{ref.path} (missing, or its latest version was "
                    "deleted)"
                ) from None
            raise
        data = (response.get("data") or {}).get("data") or {}
        if ref.key not in data:
            raise VaultRefused(f"the secret at {ref.mount}/{ref.path} has no key {ref.key!r}")
        value = data[ref.key]
        if not isinstance(value, str):
            raise VaultRefused(f"{ref.location} is not a text value")
        return value, int(response.get("lease_duration") or 0)

    def read(self, ref: SecretRef) -> tuple[str, int]:
        """(value, lease seconds) of a `vault:` reference; 0 means no lease (KV version 2)."""
        with self._lock:
            self.ensure_token()
            try:
                return self._read(ref)
            except VaultForbidden:
                self.login()  # revoked or expired early: one fresh login, then decide
                try:
                    return self._read(ref)
                except VaultForbidden:
                    raise VaultRefused(
                        f"permission denied on {ref.mount}/data/{ref.path}: the app's Vault "
                        "policy must allow `read` on it"
                    ) from None
