"""Backstage: every app's catalog-info.yaml agrees with its manifest (the SDK's rule), the
Software Template's form is generated from copier.yml, and both pass Backstage's own
validators (@backstage/catalog-model, @backstage/plugin-scaffolder-common)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from guardrails.core.catalog import differences, entity, template_version
from guardrails.core.manifest import load_manifest

from .conftest import REPO, copier_config, run

TEMPLATE = REPO / "backstage/template.yaml"
VALIDATOR = REPO / "tests/tools/backstage_validate.cjs"
BACKSTAGE = REPO / ".tools/backstage/node_modules/@backstage/catalog-model/package.json"
needs_backstage = pytest.mark.skipif(
    not BACKSTAGE.exists() or not shutil.which("node"),
    reason="Backstage's validators (npm @backstage/catalog-model) not installed: run make setup "
    "with npm present",
)


def form_fields() -> dict[str, dict]:
    """Every field of the template's form, from every page and kind-dependent branch."""
    fields: dict[str, dict] = {}
    for page in yaml.safe_load(TEMPLATE.read_text())["spec"]["parameters"]:
        fields.update(page["properties"])
        for branch in page.get("dependencies", {}).get("kind", {}).get("oneOf", []):
            fields.update({k: v for k, v in branch["properties"].items() if k != "kind"})
    return fields


def test_the_template_is_generated_from_copier_yml_and_in_sync():
    done = run([sys.executable, "-m", "tools.backstage", "--check"], cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout + "\n(run python -m tools.backstage)"


def test_every_question_is_in_the_form_with_the_same_choices_and_ranges():
    config = copier_config()
    asked = {
        k: v
        for k, v in config.items()
        if not k.startswith("_") and isinstance(v, dict) and v.get("when") is not False
    }
    fields = form_fields()
    assert set(fields) - {"repoUrl"} == set(asked)
    assert fields["kind"]["enum"] == list(asked["kind"]["choices"].values())
    assert (fields["retention_days"]["minimum"], fields["retention_days"]["maximum"]) == (1, 3650)
    assert (fields["expiry_days"]["minimum"], fields["expiry_days"]["maximum"]) == (7, 730)
    # computed per kind (yes for a kind whose starter shows personal data): left to copier
    assert fields["handles_pii"]["type"] == "boolean" and "default" not in fields["handles_pii"]


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [
        ("app_id", "leave-requests", True),
        ("app_id", "../etc", False),
        ("app_id", "Leave", False),
        ("app_name", "Leave requests", True),
        ("app_name", "a/b", False),
        ("app_name", "{{ 7*7 }}", False),
        ("app_name", "two\nlines", False),
        ("owner_email", "hr-ops@example.com", True),
        ("owner_email", "not an e-mail", False),
        ("approver_groups", "hr-approvers, /o/leads", True),
        ("approver_groups", "a,,b", False),
        ("sso_issuer", "https://idp.example.com/realms/x", True),
        ("sso_issuer", "http://idp.example.com", False),
        ("package_index", "", True),
        ("retention_days", 0, False),
        ("retention_days", 365, True),
    ],
)
def test_the_form_refuses_what_copier_refuses(key, value, ok):
    schema = form_fields()[key]
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(value))
    assert (not errors) == ok, (key, value, [e.message for e in errors])


def test_each_rendered_apps_catalog_entry_agrees_with_its_manifest(rendered):
    for name, app in rendered.items():
        manifest = load_manifest(app / "microapp.yaml")
        wanted = entity(manifest.raw, template_version(app / ".copier-answers.yml"))
        assert differences(app / "catalog-info.yaml", wanted) == [], name


def validate(*entities: dict, tmp_path: Path):
    files = []
    for i, item in enumerate(entities):
        path = tmp_path / f"entity-{i}.json"
        path.write_text(json.dumps(item, default=str))
        files.append(str(path))
    return run(["node", str(VALIDATOR), *files], cwd=REPO, check=False)


@needs_backstage
def test_backstages_validators_accept_the_catalog_entries_and_the_template(rendered, tmp_path):
    entities = [
        yaml.safe_load((app / "catalog-info.yaml").read_text()) for app in rendered.values()
    ]
    done = validate(*entities, yaml.safe_load(TEMPLATE.read_text()), tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("valid backstage.io/v1alpha1 Component") == len(rendered)
    assert "valid scaffolder.backstage.io/v1beta3 Template" in done.stdout


@needs_backstage
def test_backstages_validators_would_refuse_a_bad_entry_and_a_bad_template(rendered, tmp_path):
    component = yaml.safe_load((rendered["defaults"] / "catalog-info.yaml").read_text())
    component["metadata"]["name"] = "Leave requests!"
    assert validate(component, tmp_path=tmp_path).returncode == 1
    template = yaml.safe_load(TEMPLATE.read_text())
    template["spec"]["steps"][0].pop("action")
    assert validate(template, tmp_path=tmp_path).returncode == 1
