"""Managed by the microapp template. microapp.yaml: schema, risk tier, command line."""

import copy

import pytest
import yaml

from guardrails.__main__ import main
from guardrails.manifest import ManifestError, compute_risk_tier, load_manifest, validate


@pytest.fixture
def data(manifest):
    return copy.deepcopy(manifest.raw)


def write(tmp_path, data):
    path = tmp_path / "microapp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_apps_manifest_is_valid(manifest):
    assert validate(manifest.raw) == []
    assert manifest.risk_tier == compute_risk_tier(manifest.raw)[0]


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
    ("kind", "classification", "pii", "connectors", "tier"),
    [
        ("dashboard", "internal", False, [], 1),
        ("dashboard", "public", False, [{"name": "db", "type": "sql", "access": "read-only"}], 1),
        (
            "dashboard",
            "internal",
            False,
            [{"name": "db", "type": "sql", "access": "read-write"}],
            2,
        ),
        ("approval", "internal", False, [], 2),
        ("incident-helper", "internal", False, [], 2),
        ("dashboard", "restricted", False, [], 3),
        ("approval", "regulated", False, [], 3),
        ("dashboard", "internal", True, [], 3),
        (
            "dashboard",
            "internal",
            False,
            [{"name": "pd", "type": "http", "access": "read-only", "external": True}],
            3,
        ),
    ],
)
def test_risk_tier_rules(kind, classification, pii, connectors, tier):
    data = {
        "kind": kind,
        "data": {"classification": classification, "pii": pii},
        "connectors": connectors,
    }
    assert compute_risk_tier(data)[0] == tier


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
    path = write(tmp_path, old)
    loaded = load_manifest(path)
    assert loaded.support_contact == data["support"]["contact"]
    assert loaded.notices and "support.channel is now support.contact" in loaded.notices[0]
    assert main(["manifest", "check", "--file", str(path)]) == 0
    assert "note: microapp.yaml uses schema_version 1" in capsys.readouterr().out
