"""Guardrails: the CoE-managed safety layer of every micro app.

Managed by the microapp template: this package is byte-identical in every app and is replaced
by `copier update`. Do not edit it here; `make check` reports any drift. Propose changes to the
CoE instead. Import only the names below from app code: everything else may change between
template versions.
"""

from guardrails._version import __version__
from guardrails.audit import AuditError, audit
from guardrails.db import Model, db_session
from guardrails.sso import User, current_user, require_role, require_user
from guardrails.web import create_app, render

__all__ = [
    "AuditError",
    "Model",
    "User",
    "__version__",
    "audit",
    "create_app",
    "current_user",
    "db_session",
    "render",
    "require_role",
    "require_user",
]
