"""The secrets' errors: messages name secrets, never show values.

Apart from the store (guardrails.secrets.store) so that the Vault client, which the store uses,
does not import the store back.
"""

from __future__ import annotations


class SecretError(RuntimeError):
    """Base of the errors below; messages name secrets, never show values."""


class SecretNotDeclared(SecretError):
    """The code asked for a secret that microapp.yaml does not declare."""


class SecretUnavailable(SecretError):
    """The secret cannot be served now (Vault down and cache expired, or access refused)."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"secret {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason


class VaultUnreachable(SecretError):
    """Vault did not answer (network, timeout, sealed, 5xx): cached values may still serve."""


class VaultRefused(SecretError):
    """Vault answered no (login refused, permission denied, no such secret): fail closed."""


class VaultForbidden(VaultRefused):
    """HTTP 403: the token is invalid, expired or lacks the policy."""
