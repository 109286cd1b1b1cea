"""The web layer: `create_app`, pages, error pages, CSRF, server-side sessions, SSO."""

import guardrails._authlib  # noqa: F401  (quiet authlib before any module of this package imports it)
