"""The CoE's rules over the manifest and the environment: one home for each fact.

- `risk_tier(data)`: the risk tier and the reasons for it (never by kind: by what the app does).
- `is_local_url(url)`: plain http is allowed only to this machine itself.
- `EXPIRY_WARNING_DAYS`, `expiry_status()`: when an app's expiry becomes a warning.
- `MAX_EXPIRY_DAYS`, `renewed_expiry()`: how far ahead an app may be renewed (`make renew`).
- `REQUIRED_APPROVALS`: who approves a promotion, per risk tier.
- `production_problems()`: what a production app may not use.

The Rego policies (policy/*.rego) do not recompute these: guardrails.core.policy passes the
verdicts computed here as `data.verdicts`, and the policies compare the manifest to them.
Standard library only, so `python -m guardrails manifest check` stays fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

RESTRICTED_CLASSES = ("restricted", "regulated")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
EXPIRY_WARNING_DAYS = 30


# ---------------------------------------------------------------------- risk tier
def risk_tier(data: Mapping[str, Any]) -> tuple[int, list[str]]:
    """The CoE risk tier of a (schema 3) manifest and the reasons for it.

    3: PII, restricted or regulated data, or an external connector (full sign-off).
    2: the app writes data (`data.writes`) or has a read-write connector (security review).
    1: read-only over internal-or-lower data, no PII, nothing external (auto-approved).
    """
    data_block = data.get("data") or {}
    connectors = data.get("connectors") or []
    high = []
    if data_block.get("pii"):
        high.append("handles personal data (PII)")
    if data_block.get("classification") in RESTRICTED_CLASSES:
        high.append(f"data is {data_block['classification']}")
    high += [f"connector {c.get('name')} is external" for c in connectors if c.get("external")]
    if high:
        return 3, high
    writes = []
    if data_block.get("writes"):
        writes.append("the app writes data (data.writes)")
    writes += [
        f"connector {c.get('name')} is read-write"
        for c in connectors
        if c.get("access") != "read-only"
    ]
    if writes:
        return 2, writes
    return 1, ["read-only, internal-or-lower data, no PII, nothing external"]


# ---------------------------------------------------------------------- local URLs
def is_local_url(url: str | None) -> bool:
    """True for plain http to this machine itself: host exactly localhost, 127.0.0.1 or ::1.

    `http://localhost.attacker.example` and `http://localhost@evil.example` are not local.
    """
    if not url:
        return False
    try:
        parts = urlsplit(str(url).strip())
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme == "http" and host in LOCAL_HOSTS


def is_secure_or_local_url(url: str | None) -> bool:
    """https anywhere, or plain http to this machine (is_local_url)."""
    return bool(url) and (str(url).startswith("https://") or is_local_url(url))


# ---------------------------------------------------------------------- expiry
def days_until_expiry(expires: dt.date | str, today: dt.date | None = None) -> int:
    expires = dt.date.fromisoformat(expires) if isinstance(expires, str) else expires
    return (expires - (today or dt.date.today())).days


MAX_EXPIRY_DAYS = 730  # the longest an app lives without its owner renewing it


def renewed_expiry(days: int = MAX_EXPIRY_DAYS, today: dt.date | None = None) -> dt.date:
    """The new `lifecycle.expires` of a renewal by `days` from today (1 to MAX_EXPIRY_DAYS)."""
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise ValueError(
            f"an app may be renewed for 1 to {MAX_EXPIRY_DAYS} days at a time, not {days}"
        )
    return (today or dt.date.today()) + dt.timedelta(days=days)


def expiry_status(expires: dt.date | str, today: dt.date | None = None) -> str:
    """ "expired" after the date, "soon" within EXPIRY_WARNING_DAYS of it, else "ok"."""
    days = days_until_expiry(expires, today)
    if days < 0:
        return "expired"
    if days <= EXPIRY_WARNING_DAYS:
        return "soon"
    return "ok"


# ---------------------------------------------------------------------- promotion
REQUIRED_APPROVALS = {
    1: ("none: promoted automatically once the tests and the policies pass",),
    2: ("security review",),
    3: ("security review", "data-governance sign-off"),
}


# ---------------------------------------------------------------------- verdicts for Rego
def verdicts(data: Mapping[str, Any], today: dt.date | None = None) -> dict[str, Any]:
    """What the Rego policies receive as `data.verdicts`: the facts computed here."""
    tier, reasons = risk_tier(data)
    expires = str((data.get("lifecycle") or {}).get("expires"))
    urls = [c["base_url"] for c in data.get("connectors") or [] if c.get("base_url")]
    return {
        "risk_tier": tier,
        "tier_reasons": reasons,
        "local_urls": {url: is_local_url(url) for url in urls},
        "expiry": expiry_status(expires, today),
        "days_until_expiry": days_until_expiry(expires, today),
    }


# ---------------------------------------------------------------------- production
def production_problems(settings, manifest, refs: Mapping[str, Any]) -> list[str]:
    """What a production app may not use (the laptop fall-backs); empty outside production.

    `refs` are the declared secret references (guardrails.secrets.store.declared).
    """
    if manifest.stage != "production":
        return []
    problems = []
    issuer = settings.sso_issuer or manifest.sso_issuer
    db_ref = refs.get("database-url")
    if (db_ref is None or db_ref.scheme != "vault") and settings.database_url.startswith("sqlite"):
        problems.append("DATABASE_URL points at SQLite; production needs PostgreSQL")
    if is_local_url(issuer):
        problems.append(f"the SSO issuer {issuer} is the local sign-in service")
    if not settings.base_url.startswith("https://"):
        problems.append(f"MICROAPP_BASE_URL {settings.base_url} is not https")
    vault = settings.vault
    if not vault.addr:
        problems.append(
            "VAULT_ADDR is not set: production secrets come from Vault, not from environment "
            "variables (the dev backend)"
        )
    elif not is_secure_or_local_url(vault.addr):
        problems.append(f"VAULT_ADDR {vault.addr} is not https")
    if settings.dotenv_file is not None:
        problems.append(f"a {settings.dotenv_file} file was read: remove it in production")
    for name, ref in sorted(refs.items()):
        if ref.scheme == "env":
            problems.append(f"secret {name} is {ref}: production secrets must be vault: references")
    for name, variable in CORE_SECRETS.items():
        ref = refs.get(name)
        if ref is None or ref.scheme != "vault":
            problems.append(
                f"{variable} is a laptop fall-back: declare secrets.{name} as a vault: reference"
            )
    return problems


# The app's own secrets, and the setting each falls back to on a laptop.
CORE_SECRETS = {
    "session-key": "MICROAPP_SESSION_KEY",
    "sso-client-secret": "MICROAPP_SSO_CLIENT_SECRET",
    "database-url": "DATABASE_URL",
}
