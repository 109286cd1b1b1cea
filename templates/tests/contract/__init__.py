"""Managed by the microapp template."""
