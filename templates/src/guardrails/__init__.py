"""Guardrails: the CoE-managed safety layer of every micro app.

Managed by the microapp template: this package is byte-identical in every app and is replaced
by `copier update`. Do not edit it here; `make check` reports any drift. Propose changes to the
CoE instead. Import only the names below from app code: everything else may change between
template versions.
"""

import warnings

from authlib.deprecate import AuthlibDeprecationWarning

# authlib announces future moves of APIs it still supports (its httpx glue, authlib.jose);
# they are not the app's to fix and would drown the output of `make dev`. (Importing
# authlib.deprecate installs an "always" filter; this one goes in front of it.)
warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)

from guardrails._version import __version__  # noqa: E402
from guardrails.audit import Actor, AuditError, audit  # noqa: E402
from guardrails.audit_trail import trail as audit_trail  # noqa: E402
from guardrails.connectors import ConnectorError, connector  # noqa: E402
from guardrails.db import Model, db_session  # noqa: E402
from guardrails.ratelimit import limit_per_user  # noqa: E402
from guardrails.secrets import SecretUnavailable, secret  # noqa: E402
from guardrails.sso import User, current_user, require_role, require_user  # noqa: E402
from guardrails.web import create_app, render  # noqa: E402

__all__ = [
    "Actor",
    "AuditError",
    "ConnectorError",
    "Model",
    "SecretUnavailable",
    "User",
    "__version__",
    "audit",
    "audit_trail",
    "connector",
    "create_app",
    "current_user",
    "db_session",
    "limit_per_user",
    "render",
    "require_role",
    "require_user",
    "secret",
]
