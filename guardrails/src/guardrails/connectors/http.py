"""HTTP connector: an httpx client that can reach one declared API and nothing else.

    api = connector("incidents")
    answer = api.get("/incidents", params={"state": "open"})   # an httpx.Response
    api.post("/incidents/42/ack", json={"note": "on it"})

- Only URLs under the declared `base_url` (same scheme, host, port, path prefix) are sent; any
  other target is refused and audited. Redirects are not followed.
- `access: read-only` allows GET, HEAD and OPTIONS only.
- Timeouts (`timeout_seconds`, default 10). Idempotent calls (GET, HEAD, OPTIONS, PUT, DELETE)
  are retried `retries` times (default 2) on network errors and 429/502/503/504, with
  exponential backoff and jitter (Retry-After is honoured up to 5 s).
- `auth: oauth2-client-credentials`: authlib fetches a short-lived token from `token_url` with
  `client_id` and the client secret (`secret`, through guardrails.secrets); it is fetched again
  shortly before it expires, and once more if the API answers 401.
- `rate_limit_per_minute`: at most that many requests in any 60 s (ConnectorRateLimited).
- Each call is a CLIENT span named after the connector; the W3C `traceparent` header carries
  the trace to the API.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any

import httpx
import structlog
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from opentelemetry import propagate, trace

from guardrails.connectors.errors import (
    ConnectorError,
    ConnectorRateLimited,
    ConnectorUnavailable,
    refuse,
)
from guardrails.core.ratelimit import RateLimiter, RateLimitUnavailable

log = structlog.get_logger("guardrails.http_connector")
SAFE = {"GET", "HEAD", "OPTIONS"}
IDEMPOTENT = SAFE | {"PUT", "DELETE"}
RETRY_STATUSES = {429, 502, 503, 504}
BACKOFF = 0.2  # seconds before the first retry; doubles each time


class TokenSource:
    """OAuth2 client-credentials tokens (authlib), fetched again shortly before expiry."""

    def __init__(self, connector: HttpConnector, spec: dict[str, Any]):
        self.connector = connector
        self.token_url = spec["token_url"]
        self.client_id = spec["client_id"]
        self.scope = " ".join(spec.get("scopes") or []) or None
        self._token: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _fresh(self) -> bool:
        token = self._token
        if not token:
            return False
        expires_at = token.get("expires_at")
        if not expires_at:
            return True
        lifetime = float(token.get("expires_in") or 60)
        leeway = min(30.0, max(1.0, lifetime / 5))  # refresh in the last fifth (at most 30 s)
        return time.time() < float(expires_at) - leeway

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def bearer(self) -> str:
        with self._lock:
            if not self._fresh():
                self._token = self._fetch()
            return self._token["access_token"]

    def _fetch(self) -> dict[str, Any]:
        c = self.connector
        secret = c.registry.secrets.get(c.secret_name)
        with c.registry.tracer.start_as_current_span(
            f"connector {c.name} token", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("microapp.connector.name", c.name)
            span.set_attribute("url.full", self.token_url)
            client = OAuth2Client(
                client_id=self.client_id,
                client_secret=secret,
                scope=self.scope,
                token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name)
                timeout=c.timeout,
            )
            try:
                token = client.fetch_token(self.token_url, grant_type="client_credentials")
            except OAuthError as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.error or "oauth"))
                raise ConnectorUnavailable(
                    f"{c.name}: the token endpoint refused the client credentials ({exc.error})"
                ) from None
            except httpx.HTTPError as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise ConnectorUnavailable(
                    f"{c.name}: the token endpoint cannot be reached ({type(exc).__name__})"
                ) from None
            finally:
                client.close()
        log.info("oauth2 token fetched", connector=c.name, expires_in=token.get("expires_in"))
        return dict(token)


class HttpConnector:
    """One declared `type: http` connector."""

    def _limited(self) -> float:
        try:
            return self.limiter.take()
        except RateLimitUnavailable as exc:
            raise ConnectorUnavailable(
                f"{self.name}: its rate limit cannot be checked ({exc}); try again soon"
            ) from exc

    def __init__(self, spec: dict[str, Any], registry):
        self.name = spec["name"]
        self.registry = registry
        self.read_only = spec["access"] == "read-only"
        base = spec["base_url"]
        self.base_url = httpx.URL(base if base.endswith("/") else base + "/")
        self.timeout = float(spec.get("timeout_seconds", 10))
        self.retries = int(spec.get("retries", 2))
        limit = spec.get("rate_limit_per_minute")
        self.limiter = (
            RateLimiter(
                int(limit),
                storage_url=registry.ratelimit_storage_url,
                namespace=f"{registry.manifest.app_id}:connector:{self.name}",
                fail_open=registry.manifest.limits_fail_open,
            )
            if limit
            else None
        )
        oauth = spec.get("auth") == "oauth2-client-credentials"
        self.secret_name = registry.secret_name(spec) if oauth else ""
        self.tokens = TokenSource(self, spec) if oauth else None
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ guards
    def _target(self, url: str | httpx.URL) -> httpx.URL:
        """The absolute URL for `url` (relative to base_url), or a refusal."""
        text = str(url)
        base = self.base_url
        try:
            target = base.join(text.lstrip("/") if "://" not in text else text)
        except httpx.InvalidURL as exc:
            raise refuse(
                self.name, "refused", f"{self.name}: {text!r} is not a valid URL ({exc})"
            ) from None
        same_origin = (target.scheme, target.host, target.port) == (
            base.scheme,
            base.host,
            base.port,
        )
        raw_path = target.raw_path.split(b"?", 1)[0].lower()
        # Encoded dots and slashes could leave base_url at a server that decodes them again.
        encoded = any(seq in raw_path for seq in (b"%2e", b"%2f", b"%5c"))
        if not same_origin or not target.path.startswith(base.path) or encoded:
            raise refuse(
                self.name,
                "refused",
                f"{self.name} may only call {base}; {target.scheme}://{target.host} "
                f"{target.path} is outside it",
                target_host=target.host,
            )
        return target

    # ------------------------------------------------------------------ calls
    def request(self, method: str, url: str | httpx.URL = "", **kwargs: Any) -> httpx.Response:
        """Send one request (with the guardrails above); returns the final httpx.Response."""
        method = method.upper()
        if self.read_only and method not in SAFE:
            raise refuse(
                self.name,
                "write",
                f"{self.name} is declared read-only in microapp.yaml: {method} is refused",
                method=method,
            )
        target = self._target(url)
        with self.registry.tracer.start_as_current_span(
            f"connector {self.name} {method}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attribute("microapp.connector.name", self.name)
            span.set_attribute("microapp.connector.type", "http")
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.full", str(target.copy_with(query=None)))
            span.set_attribute("server.address", target.host)
            response = self._send(method, target, kwargs, span)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(response.status_code)))
            return response

    def _send(self, method: str, target: httpx.URL, kwargs: dict[str, Any], span):
        attempt, reauthorised = 0, False
        extra_headers = dict(kwargs.pop("headers", None) or {})
        kwargs["follow_redirects"] = False  # a redirect could lead outside base_url
        while True:
            wait = self._limited() if self.limiter is not None else 0
            if wait:
                span.set_status(trace.Status(trace.StatusCode.ERROR, "rate limited"))
                seconds = max(1, math.ceil(wait))
                raise ConnectorRateLimited(
                    f"the app-wide budget of the {self.name} connector ({self.limiter.limit} calls "
                    f"a minute, shared by all its users) is used up; try again in {seconds} s",
                    retry_after=seconds,
                )
            headers = dict(extra_headers)
            propagate.inject(headers)  # W3C traceparent of this span
            if self.tokens is not None:
                headers["Authorization"] = f"Bearer {self.tokens.bearer()}"
            attempt += 1
            span.set_attribute("microapp.connector.attempts", attempt)
            try:
                response = self._client.request(method, target, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if method in IDEMPOTENT and attempt <= self.retries:
                    self._pause(attempt, None)
                    continue
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                kind = (
                    "timed out" if isinstance(exc, httpx.TimeoutException) else "cannot be reached"
                )
                raise ConnectorUnavailable(f"{self.name}: {target.host} {kind}") from None
            if response.status_code == 401 and self.tokens is not None and not reauthorised:
                reauthorised = True  # the token may have been revoked: one fresh token
                self.tokens.invalidate()
                attempt -= 1
                continue
            if (
                response.status_code in RETRY_STATUSES
                and method in IDEMPOTENT
                and attempt <= self.retries
            ):
                self._pause(attempt, response.headers.get("retry-after"))
                continue
            return response

    @staticmethod
    def _pause(attempt: int, retry_after: str | None) -> None:
        delay = BACKOFF * 2 ** (attempt - 1) * (0.5 + random.random() / 2)  # noqa: S311
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, min(5.0, float(retry_after)))
        time.sleep(delay)

    def get(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


__all__ = ["ConnectorError", "HttpConnector", "TokenSource"]
