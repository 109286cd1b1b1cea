"""catalog-info.yaml (the Backstage entry) derived from microapp.yaml, and its check."""

from __future__ import annotations

import copy

import yaml

from guardrails.cli import main


def write_app(tmp_path, data, commit="v1.0.0"):
    (tmp_path / "microapp.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / ".copier-answers.yml").write_text(f"_commit: {commit}\nkind: approval\n")


def args(tmp_path, *extra):
    return [
        "catalog",
        "--file", str(tmp_path / "microapp.yaml"),
        "--answers", str(tmp_path / ".copier-answers.yml"),
        "--output", str(tmp_path / "catalog-info.yaml"),
        *extra,
    ]  # fmt: skip


def test_the_entry_carries_owner_lifecycle_links_and_annotations(tmp_path, manifest):
    data = copy.deepcopy(manifest.raw)
    data["team"] = "HR Ops (Berlin)"
    data["support"]["contact"] = "https://support.example.com/hr"
    data["links"] = [{"title": "Dashboards", "url": "https://grafana.example.com/d/hr"}]
    write_app(tmp_path, data)
    assert main(args(tmp_path)) == 0
    item = yaml.safe_load((tmp_path / "catalog-info.yaml").read_text())
    assert item["kind"] == "Component" and item["metadata"]["name"] == data["app_id"]
    assert item["spec"] == {
        "type": "service",
        "lifecycle": data["lifecycle"]["stage"],
        "owner": "group:hr-ops-berlin",
        "system": "microapps",
    }
    assert [link["title"] for link in item["metadata"]["links"]] == ["Dashboards", "Support"]
    notes = item["metadata"]["annotations"]
    assert notes["microapp/template-version"] == "v1.0.0"
    assert notes["microapp/risk-tier"] == str(data["risk_tier"])
    assert notes["microapp/expires"] == str(data["lifecycle"]["expires"])
    assert notes["microapp/runbook"] == "RUNBOOK.md"
    assert main(args(tmp_path, "--check")) == 0


def test_check_fails_when_the_manifest_or_the_template_version_changed(tmp_path, manifest, capsys):
    data = copy.deepcopy(manifest.raw)
    write_app(tmp_path, data)
    assert main(args(tmp_path)) == 0
    data["lifecycle"]["stage"] = "production"
    write_app(tmp_path, data)
    assert main(args(tmp_path, "--check")) == 1
    err = capsys.readouterr().err
    assert "spec.lifecycle" in err and "make catalog" in err
    write_app(tmp_path, data, commit="v1.1.0")
    assert main(args(tmp_path)) == 0 and main(args(tmp_path, "--check")) == 0
    (tmp_path / "catalog-info.yaml").unlink()
    assert main(args(tmp_path, "--check")) == 1
