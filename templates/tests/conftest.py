"""Managed by the microapp template. Loads the guardrails test fixtures (idp, live_app, ...)."""

pytest_plugins = ["guardrails.testing"]
