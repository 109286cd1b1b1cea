"""microapp-guardrails: the CoE's safety layer for micro apps (the SDK every app depends on).

Apps import only the names in `__all__`; everything else may change between releases. The
names are resolved on first use, so `python -m guardrails manifest check` stays fast and
importing `guardrails` loads neither the web framework nor OpenTelemetry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from guardrails._version import __version__

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from guardrails.auditing.log import Actor, AuditError, audit
    from guardrails.auditing.log import verify_file as verify_audit
    from guardrails.auditing.trail import trail as audit_trail
    from guardrails.connectors.registry import ConnectorError, connector
    from guardrails.core.db import Model
    from guardrails.core.housekeeping import schedule
    from guardrails.core.manifest import Manifest, load_manifest
    from guardrails.core.paging import Page, count_rows, keyset_page
    from guardrails.core.runtime import runtime
    from guardrails.secrets.store import SecretUnavailable, secret
    from guardrails.web.app import create_app, render
    from guardrails.web.deps import db_session
    from guardrails.web.ratelimit import limit_per_user
    from guardrails.web.sso import User, current_user, require_role, require_user

# public name -> (module, attribute)
_PUBLIC: dict[str, tuple[str, str]] = {
    "Actor": ("guardrails.auditing.log", "Actor"),
    "AuditError": ("guardrails.auditing.log", "AuditError"),
    "ConnectorError": ("guardrails.connectors.registry", "ConnectorError"),
    "Manifest": ("guardrails.core.manifest", "Manifest"),
    "Model": ("guardrails.core.db", "Model"),
    "Page": ("guardrails.core.paging", "Page"),
    "SecretUnavailable": ("guardrails.secrets.store", "SecretUnavailable"),
    "User": ("guardrails.web.sso", "User"),
    "audit": ("guardrails.auditing.log", "audit"),
    "audit_trail": ("guardrails.auditing.trail", "trail"),
    "connector": ("guardrails.connectors.registry", "connector"),
    "count_rows": ("guardrails.core.paging", "count_rows"),
    "create_app": ("guardrails.web.app", "create_app"),
    "current_user": ("guardrails.web.sso", "current_user"),
    "db_session": ("guardrails.web.deps", "db_session"),
    "keyset_page": ("guardrails.core.paging", "keyset_page"),
    "limit_per_user": ("guardrails.web.ratelimit", "limit_per_user"),
    "load_manifest": ("guardrails.core.manifest", "load_manifest"),
    "render": ("guardrails.web.app", "render"),
    "require_role": ("guardrails.web.sso", "require_role"),
    "require_user": ("guardrails.web.sso", "require_user"),
    "runtime": ("guardrails.core.runtime", "runtime"),
    "schedule": ("guardrails.core.housekeeping", "schedule"),
    "secret": ("guardrails.secrets.store", "secret"),
    "verify_audit": ("guardrails.auditing.log", "verify_file"),
}

__all__ = [
    "Actor",
    "AuditError",
    "ConnectorError",
    "Manifest",
    "Model",
    "Page",
    "SecretUnavailable",
    "User",
    "__version__",
    "audit",
    "audit_trail",
    "connector",
    "count_rows",
    "create_app",
    "current_user",
    "db_session",
    "keyset_page",
    "limit_per_user",
    "load_manifest",
    "render",
    "require_role",
    "require_user",
    "runtime",
    "schedule",
    "secret",
    "verify_audit",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'guardrails' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
