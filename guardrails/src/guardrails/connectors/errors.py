"""The connectors' errors, and `refuse()`, which audits a refused call.

Apart from the registry (guardrails.connectors.registry) so that the SQL and HTTP connectors,
which the registry builds, do not import the registry back.
"""

from __future__ import annotations

from typing import Any

import structlog

from guardrails.auditing.log import audit

log = structlog.get_logger("guardrails.connectors")


class ConnectorError(RuntimeError):
    """A connector call that did not happen or did not succeed; `status` is for the web page."""

    status = 500
    title = "Error"
    retry_after: int | None = None  # seconds, sent as Retry-After when set


class ConnectorNotDeclared(ConnectorError):
    """The code asked for a connector that microapp.yaml does not declare."""


class ConnectorRefused(ConnectorError):
    """The guardrails refused the call (a write on a read-only connector, another host, ...)."""

    status = 403
    title = "Not allowed"


class QueryRefused(ConnectorError):
    """The SQL text breaks a rule (values inline instead of parameters, several statements)."""


class ConnectorRateLimited(ConnectorError):
    """The connector's own budget (`rate_limit_per_minute`, shared by every user of the app)
    ran out: 503 with Retry-After, since it is not the caller's doing. A single user's budget
    is `limit_per_user` (429)."""

    status = 503
    title = "Temporarily unavailable"

    def __init__(self, message: str, retry_after: int = 60):
        super().__init__(message)
        self.retry_after = retry_after


class ConnectorUnavailable(ConnectorError):
    """The system behind the connector did not answer in time (after retries)."""

    status = 503
    title = "Temporarily unavailable"
    retry_after = 30


def refuse(name: str, what: str, message: str, **metadata: Any) -> ConnectorRefused:
    """Audit a refused call (result `denied`) and return the error to raise."""
    audit.record(
        f"connector.{what}",
        result="denied",
        resource=("connector", name),
        metadata={"reason": message, **metadata},
    )
    log.warning("connector call refused", connector=name, reason=message)
    return ConnectorRefused(message)
