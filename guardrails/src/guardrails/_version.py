"""The guardrails version: the template release this SDK ships with (the one source of it)."""

__version__ = "1.0.0"
