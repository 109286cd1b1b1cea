"""What the manifest means for a cluster: the Helm chart's values and the expiry gate at deploy.

- `chart_values(data)`: the values the app's chart (deploy/chart/) reads from microapp.yaml:
  labels, image repository, resources from `quotas`, replicas and autoscaling, the Vault
  Kubernetes-auth role, and the egress destinations the manifest declares (the identity provider
  and each connector's host). The environment's own endpoints (Vault, OTLP collector, SIEM) and
  the CIDRs behind every host come from the owner's deploy/values-<environment>.yaml.
- `deploy_gate(data)`: may this app be deployed today? The expiry rule is rules.expiry_status;
  this only words the verdict for a pipeline (warn within the window, refuse after it).

`python -m guardrails deploy values` and `python -m guardrails deploy gate` print them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from guardrails.core.rules import (
    EXPIRY_WARNING_DAYS,
    days_until_expiry,
    expiry_status,
    is_local_url,
    risk_tier,
)

# Defaults for the optional `quotas` and `deploy` fields of the manifest (the schema says the
# same in each field's description; a test keeps the two in step).
DEFAULT_QUOTAS = {
    "cpu": "100m",
    "cpu_limit": "500m",
    "memory": "256Mi",
    "replicas": 2,
}
DEFAULT_REGISTRY = "registry.example.com/microapps"
APP_PORT = 8000


def label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-_.")[:63]
    return value.rstrip("-_.") or "unknown"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def egress(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The destinations the manifest declares: the identity provider, then each connector with a
    URL (HTTP connectors' base_url and token_url). SQL connectors reach their database through a
    URL held in Vault, so their host is the environment's to give (values `egress.extra`).
    Plain-http URLs to this machine (the laptop's demo services) are left out."""
    found: dict[tuple[str, int], dict[str, Any]] = {}

    def add(name: str, url: str, purpose: str) -> None:
        if is_local_url(url):  # the laptop's own services (make dev) never leave the pod
            return
        host, port = _host_port(url)
        if host and (host, port) not in found:
            found[host, port] = {"name": name, "host": host, "port": port, "purpose": purpose}

    add("idp", data["sso"]["issuer"], "sign-in (sso.issuer)")
    for connector in data.get("connectors") or []:
        for key in ("base_url", "token_url"):
            if connector.get(key):
                add(
                    f"connector-{connector['name']}",
                    connector[key],
                    f"connector {connector['name']} ({key})",
                )
    return list(found.values())


def chart_values(data: Mapping[str, Any], template_version: str = "unknown") -> dict[str, Any]:
    """The chart's manifest-derived values (deploy/chart/values.yaml documents each key)."""
    quotas = {**DEFAULT_QUOTAS, **(data.get("quotas") or {})}
    deploy = data.get("deploy") or {}
    tier, _reasons = risk_tier(data)
    replicas = int(quotas["replicas"])
    max_replicas = int(quotas.get("max_replicas") or replicas)
    return {
        "app": {
            "id": data["app_id"],
            "name": data["name"],
            "kind": data["kind"],
            "owner": data["owner"],
            "team": data["team"],
            "teamLabel": label_value(data["team"]),
            "support": (data.get("support") or {}).get("contact", ""),
            "tier": tier,
            "classification": data["data"]["classification"],
            "pii": bool(data["data"]["pii"]),
            "expires": str(data["lifecycle"]["expires"]),
            "templateVersion": label_value(template_version),
        },
        "image": {"repository": f"{deploy.get('registry', DEFAULT_REGISTRY)}/{data['app_id']}"},
        "port": APP_PORT,
        "resources": {
            "requests": {"cpu": quotas["cpu"], "memory": quotas["memory"]},
            "limits": {"cpu": quotas["cpu_limit"], "memory": quotas["memory"]},
        },
        "replicas": replicas,
        "autoscaling": {
            "enabled": max_replicas > replicas,
            "minReplicas": replicas,
            "maxReplicas": max_replicas,
            "targetCPUUtilizationPercentage": 75,
        },
        "vault": {"role": deploy.get("vault_role", data["app_id"])},
        "egress": {"manifest": egress(data)},
    }


@dataclass(frozen=True)
class GateResult:
    """The deploy gate's verdict: `allowed`, and the lines to show (warning or refusal)."""

    status: str  # ok | soon | expired
    days_left: int
    allowed: bool
    message: str


def deploy_gate(data: Mapping[str, Any], today: dt.date | None = None) -> GateResult:
    """Refuse a deploy after `lifecycle.expires`; warn within EXPIRY_WARNING_DAYS of it."""
    expires = str(data["lifecycle"]["expires"])
    status = expiry_status(expires, today)
    days = days_until_expiry(expires, today)
    app = data["app_id"]
    if status == "expired":
        message = (
            f"REFUSED: {app} expired {-days} day(s) ago ({expires}); an expired app is not "
            "deployed, and the scheduled retire job scales it to zero.\n"
            "To renew it:\n"
            "  1. run `make renew` in the app (it asks the CoE's renewal questions and moves "
            "lifecycle.expires),\n"
            "  2. commit microapp.yaml and push: the pipeline runs the gates again,\n"
            "  3. the CoE approves the renewal in the pull request like any manifest change."
        )
        return GateResult(status, days, False, message)
    if status == "soon":
        message = (
            f"WARNING: {app} expires in {days} day(s) ({expires}, window "
            f"{EXPIRY_WARNING_DAYS} days). Deployed, but renew it before then with `make renew`."
        )
        return GateResult(status, days, True, message)
    return GateResult(status, days, True, f"{app}: expires {expires} ({days} day(s) left).")
