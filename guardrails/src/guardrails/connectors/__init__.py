"""Connectors: the registry behind `connector()`, the HTTP and SQL connectors, column masking,
their errors."""

import guardrails._authlib  # noqa: F401  (quiet authlib before any module of this package imports it)
