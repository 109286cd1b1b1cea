"""Secrets: the store behind `secret()` (dev backend or Vault), the Vault client, their
errors."""
