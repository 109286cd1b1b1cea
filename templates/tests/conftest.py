"""Managed by the microapp template. Loads the guardrails test kit's fixtures (idp, live_app, ...)
from the `microapp-guardrails[testing]` package."""

pytest_plugins = ["guardrails.testing.plugin"]
