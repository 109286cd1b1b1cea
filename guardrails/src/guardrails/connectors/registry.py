"""Connectors: governed access to the databases and HTTP APIs declared in microapp.yaml.

    from guardrails import connector
    rows = connector("hr-db").query("SELECT name, email FROM staff WHERE team = :team", team=t)
    answer = connector("incidents").get("/incidents", params={"state": "open"})

`connector(name)` builds the connector of that name from the manifest's `connectors:` list - a
connector that is not declared there cannot be created. SQL connectors are in
guardrails.connectors.sql, HTTP connectors in guardrails.connectors.http. Every call is traced
with the connector's name, refusals are audited, and credentials come from guardrails.secrets.
The web app turns a ConnectorError into a page with its `status` (403, 429, 503, ...).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from opentelemetry import trace

from guardrails.connectors.errors import (  # the errors are part of this module's surface
    ConnectorError,
    ConnectorNotDeclared,
    ConnectorRateLimited,
    ConnectorRefused,
    ConnectorUnavailable,
    QueryRefused,
    refuse,
)
from guardrails.core.context import current_runtime
from guardrails.core.rules import is_secure_or_local_url

__all__ = [
    "ConnectorError",
    "ConnectorNotDeclared",
    "ConnectorRateLimited",
    "ConnectorRefused",
    "ConnectorUnavailable",
    "Connectors",
    "QueryRefused",
    "connector",
    "refuse",
    "spec_problems",
]


def spec_problems(manifest) -> list[str]:
    """What is missing or unsafe in the `connectors:` entries (checked at start-up)."""
    found, seen = [], set()
    production = manifest.stage == "production"
    for spec in manifest.raw.get("connectors") or []:
        name = spec["name"]
        if name in seen:
            found.append(f"connector {name} is declared twice")
        seen.add(name)
        if spec["type"] == "sql" and not spec.get("secret"):
            found.append(f"connector {name}: a sql connector needs `secret` (its database URL)")
        if spec["type"] == "http":
            base = spec.get("base_url") or ""
            if not base:
                found.append(f"connector {name}: an http connector needs `base_url`")
            elif production and not is_secure_or_local_url(base):
                found.append(f"connector {name}: base_url {base} is not https")
            if spec.get("auth") == "oauth2-client-credentials":
                missing = [k for k in ("token_url", "client_id", "secret") if not spec.get(k)]
                if missing:
                    found.append(f"connector {name}: oauth2-client-credentials needs {missing}")
    return found


class Connectors:
    """The app's connectors, built on first use from the manifest."""

    def __init__(
        self,
        manifest,
        secrets,
        tracer: trace.Tracer | None = None,
        *,
        ratelimit_storage_url: str | None = None,
    ):
        self.manifest = manifest
        self.secrets = secrets
        self.ratelimit_storage_url = ratelimit_storage_url
        self.tracer = tracer or trace.get_tracer("guardrails.connectors")
        self.specs = {spec["name"]: spec for spec in manifest.raw.get("connectors") or []}
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def secret_name(self, spec: dict[str, Any]) -> str:
        """The secret store name of a connector's `secret` (inline reference or declared name)."""
        text = spec["secret"]
        return f"connector:{spec['name']}" if text.startswith(("vault:", "env:")) else text

    def masking_key(self) -> bytes:
        if "masking-key" in self.secrets.refs:
            return self.secrets.get("masking-key").encode("utf-8")
        return hashlib.sha256(f"microapp-masking:{self.manifest.app_id}".encode()).digest()

    def get(self, name: str):
        with self._lock:
            built = self._built.get(name)
            if built is not None:
                return built
            spec = self.specs.get(name)
            if spec is None:
                declared = ", ".join(sorted(self.specs)) or "none"
                raise ConnectorNotDeclared(
                    f"connector {name!r} is not declared in microapp.yaml (declared: {declared}); "
                    "add it under `connectors:` - undeclared connectors cannot be created"
                )
            if spec["type"] == "sql":
                from guardrails.connectors.sql import SqlConnector

                built = SqlConnector(spec, self)
            else:
                from guardrails.connectors.http import HttpConnector

                built = HttpConnector(spec, self)
            self._built[name] = built
            return built

    def close(self) -> None:
        with self._lock:
            for built in self._built.values():
                built.close()
            self._built.clear()


def connector(name: str):
    """The connector declared as `name` in microapp.yaml (SqlConnector or HttpConnector)."""
    rt = current_runtime()
    if rt is None or rt.connectors is None:
        raise ConnectorError("no app is running: call connector() in a request or in runtime()")
    return rt.connectors.get(name)
