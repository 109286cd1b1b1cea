"""What the manifest means for a cluster: the Helm chart's values and the expiry gate at deploy.

- `chart_values(data)`: the values the app's chart (deploy/chart/) reads from microapp.yaml:
  labels, image repository, resources from `quotas`, replicas and autoscaling, the Vault
  Kubernetes-auth role, and the egress destinations the manifest declares (the identity provider
  and each connector's host). The environment's own endpoints (Vault, OTLP collector, SIEM) and
  the CIDRs behind every host come from the owner's deploy/values-<environment>.yaml.
- `deploy_gate(data)`: may this app be deployed today? The expiry rule is rules.expiry_status;
  this only words the verdict for a pipeline (warn within the window, refuse after it).
- `release_record(...)`: the audit record of a release: each gate's result and who approved it,
  read from GitHub's or GitLab's own answers (`gate_results`, `approvals`).

`python -m guardrails deploy values|gate|record` print them.
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
    "requests_per_minute": 120,  # per signed-in caller, enforced by the app (guardrails.web)
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
            "stage": data["lifecycle"]["stage"],
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


def deploy_gate(
    data: Mapping[str, Any], today: dt.date | None = None, environment: str | None = None
) -> GateResult:
    """Refuse a deploy after `lifecycle.expires`; warn within EXPIRY_WARNING_DAYS of it.

    A production deploy also needs `lifecycle.stage: production`: the guardrails refuse the
    laptop fall-backs only at that stage, so a sandbox app never reaches production unchecked.
    """
    expires = str(data["lifecycle"]["expires"])
    status = expiry_status(expires, today)
    days = days_until_expiry(expires, today)
    app = data["app_id"]
    stage = data["lifecycle"].get("stage")
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
    if environment == "production" and stage != "production":
        message = (
            f"REFUSED: {app} is at lifecycle.stage {stage}, and only an app at stage production "
            "is deployed to production (at that stage the guardrails refuse the laptop "
            "fall-backs: SQLite, environment secrets, the local sign-in service).\n"
            "Set `lifecycle.stage: production` in microapp.yaml, run `make check`, commit and "
            "push (docs: Take an app to production)."
        )
        return GateResult(status, days, False, message)
    if status == "soon":
        message = (
            f"WARNING: {app} expires in {days} day(s) ({expires}, window "
            f"{EXPIRY_WARNING_DAYS} days). Deployed, but renew it before then with `make renew`."
        )
        return GateResult(status, days, True, message)
    return GateResult(status, days, True, f"{app}: expires {expires} ({days} day(s) left).")


# ---------------------------------------------------------------------- release record
def gate_results(data: Any) -> dict[str, str]:
    """Each gate job's result, from GitHub's `toJSON(needs)` ({job: {result}}) or GitLab's
    pipeline jobs API ([{name, status}])."""
    if isinstance(data, Mapping):
        return {job: str((value or {}).get("result", "unknown")) for job, value in data.items()}
    return {str(job["name"]): str(job.get("status", "unknown")) for job in data or []}


def approvals(data: Any) -> list[dict[str, Any]]:
    """Who approved (or rejected) a protected environment, from GitHub's run reviews
    ([{user: {login}, state, environments: [{name}], comment}]) or GitLab's deployments
    ([{environment: {name}, approvals: [{user: {username}, status, comment}]}])."""
    found = []
    for item in data or []:
        if "approvals" in item:  # a GitLab deployment
            environment = (item.get("environment") or {}).get("name", "")
            for approval in item["approvals"] or []:
                found.append(
                    {
                        "approver": (approval.get("user") or {}).get("username", ""),
                        "decision": approval.get("status", ""),
                        "environments": [environment],
                        "comment": approval.get("comment") or "",
                    }
                )
        else:  # a GitHub review of a pending deployment
            found.append(
                {
                    "approver": (item.get("user") or {}).get("login", ""),
                    "decision": item.get("state", ""),
                    "environments": [e.get("name", "") for e in item.get("environments") or []],
                    "comment": item.get("comment") or "",
                }
            )
    return found


def release_record(
    app_id: str,
    image: str,
    tier: int,
    gates: Mapping[str, str],
    approved: list[dict[str, Any]],
    actor: str,
    run: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The release's audit record: an audit event (docs: audit event) whose metadata holds every
    gate's result and every approval. Alone on its line it is a chain of one, so `python -m
    guardrails audit verify --file release-record.jsonl` proves it unedited."""
    import uuid

    from guardrails.auditing.log import GENESIS, event_hash

    passed = ("success", "skipped", "manual")
    if any(a["decision"] in ("rejected", "REJECTED") for a in approved):
        result = "denied"
    elif all(state in passed for state in gates.values()):
        result = "success"
    else:
        result = "failure"
    now = now or dt.datetime.now(dt.UTC)
    event = {
        "event_id": str(uuid.uuid4()),
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "app_id": app_id,
        "actor": {"id": actor, "roles": ["ci"]},
        "action": "release.deploy",
        "resource": {"type": "image", "id": image},
        "result": result,
        "request_id": run,
        "trace_id": "",
        "source_ip": "",
        "metadata": {"risk_tier": tier, "gates": dict(gates), "approvals": approved},
        "prev_hash": GENESIS,
    }
    return {**event, "hash": event_hash(event)}
