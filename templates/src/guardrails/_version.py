"""The guardrails version (the template release that shipped this package)."""

__version__ = "0.1.0"
