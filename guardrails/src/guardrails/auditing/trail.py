"""Read the audit trail back: who did what to one resource, newest first (for pages).

Reads the running app's hash-chained JSONL file; an app whose events go only to a SIEM has no
local trail and gets an empty list.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from guardrails.auditing.log import JsonlChainSink
from guardrails.core.context import current_runtime


def trail(resource: tuple[str, Any], limit: int = 50) -> list[dict[str, Any]]:
    """The last `limit` events about `resource` (type, id), newest first."""
    rt = current_runtime()
    sinks = [s for s in (rt.audit_log.sinks if rt else []) if isinstance(s, JsonlChainSink)]
    if not sinks or not sinks[0].path.exists():
        return []
    wanted = {"type": resource[0], "id": str(resource[1])}
    found: deque[dict[str, Any]] = deque(maxlen=limit)
    with sinks[0].path.open("rb") as fh:
        for line in fh:
            if b'"resource":{' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:  # a line being written by another process, or damaged
                continue  # (`python -m guardrails audit verify` reports damage)
            if event.get("resource") == wanted:
                found.append(event)
    return list(reversed(found))
