"""Secrets: the store behind `secret()` (dev backend or Vault) and the Vault client."""
