"""Your app: routes, pages and the incident adapters. Yours to edit - `copier update` never
touches src/app.

Guardrails (sign-in, roles, the incident connector, rate limits, audit, telemetry) come from the
`guardrails` package; import only the names it exports (see README.md).
"""
