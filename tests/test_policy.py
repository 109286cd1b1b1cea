# Managed by the microapp template: `copier update` replaces this file. Propose changes to the CoE.
"""The CoE policies (templates/policy/*.rego) through the real Rego engine, regopy, with the
installed guardrails (microapp-guardrails): for each rule, a manifest that passes and one that
fails with the expected message. The policies compare the manifest to the verdicts the
guardrails compute (`data.verdicts`); they do not recompute them."""

import copy
import datetime as dt
import itertools
import re
from pathlib import Path

import pytest
import yaml
from guardrails.cli import main
from guardrails.core.policy import PolicyError, evaluate, table
from guardrails.core.rules import EXPIRY_WARNING_DAYS, risk_tier

POLICY = Path(__file__).resolve().parents[1] / "templates" / "policy"
TODAY = dt.date(2026, 1, 1)
# What the template renders with its defaults (kind approval), in schema 3.
MANIFEST = {
    "schema_version": 3,
    "app_id": "leave-requests",
    "name": "Leave requests",
    "description": "Leave requests, run by hr-ops",
    "kind": "approval",
    "owner": "hr-ops@example.com",
    "team": "hr-ops",
    "support": {"contact": "#hr-ops", "sla_hours": 16},
    "data": {"classification": "internal", "pii": False, "writes": True, "retention_days": 365},
    "risk_tier": 2,
    "lifecycle": {"stage": "sandbox", "created": "2025-12-01", "expires": "2026-06-30"},
    "sso": {
        "issuer": "http://localhost:9400",
        "client_id": "leave-requests",
        "groups_claim": "groups",
        "algorithms": ["RS256"],
        "roles": {"requester": ["hr-ops"], "approver": ["hr-ops-leads"], "admin": ["hr-admins"]},
    },
    "secrets": {},
    "connectors": [],
    "quotas": {"requests_per_minute": 120},
}
SQL_OK = {
    "name": "hr-db",
    "type": "sql",
    "access": "read-only",
    "secret": "vault:kv/apps/leave/hr-db#url",
}
HTTP_OK = {
    "name": "incidents",
    "type": "http",
    "access": "read-only",
    "base_url": "https://incidents.example.com/api",
}


@pytest.fixture
def base():
    data = copy.deepcopy(MANIFEST)
    data["lifecycle"].update(created="2025-12-01", expires="2026-06-30", stage="sandbox")
    data["lifecycle"].pop("promotion", None)
    data["data"].update(classification="internal", pii=False)  # each test sets what it needs
    data["connectors"] = []
    data["risk_tier"] = risk_tier(data)[0]
    return data


def rules(data, today=TODAY):
    result = evaluate(data, POLICY, today=today)
    return {f.rule: f for f in result.deny}, {f.rule: f for f in result.warn}


def retier(data):
    data["risk_tier"] = risk_tier(data)[0]
    return data


def test_the_fresh_manifest_passes(base):
    assert rules(base) == ({}, {})


def test_connector_allow_list(base):
    base["connectors"] = [SQL_OK, HTTP_OK]
    assert rules(retier(base))[0] == {}
    base["connectors"] = [{**HTTP_OK, "name": "shady", "base_url": "https://shady.example.net"}]
    deny, _ = rules(retier(base))
    assert "shady" in deny["connector-allow-list"].msg
    assert "approved connectors" in deny["connector-allow-list"].msg


def test_a_connector_secret_may_name_an_entry_of_secrets(base):
    base["secrets"] = {"hr-db": "vault:kv/apps/leave/hr-db#url", "odd-db": "vault:kv/other/db#url"}
    base["connectors"] = [{**SQL_OK, "secret": "hr-db"}]
    assert rules(retier(base))[0] == {}
    base["connectors"] = [{**SQL_OK, "secret": "odd-db"}]
    deny, _ = rules(retier(base))
    assert "vault:kv/other/db#url" not in deny["connector-allow-list"].msg  # names the name
    assert "odd-db" in deny["connector-allow-list"].msg


def test_a_named_env_secret_is_refused_in_production(base):
    base["lifecycle"]["stage"] = "production"
    base["secrets"] = {"hr-db": "env:HR_DB_URL"}
    base["connectors"] = [{**SQL_OK, "secret": "hr-db"}]
    deny, _ = rules(retier(base))
    assert "env:HR_DB_URL" in deny["production-vault"].msg


def test_http_connector_needs_an_https_base_url(base):
    base["connectors"] = [{**HTTP_OK, "base_url": "http://incidents.example.com/api"}]
    deny, _ = rules(retier(base))
    assert set(deny) == {"http-base-url"}
    assert "any host could be called" in deny["http-base-url"].msg


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9500/api", "http://localhost:9500/api", "http://[::1]:9500/api"]
)
def test_a_local_demo_service_is_fine_on_a_laptop_but_not_in_production(base, url):
    base["connectors"] = [{**HTTP_OK, "base_url": url}]
    assert rules(retier(base))[0] == {}
    base["lifecycle"]["stage"] = "production"
    deny, _ = rules(retier(base))
    assert set(deny) == {"http-base-url"}


@pytest.mark.parametrize(
    "url", ["http://localhost.attacker.example:9500/api", "http://localhost@evil.example/api"]
)
def test_a_host_that_only_looks_local_is_not_local(base, url):
    base["connectors"] = [{**HTTP_OK, "base_url": url}]
    deny, _ = rules(retier(base))
    assert set(deny) == {"http-base-url"}


def test_declared_tier_must_equal_the_computed_one(base):
    base["risk_tier"] = 1 if base["risk_tier"] != 1 else 3
    deny, _ = rules(base)
    assert deny["risk-tier"].msg.startswith(f"risk_tier says {base['risk_tier']}")
    assert "set risk_tier: 2" in deny["risk-tier"].fix


def test_sensitive_data_needs_masking_on_sql_connectors(base):
    base["data"]["pii"] = True
    base["connectors"] = [{**SQL_OK, "masking": {"email": "partial"}}]
    assert rules(retier(base))[0] == {}
    base["connectors"] = [{**SQL_OK, "sensitive_columns": []}]  # says explicitly: none
    assert rules(retier(base))[0] == {}
    base["connectors"] = [SQL_OK]
    deny, _ = rules(retier(base))
    assert "has no masking rules, but the app handles personal data" in deny["masking-required"].msg


def test_unmasked_or_personal_columns_need_pii_declared(base):
    """A role that sees masked columns in clear text, or a connector declaring columns about a
    person (the dashboard's starter), makes the app handle personal data: data.pii must say so."""
    base["data"]["writes"] = False
    masked = {**SQL_OK, "masking": {"email": "email", "phone": "partial", "team": "none"}}
    base["connectors"] = [masked]
    assert rules(retier(base))[0] == {}  # masked for everyone: no one sees them
    base["connectors"] = [{**masked, "unmasked_for": ["pii-reader"]}]
    deny, _ = rules(retier(base))
    assert set(deny) == {"pii-declared"}
    assert deny["pii-declared"].msg == (
        'connector "hr-db" shows email, phone unmasked to the role(s) pii-reader,'
        " but data.pii is false"
    )
    assert "set data.pii: true" in deny["pii-declared"].fix
    base["connectors"] = [{**masked, "personal_columns": ["email", "phone"]}]
    deny, _ = rules(retier(base))
    assert "reads personal data (personal_columns: email, phone)" in deny["pii-declared"].msg
    base["data"]["pii"] = True  # the fix, with the tier it moves
    for connector in ({**masked, "unmasked_for": ["pii-reader"]}, base["connectors"][0]):
        base["connectors"] = [connector]
        assert rules(retier(base))[0] == {} and base["risk_tier"] == 3


def test_the_dashboard_starter_declares_pii_and_refuses_no(tmp_path):
    """The dashboard's questions make the PII answer hard to get wrong: yes by default (tier 3),
    no refused with the reason; its rendered manifest passes the policies, and the same manifest
    saying pii: false fails them."""
    from . import inprocess
    from .conftest import DASHBOARD

    data = yaml.safe_load(inprocess.render("templates/microapp.yaml.jinja", DASHBOARD))
    assert data["data"]["pii"] is True and data["risk_tier"] == 3
    (reports,) = data["connectors"]
    assert reports["personal_columns"] == ["email", "phone"]
    data["lifecycle"].update(created="2025-12-01", expires="2026-06-30")
    assert rules(data)[0] == {}
    data["data"]["pii"] = False
    assert "pii-declared" in rules(retier(data))[0]
    assert inprocess.validate("handles_pii", {**DASHBOARD, "handles_pii": True}) == ""
    refusal = inprocess.validate("handles_pii", {**DASHBOARD, "handles_pii": False})
    assert "shows personal data (the columns email, phone), so answer yes" in refusal


@pytest.mark.parametrize(
    ("change", "rule", "message"),
    [
        (lambda d: d["support"].update(contact="  "), "production-owner", "support contact"),
        (lambda d: d["support"].pop("sla_hours"), "production-sla", "support SLA"),
        (
            lambda d: d["connectors"].append({**SQL_OK, "secret": "env:DATABASE_URL"}),
            "production-vault",
            "must come from Vault",
        ),
    ],
)
def test_production_requirements(base, change, rule, message):
    base["lifecycle"]["stage"] = "production"
    base["connectors"] = [SQL_OK]
    assert rules(retier(base))[0] == {}
    change(base)
    deny, _ = rules(retier(base))
    assert message in deny[rule].msg


def test_expiry_warns_within_30_days_and_denies_after(base):
    assert EXPIRY_WARNING_DAYS == 30
    assert rules(base, today=dt.date(2026, 5, 1)) == ({}, {})
    assert rules(base, today=dt.date(2026, 5, 30)) == ({}, {})  # 31 days left
    deny, warn = rules(base, today=dt.date(2026, 5, 31))  # 30 days left
    assert deny == {} and "expires in 30 day(s)" in warn["expires-soon"].msg
    deny, warn = rules(base, today=dt.date(2026, 6, 10))
    assert deny == {} and "expires in 20 day(s)" in warn["expires-soon"].msg
    deny, warn = rules(base, today=dt.date(2026, 6, 30))
    assert deny == {} and "expires in 0 day(s)" in warn["expires-soon"].msg
    deny, _ = rules(base, today=dt.date(2026, 7, 2))
    assert "expired 2 day(s) ago" in deny["expired"].msg


def test_only_tier_1_may_be_auto_promoted(base):
    base["lifecycle"]["promotion"] = "auto"
    tier_1 = copy.deepcopy(base)
    tier_1["data"]["writes"] = False
    assert rules(retier(tier_1))[0] == {}
    base["data"]["pii"] = True
    deny, _ = rules(retier(base))
    assert "a tier 3 app cannot be promoted automatically" in deny["no-auto-promotion"].msg


@pytest.mark.parametrize(
    ("writes", "classification", "pii", "access", "external"),
    list(
        itertools.product(
            [False, True],
            ["public", "internal", "restricted", "regulated"],
            [False, True],
            ["read-only", "read-write"],
            [False, True],
        )
    ),
)
def test_rego_accepts_exactly_the_tier_python_computes(
    base, writes, classification, pii, access, external
):
    """The kind plays no part (the policies never read it: see the test below)."""
    data = {
        **base,
        "data": {**base["data"], "classification": classification, "pii": pii, "writes": writes},
        "connectors": [{**HTTP_OK, "access": access, "external": external}],
    }
    data["risk_tier"] = tier = risk_tier(data)[0]
    assert "risk-tier" not in rules(data)[0]
    data["risk_tier"] = 1 if tier != 1 else 2
    assert "risk-tier" in rules(data)[0]


def test_policies_do_not_recompute_what_the_guardrails_compute():
    """One home per fact: no kind, no local-URL prefixes, no expiry window in the policies."""
    for module in POLICY.glob("*.rego"):
        code = "\n".join(
            line.split("#", 1)[0] for line in module.read_text().splitlines()
        )  # comments may explain
        assert "kind" not in code, module.name
        assert not re.search(r"localhost|127\.0\.0\.1|::1", code), module.name
        assert not re.search(r"\b30\b", code), module.name
        assert "data.verdicts" in code


def test_policies_use_rego_v1_syntax_only():
    for module in POLICY.glob("*.rego"):
        text = module.read_text()
        assert not re.search(r"^\s*(deny|warn)\s*\[", text, re.MULTILINE), module.name
        assert "import rego.v1" in text


def test_old_rule_syntax_is_refused_not_misread(tmp_path, base):
    """regopy reads `deny[msg] { ... }` as an object, which would silently lose findings."""
    (tmp_path / "old.rego").write_text(
        "package microapp.policy\n\ndeny[msg] {\n  input.risk_tier > 0\n"
        '  msg := {"rule": "r", "msg": "m", "fix": "f"}\n}\n'
    )
    with pytest.raises(PolicyError, match="Rego v1 form"):
        evaluate(base, tmp_path, today=TODAY)


def test_command_prints_a_table_a_person_can_act_on(tmp_path, base, capsys):
    import yaml

    base["connectors"] = [{**HTTP_OK, "name": "shady", "base_url": "https://shady.example.net"}]
    path = tmp_path / "microapp.yaml"
    path.write_text(yaml.safe_dump(retier(base)))
    code = main(
        [
            "policy",
            "check",
            "--file",
            str(path),
            "--policy-dir",
            str(POLICY),
            "--today",
            "2026-01-01",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "RULE" in err and "WHAT IS WRONG" in err and "HOW TO FIX" in err
    assert "connector-allow-list" in err and "ask the CoE to approve" in err


def test_table_wraps_long_text():
    from guardrails.core.policy import Finding

    out = table([Finding("r", "word " * 40, "fix " * 30)], width=80)
    assert all(len(line) <= 80 for line in out.splitlines())
