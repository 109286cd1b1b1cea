"""guardrails.core.deployment: the chart's values from a manifest, and the expiry gate."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources

import pytest

from guardrails.cli import main
from guardrails.core.deployment import (
    DEFAULT_QUOTAS,
    DEFAULT_REGISTRY,
    approvals,
    chart_values,
    deploy_gate,
    egress,
    gate_results,
    label_value,
    release_record,
)
from guardrails.core.rules import EXPIRY_WARNING_DAYS

MANIFEST = {
    "app_id": "leave-requests",
    "name": "Leave requests",
    "kind": "approval",
    "owner": "hr-ops@example.com",
    "team": "HR operations (EMEA)",
    "support": {"contact": "#hr-ops"},
    "data": {"classification": "internal", "pii": False, "writes": True, "retention_days": 30},
    "lifecycle": {"stage": "sandbox", "created": "2026-11-01", "expires": "2027-05-01"},
    "sso": {"issuer": "https://idp.example.com/realms/corp", "client_id": "x", "roles": {}},
    "connectors": [],
}


def test_egress_is_the_identity_provider_and_each_connector_host_once():
    assert egress(MANIFEST) == [
        {"name": "idp", "host": "idp.example.com", "port": 443, "purpose": "sign-in (sso.issuer)"}
    ]
    with_api = {
        **MANIFEST,
        "connectors": [
            {"name": "hr", "type": "sql", "access": "read-only", "secret": "vault:kv/a#b"},
            {
                "name": "tickets",
                "type": "http",
                "access": "read-only",
                "base_url": "https://tickets.example.com:8443/api",
                "token_url": "https://idp.example.com/token",
            },
            {
                "name": "demo",
                "type": "http",
                "access": "read-only",
                "base_url": "http://127.0.0.1:9/",
            },
        ],
    }
    assert [(d["host"], d["port"]) for d in egress(with_api)] == [
        ("idp.example.com", 443),
        ("tickets.example.com", 8443),
    ]


def test_chart_values_take_defaults_and_the_manifests_quotas():
    values = chart_values(MANIFEST, "v1.2.3")
    assert values["image"]["repository"] == f"{DEFAULT_REGISTRY}/leave-requests"
    assert values["resources"]["limits"]["memory"] == DEFAULT_QUOTAS["memory"]
    assert values["app"]["tier"] == 2 and values["app"]["teamLabel"] == "HR-operations-EMEA"
    assert values["autoscaling"]["enabled"] is False
    sized = chart_values(
        {
            **MANIFEST,
            "quotas": {"cpu": "250m", "memory": "1Gi", "replicas": 3, "max_replicas": 9},
            "deploy": {"registry": "reg.example.com/team", "vault_role": "leave"},
        }
    )
    assert sized["resources"] == {
        "requests": {"cpu": "250m", "memory": "1Gi"},
        "limits": {"cpu": DEFAULT_QUOTAS["cpu_limit"], "memory": "1Gi"},
    }
    assert sized["autoscaling"]["enabled"] and sized["autoscaling"]["maxReplicas"] == 9
    assert sized["image"]["repository"] == "reg.example.com/team/leave-requests"
    assert sized["vault"]["role"] == "leave"


def test_schema_describes_the_same_defaults():
    schema = json.loads(
        resources.files("guardrails.core").joinpath("manifest.schema.json").read_text("utf-8")
    )
    quotas = schema["properties"]["quotas"]["properties"]
    for key, default in DEFAULT_QUOTAS.items():
        assert f"default {default}" in quotas[key]["description"], key
    registry = schema["properties"]["deploy"]["properties"]["registry"]["description"]
    assert f"default {DEFAULT_REGISTRY}" in registry


@pytest.mark.parametrize("text", ["a" * 80, "--x--", "é@ü", "HR ops"])
def test_label_values_are_valid(text):
    value = label_value(text)
    assert len(value) <= 63 and value[0].isalnum() and value[-1].isalnum()


def test_gate_allows_warns_and_refuses_around_the_expiry_date():
    expires = dt.date(2027, 5, 1)
    ok = deploy_gate(MANIFEST, expires - dt.timedelta(days=EXPIRY_WARNING_DAYS + 1))
    soon = deploy_gate(MANIFEST, expires - dt.timedelta(days=EXPIRY_WARNING_DAYS))
    last = deploy_gate(MANIFEST, expires)
    expired = deploy_gate(MANIFEST, expires + dt.timedelta(days=1))
    assert (ok.status, ok.allowed) == ("ok", True)
    assert (soon.status, soon.allowed, last.allowed) == ("soon", True, True)
    assert "make renew" in soon.message
    assert (expired.status, expired.allowed) == ("expired", False)
    assert "REFUSED" in expired.message and "make renew" in expired.message


def test_gate_command_exits_1_after_expiry_and_writes_the_ci_outputs(tmp_path, capsys):
    import yaml

    manifest = tmp_path / "microapp.yaml"
    data = {**MANIFEST, "schema_version": 3, "risk_tier": 2}
    data["sso"] = {**data["sso"], "roles": {"user": ["all"]}}
    manifest.write_text(yaml.safe_dump(data))
    outputs = tmp_path / "outputs"
    args = ["deploy", "gate", "--file", str(manifest), "--outputs", str(outputs)]
    assert main([*args, "--today", "2027-05-02"]) == 1
    assert "make renew" in capsys.readouterr().err
    assert main([*args, "--today", "2027-04-20"]) == 0
    assert outputs.read_text().splitlines() == [
        "expiry=expired",
        "days_left=-1",
        "expiry=soon",
        "days_left=11",
    ]
    values = tmp_path / "out/values.yaml"
    assert main(["deploy", "values", "--file", str(manifest), "--output", str(values)]) == 0
    assert yaml.safe_load(values.read_text())["app"]["id"] == "leave-requests"


GITHUB_NEEDS = {
    "lint": {"result": "success", "outputs": {}},
    "deploy-staging": {"result": "success", "outputs": {}},
    "promote": {"result": "success", "outputs": {}},
}
GITHUB_REVIEWS = [
    {
        "state": "approved",
        "comment": "security review done",
        "environments": [{"id": 1, "name": "production-security-review"}],
        "user": {"login": "sec-reviewer"},
    }
]
GITLAB_JOBS = [
    {"name": "lint", "status": "success"},
    {"name": "promote-reviewed", "status": "failed"},
]
GITLAB_DEPLOYMENTS = [
    {
        "environment": {"name": "production-reviewed"},
        "approvals": [
            {"user": {"username": "dg-lead"}, "status": "rejected", "comment": "no DPIA"}
        ],
    }
]


def test_release_record_from_github_is_a_verifiable_audit_event(tmp_path, capsys):
    import yaml

    from guardrails.auditing.log import verify_file

    manifest = tmp_path / "microapp.yaml"
    data = {**MANIFEST, "schema_version": 3, "risk_tier": 2}
    data["sso"] = {**data["sso"], "roles": {"user": ["all"]}}
    manifest.write_text(yaml.safe_dump(data))
    (tmp_path / "needs.json").write_text(json.dumps(GITHUB_NEEDS))
    (tmp_path / "reviews.json").write_text(json.dumps(GITHUB_REVIEWS))
    out = tmp_path / "release-record.jsonl"
    image = "registry.example.com/microapps/leave-requests@sha256:" + "a" * 64
    assert (
        main(
            ["deploy", "record", "--file", str(manifest), "--image", image]
            + ["--gates", str(tmp_path / "needs.json"), "--approvals"]
            + [str(tmp_path / "reviews.json"), "--actor", "alice", "--output", str(out)]
            + ["--gate", "release-record=success"]
        )
        == 0
    )
    capsys.readouterr()
    record = json.loads(out.read_text())
    assert record["action"] == "release.deploy" and record["result"] == "success"
    assert record["resource"] == {"type": "image", "id": image}
    assert record["metadata"]["gates"] == {
        "lint": "success",
        "deploy-staging": "success",
        "promote": "success",
        "release-record": "success",
    }
    assert record["metadata"]["approvals"] == [
        {
            "approver": "sec-reviewer",
            "decision": "approved",
            "environments": ["production-security-review"],
            "comment": "security review done",
        }
    ]
    assert verify_file(out).ok
    out.write_text(out.read_text().replace("sec-reviewer", "someone-else"))
    assert not verify_file(out).ok  # an edited record no longer verifies


def test_release_record_from_gitlab_records_a_rejection_as_denied():
    record = release_record(
        "leave-requests",
        "img@sha256:" + "b" * 64,
        3,
        gate_results(GITLAB_JOBS),
        approvals(GITLAB_DEPLOYMENTS),
        "bob",
        "https://gitlab.example.com/p/-/pipelines/7",
    )
    assert record["result"] == "denied"
    assert record["metadata"]["gates"] == {"lint": "success", "promote-reviewed": "failed"}
    assert record["metadata"]["approvals"][0]["approver"] == "dg-lead"
    failed = release_record("x", "i", 1, {"test": "failure"}, [], "ci", "1")
    assert failed["result"] == "failure"


def test_gate_refuses_production_for_an_app_not_at_stage_production():
    today = dt.date(2027, 1, 1)
    sandbox = deploy_gate(MANIFEST, today, "production")
    assert not sandbox.allowed and "lifecycle.stage: production" in sandbox.message
    assert deploy_gate(MANIFEST, today, "staging").allowed
    ready = {**MANIFEST, "lifecycle": {**MANIFEST["lifecycle"], "stage": "production"}}
    assert deploy_gate(ready, today, "production").allowed
    expired = deploy_gate(MANIFEST, dt.date(2028, 1, 1), "production")
    assert "make renew" in expired.message  # expiry is named first
