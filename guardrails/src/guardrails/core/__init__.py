"""Core: settings, the manifest and its rules, policy, database, runtime, rate limiting.

Nothing here imports the web layer or guardrails.testing.
"""
