"""The canonical form of an audit event: the exact text that is hashed, stored and exported."""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64  # the prev_hash of the first event


def canonical(event: dict[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 characters kept (docs/reference/audit-event.md)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event: dict[str, Any]) -> str:
    """SHA-256 of the event without its `hash` field, lower-case hex."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()
