"""Core: settings, the manifest and its rules, policy, database, runtime, rate limiting, and
the one request context (`context`: the running app and the current request).

Nothing here imports the web layer or guardrails.testing.
"""
