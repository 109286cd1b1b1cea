"""Column masking: what a connector does to sensitive values before they reach a page or export.

A connector's `masking:` block in microapp.yaml maps a column to a rule chosen for the column's
classification:

    email    jane.doe@example.com -> j***@example.com   (contact data: recognisable, not usable)
    partial  4111111111111111     -> ****1111           (identifiers: last four characters)
    hash     jane.doe@example.com -> hash:5f1c0a...      (pseudonym: same input, same output, so
                                                          grouping and joins still work)
    redact   85000                -> [redacted]         (restricted values: nothing shown)
    none     shown as it is (an explicit, reviewable decision)

`hash` is an HMAC keyed with the secret `masking-key` when the manifest declares one (do so for
restricted or regulated data: without it, a guessable value's pseudonym can be recomputed).
NULL stays NULL. Columns are matched by name, case-insensitively, on the query's result.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RULES = ("email", "partial", "hash", "redact", "none")
REDACTED = "[redacted]"


def mask(rule: str, value: Any, key: bytes) -> Any:
    """One value masked by `rule`."""
    if value is None or rule == "none":
        return value
    text = value if isinstance(value, str) else str(value)
    if rule == "email":
        local, at, domain = text.rpartition("@")
        return f"{local[:1]}***@{domain}" if at and local else "***"
    if rule == "partial":
        return "****" + text[-4:] if len(text) > 4 else "****"
    if rule == "hash":
        return "hash:" + hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:20]
    if rule == "redact":
        return REDACTED
    raise ValueError(f"unknown masking rule {rule!r}: use one of {', '.join(RULES)}")


class Masker:
    """Applies one connector's rules to result rows."""

    def __init__(self, rules: Mapping[str, str], key: Callable[[], bytes]):
        unknown = sorted(r for r in rules.values() if r not in RULES)
        if unknown:
            raise ValueError(f"unknown masking rule(s) {unknown}: use {', '.join(RULES)}")
        self.rules = {column.lower(): rule for column, rule in rules.items()}
        self._key = key

    def plan(self, columns: Sequence[str]) -> list[str | None]:
        """The rule for each result column (None: not masked)."""
        return [self.rules.get(c.lower().rsplit(".", 1)[-1]) for c in columns]

    def apply(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        plan = self.plan(columns)
        key = self._key() if "hash" in plan else b""
        return [
            {
                column: (value if rule is None else mask(rule, value, key))
                for column, rule, value in zip(columns, plan, row, strict=True)
            }
            for row in rows
        ]
