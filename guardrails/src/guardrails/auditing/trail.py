"""Read the audit trail back: who did what to one resource, newest first (for pages).

Reads the running app's audit chain in its database (guardrails.auditing.chain), indexed by
resource type and id.
"""

from __future__ import annotations

from typing import Any

from guardrails.auditing import chain
from guardrails.core.context import current_runtime


def trail(resource: tuple[str, Any], limit: int = 50) -> list[dict[str, Any]]:
    """The last `limit` events about `resource` (type, id), newest first."""
    rt = current_runtime()
    if rt is None:
        return []
    with rt.audit_log.sessions() as session:
        return chain.trail(session, resource, limit)
