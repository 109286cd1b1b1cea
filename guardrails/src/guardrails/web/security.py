"""What attackers leave behind: refusals counted, sampled in the log, and anonymous denials
kept from filling the audit store.

`security_event(reason, detail)` counts a refusal (a forged or expired bearer token, a tampered
session cookie, an injected authorization code, a refused ID token) in the metric
`microapp.security.refused{reason}` and logs it with the reason, at most LOG_PER_MINUTE times a
minute per reason (then one line saying how many were left out).

`audit_denial(...)` audits a refused request. A signed-in caller's denials are always audited;
an anonymous caller's are audited up to ANONYMOUS_PER_MINUTE per source address and
ANONYMOUS_TOTAL_PER_MINUTE in all (per app), then only counted (`anonymous_denial_not_audited`), so
anonymous traffic cannot fill the audit store.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from guardrails.auditing.log import audit
from guardrails.core import context

log = structlog.get_logger("guardrails.security")
LOG_PER_MINUTE = 5
ANONYMOUS_PER_MINUTE = 10
ANONYMOUS_TOTAL_PER_MINUTE = 100


class _Window:
    """Counts per key in fixed one-minute windows (small, in this process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.counts: dict[str, int] = {}

    def hit(self, key: str) -> tuple[int, dict[str, int]]:
        """This hit's number in the current window, and the previous window's counts when a
        new window began."""
        with self.lock:
            now = time.monotonic()
            finished: dict[str, int] = {}
            if now - self.start >= 60:
                finished, self.counts, self.start = self.counts, {}, now
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key], finished


_logged = _Window()  # one per process: it only thins out log lines


def _anonymous_window() -> _Window:
    """The anonymous-denial counts of the app running here (each app has its own)."""
    rt = context.current_runtime()
    window = getattr(rt, "anonymous_denials", None)
    if window is None:
        window = _Window()
        if rt is not None:
            rt.anonymous_denials = window
    return window


def security_event(reason: str, detail: str = "") -> None:
    """Count one refusal with `reason` and log it (sampled)."""
    rt = context.current_runtime()
    telemetry = getattr(rt, "telemetry", None)
    if telemetry is not None:
        telemetry.security_refusals.add(1, {"reason": reason})
    number, finished = _logged.hit(reason)
    for earlier, count in finished.items():
        if count > LOG_PER_MINUTE:
            log.warning(
                "security refusals not logged", reason=earlier, count=count - LOG_PER_MINUTE
            )
    if number <= LOG_PER_MINUTE:
        info = context.current_request()
        log.warning(
            "security refusal",
            reason=reason,
            detail=detail[:300],
            source_ip=info.source_ip if info else None,
        )


def audit_denial(action: str, *, result: str = "denied", **kwargs: Any) -> None:
    """audit.record for a refused request, bounded for anonymous callers (see above)."""
    info = context.current_request()
    if info is None or info.actor is not None or kwargs.get("actor") is not None:
        audit.record(action, result=result, **kwargs)
        return
    window = _anonymous_window()
    per_address, _ = window.hit(f"ip:{info.source_ip}")
    total, _ = window.hit("total")
    if per_address > ANONYMOUS_PER_MINUTE or total > ANONYMOUS_TOTAL_PER_MINUTE:
        security_event("anonymous_denial_not_audited", action)
        return
    audit.record(action, result=result, **kwargs)
