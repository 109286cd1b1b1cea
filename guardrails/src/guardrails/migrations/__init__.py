"""Alembic scripts: `env.py` (shared by guardrails' own tables and the app's `migrations/`),
the revision template, and `versions/` (guardrails' own tables, version table
`guardrails_alembic_version`). Run them through guardrails.core.migrate."""
