"""Your app: routes, pages and data model. Yours to edit - `copier update` never touches src/app.

Guardrails (sign-in, roles, audit, telemetry) come from the `guardrails` package; import only
the names it exports (see README.md).
"""
