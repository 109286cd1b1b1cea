"""microapp.yaml: schema, risk tier, upgrades, the rules' one home, command line."""

import copy
import datetime as dt

import pytest
import yaml

from guardrails.cli import main
from guardrails.core.manifest import ManifestError, load_manifest, schema_path, validate
from guardrails.core.rules import (
    EXPIRY_WARNING_DAYS,
    expiry_status,
    is_local_url,
    risk_tier,
    verdicts,
)


@pytest.fixture
def data(manifest):
    return copy.deepcopy(manifest.raw)


def write(tmp_path, data):
    path = tmp_path / "microapp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_apps_manifest_is_valid(manifest):
    assert validate(manifest.raw) == []
    assert manifest.risk_tier == risk_tier(manifest.raw)[0]


def test_problems_name_the_field(data):
    data["app_id"] = "Bad Id"
    data["data"]["retention_days"] = 0
    del data["owner"]
    problems = validate(data)
    assert any(p.startswith("app_id:") for p in problems)
    assert any(p.startswith("data.retention_days:") for p in problems)
    assert any("'owner' is a required property" in p for p in problems)


def test_declared_tier_must_match_the_rules(data):
    right = data["risk_tier"]
    data["risk_tier"] = 1 if right != 1 else 3
    problems = validate(data)
    assert problems and problems[0].startswith(f"risk_tier: declared {data['risk_tier']}")
    assert f"set risk_tier: {right}" in problems[0]


@pytest.mark.parametrize(
    ("writes", "classification", "pii", "connectors", "tier"),
    [
        (False, "internal", False, [], 1),
        (False, "public", False, [{"name": "db", "type": "sql", "access": "read-only"}], 1),
        (
            False,
            "internal",
            False,
            [{"name": "db", "type": "sql", "access": "read-write"}],
            2,
        ),
        (True, "internal", False, [], 2),
        (False, "restricted", False, [], 3),
        (True, "regulated", False, [], 3),
        (False, "internal", True, [], 3),
        (
            False,
            "internal",
            False,
            [{"name": "pd", "type": "http", "access": "read-only", "external": True}],
            3,
        ),
    ],
)
def test_risk_tier_rules(writes, classification, pii, connectors, tier):
    data = {
        "data": {"classification": classification, "pii": pii, "writes": writes},
        "connectors": connectors,
    }
    assert risk_tier(data)[0] == tier


@pytest.mark.parametrize("kind", ["dashboard", "approval", "incident-helper"])
def test_the_tier_never_depends_on_the_kind(kind):
    data = {"kind": kind, "data": {"classification": "internal", "pii": False, "writes": False}}
    assert risk_tier(data) == (1, ["read-only, internal-or-lower data, no PII, nothing external"])
    data["data"]["writes"] = True
    assert risk_tier(data) == (2, ["the app writes data (data.writes)"])


def test_writes_is_required_in_schema_3(data):
    del data["data"]["writes"]
    assert any("'writes' is a required property" in p for p in validate(data))


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:8200", True),
        ("http://127.0.0.1:9410/api", True),
        ("http://[::1]:8200", True),
        ("http://LOCALHOST", True),
        ("https://localhost:8200", False),  # local, but https needs no exception
        ("http://localhost.attacker.example:8200", False),
        ("http://127.0.0.1.nip.io", False),
        ("http://localhost@evil.example", False),
        ("http://evil.example/?http://localhost", False),
        ("http://localhost:notaport", False),
        ("ftp://localhost", False),
        ("", False),
    ],
)
def test_local_url_rule(url, local):
    assert is_local_url(url) is local


def test_expiry_window():
    today = dt.date(2026, 1, 1)
    assert expiry_status(today - dt.timedelta(days=1), today) == "expired"
    assert expiry_status(today, today) == "soon"
    assert expiry_status(today + dt.timedelta(days=EXPIRY_WARNING_DAYS), today) == "soon"
    assert expiry_status(today + dt.timedelta(days=EXPIRY_WARNING_DAYS + 1), today) == "ok"


def test_verdicts_for_the_policies(data):
    data["connectors"] = [
        {"name": "a", "type": "http", "access": "read-only", "base_url": "http://127.0.0.1:1/"},
        {"name": "b", "type": "http", "access": "read-only", "base_url": "https://b.example"},
    ]
    data["lifecycle"]["expires"] = "2026-01-21"
    found = verdicts(data, today=dt.date(2026, 1, 1))
    assert found == {
        "risk_tier": 2,
        "tier_reasons": ["the app writes data (data.writes)"],
        "local_urls": {"http://127.0.0.1:1/": True, "https://b.example": False},
        "expiry": "soon",
        "days_until_expiry": 20,
    }


def test_plain_http_issuer_must_be_this_machine(data):
    data["sso"]["issuer"] = "http://localhost.attacker.example:9400"
    assert any(p.startswith("sso.issuer:") and "not https" in p for p in validate(data))
    data["sso"]["issuer"] = "http://127.0.0.1:9400"
    assert validate(data) == []


def test_the_schema_is_installed_with_the_package():
    path = schema_path()
    assert path.name == "manifest.schema.json" and path.is_file()
    assert '"const": 3' in path.read_text()


def test_unquoted_dates_are_accepted(tmp_path, data):
    path = write(tmp_path, data)
    text = path.read_text().replace(
        f"'{data['lifecycle']['expires']}'", data["lifecycle"]["expires"]
    )
    path.write_text(text)
    assert load_manifest(path).expires.isoformat() == data["lifecycle"]["expires"]


def test_missing_and_broken_files_are_reported(tmp_path):
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("app_id: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(bad)


def test_check_command(tmp_path, data, capsys):
    assert main(["manifest", "check", "--file", str(write(tmp_path, data))]) == 0
    assert "valid" in capsys.readouterr().out
    data["risk_tier"] = wrong = 1 if data["risk_tier"] != 1 else 3
    assert main(["manifest", "check", "--file", str(write(tmp_path, data))]) == 1
    err = capsys.readouterr().err
    assert f"risk_tier: declared {wrong}" in err and "Fix them in microapp.yaml" in err


def test_check_command_refuses_an_expired_app(tmp_path, data, capsys):
    data["lifecycle"]["created"], data["lifecycle"]["expires"] = "2020-01-01", "2020-06-01"
    assert main(["manifest", "check", "--file", str(write(tmp_path, data))]) == 1
    assert "EXPIRED" in capsys.readouterr().err


def test_schema_1_manifest_is_upgraded_in_memory_with_a_notice(tmp_path, data, capsys):
    old = copy.deepcopy(data)
    old["schema_version"] = 1
    old["support"] = {"channel": old["support"].pop("contact"), **old["support"]}
    del old["data"]["writes"]
    path = write(tmp_path, old)
    loaded = load_manifest(path)
    assert loaded.support_contact == data["support"]["contact"]
    assert loaded.notices and "support.channel is now support.contact" in loaded.notices[0]
    assert loaded.raw["schema_version"] == 3 and loaded.writes is True  # kind approval
    assert main(["manifest", "check", "--file", str(path)]) == 0
    assert "note: microapp.yaml uses schema_version 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kind", "writes", "tier"), [("dashboard", False, 1), ("approval", True, 2)]
)
def test_schema_2_manifest_gets_writes_from_its_kind_with_a_notice(
    tmp_path, data, capsys, kind, writes, tier
):
    old = copy.deepcopy(data)
    old.update(schema_version=2, kind=kind, risk_tier=tier)
    del old["data"]["writes"]
    path = write(tmp_path, old)
    loaded = load_manifest(path)
    assert loaded.writes is writes and loaded.risk_tier == tier
    assert len(loaded.notices) == 1
    assert "data.writes" in loaded.notices[0] and "make migrate" in loaded.notices[0]
    assert main(["manifest", "check", "--file", str(path)]) == 0
    assert "note: microapp.yaml uses schema_version 2" in capsys.readouterr().out


def test_tier_command(tmp_path, data, capsys):
    path = str(write(tmp_path, data))
    assert main(["manifest", "tier", "--file", path, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert main(["manifest", "tier", "--file", path]) == 0
    assert "risk tier 2: the app writes data" in capsys.readouterr().out


OLD_MANIFEST = """# the owner's comment stays
schema_version: 1
app_id: leave-requests
kind: approval
support:
  channel: "#hr-ops"   # chat
  sla_hours: 8
data:
  classification: internal
  pii: false
  retention_days: 365
connectors:
  - {name: hr-db, type: sql, access: read-only, secret: "env:HR_DB"}  # the owner's
"""


def test_manifest_migrate_brings_the_file_to_the_current_schema_and_is_idempotent(tmp_path, capsys):
    from guardrails.core import manifest_migrations
    from guardrails.core.manifest import SCHEMA_VERSION

    assert manifest_migrations.CURRENT == SCHEMA_VERSION
    path = tmp_path / "microapp.yaml"
    path.write_text(OLD_MANIFEST)
    assert main(["manifest", "migrate", "--check", "--file", str(path)]) == 1
    assert path.read_text() == OLD_MANIFEST  # --check changes nothing
    assert main(["manifest", "migrate", "--file", str(path)]) == 0
    text = path.read_text()
    assert 'contact: "#hr-ops"   # chat' in text and "schema_version: 3" in text
    assert "  writes: true" in text and "# the owner's comment stays" in text
    assert '{name: hr-db, type: sql, access: read-only, secret: "env:HR_DB"}  # the owner' in text
    capsys.readouterr()
    assert main(["manifest", "migrate", "--file", str(path)]) == 0  # again: nothing to do
    assert path.read_text() == text and "nothing to migrate" in capsys.readouterr().out
    assert main(["manifest", "migrate", "--check", "--file", str(path)]) == 0


def test_manifest_migrate_refuses_conflict_markers_then_runs_after_they_are_resolved(
    tmp_path, capsys
):
    path = tmp_path / "microapp.yaml"
    conflicted = OLD_MANIFEST.replace(
        "  sla_hours: 8\n",
        "<<<<<<< before updating\n  sla_hours: 8\n=======\n  sla_hours: 4\n"
        ">>>>>>> after updating\n",
    )
    path.write_text(conflicted)
    assert main(["manifest", "migrate", "--file", str(path)]) == 1
    err = capsys.readouterr().err
    assert "conflict markers" in err and "python -m guardrails manifest migrate" in err
    assert path.read_text() == conflicted  # untouched
    path.write_text(OLD_MANIFEST)  # the owner resolves the conflict
    assert main(["manifest", "migrate", "--file", str(path)]) == 0
    assert "schema_version: 3" in path.read_text()
