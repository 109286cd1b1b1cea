# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""The guardrails version (the template release that shipped this package)."""

__version__ = "0.2.0"
