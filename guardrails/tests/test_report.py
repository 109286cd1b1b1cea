"""The promotion report (make report) and the renewal of an app's expiry (make renew)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
import yaml

from guardrails.cli import main
from guardrails.cli.report import write
from guardrails.core.rules import MAX_EXPIRY_DAYS, REQUIRED_APPROVALS, renewed_expiry

from .conftest import DATA

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="{failures}" skipped="1" tests="12"></testsuite></testsuites>"""


@pytest.fixture
def app(tmp_path, manifest):
    shutil.copy(DATA / "microapp.yaml", tmp_path / "microapp.yaml")
    shutil.copytree(DATA.parent.parent.parent / "templates/policy", tmp_path / "policy")
    (tmp_path / ".copier-answers.yml").write_text("_commit: v1.0.0\n")
    out = tmp_path / "report"
    out.mkdir()
    (out / "junit.xml").write_text(JUNIT.format(failures=0))
    (out / "tests.exit").write_text("0\n")
    (out / "sbom.cdx.json").write_text(json.dumps({"components": [
        {"name": "microapp-guardrails", "version": "1.0.0"}, {"name": "fastapi", "version": "1"}
    ]}))  # fmt: skip
    (out / "deps-audit.json").write_text(json.dumps({"dependencies": [
        {"name": "fastapi", "version": "1", "vulns": []}
    ]}))  # fmt: skip
    (out / "secrets.exit").write_text("0\n")
    return tmp_path


def test_a_clean_app_is_ready_and_the_page_says_everything(app, manifest):
    verdict, sections = write(app, app / "report", today=dt.date(2026, 12, 1))
    assert verdict == "Ready to ask for promotion", [(s.title, s.status) for s in sections]
    page = (app / "report/promotion.html").read_text()
    text = (app / "report/promotion.md").read_text()
    for needed in ("11 passed", "every CoE rule passes", "Required approvals",
                   "microapp-guardrails 1.0.0", "no known vulnerability", "no secret found",
                   "template v1.0.0"):  # fmt: skip
        assert needed in text and needed in page, needed
    assert "; ".join(REQUIRED_APPROVALS[manifest.risk_tier]) in text


def test_failures_and_missing_steps_make_it_not_ready(app):
    (app / "report/junit.xml").write_text(JUNIT.format(failures=2))
    (app / "report/tests.exit").write_text("1\n")
    vuln = {"id": "GHSA-x", "fix_versions": ["3.1.5"]}
    audit = {"dependencies": [{"name": "jinja2", "version": "3.1.0", "vulns": [vuln]}]}
    (app / "report/deps-audit.json").write_text(json.dumps(audit))
    (app / "report/secrets.exit").unlink()
    verdict, _ = write(app, app / "report", today=dt.date(2026, 12, 1))
    assert verdict == "Not ready: Tests, Dependency audit, Secret scan"
    assert "jinja2 3.1.0: GHSA-x (fixed in 3.1.5)" in (app / "report/promotion.md").read_text()


def test_renew_extends_expiry_within_the_maximum_and_keeps_the_file(tmp_path, capsys):
    path = tmp_path / "microapp.yaml"
    data_file = (DATA / "microapp.yaml").read_text()
    soon = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    original = data_file.replace(str(yaml.safe_load(data_file)["lifecycle"]["expires"]), soon)
    path.write_text(original)
    assert main(["lifecycle", "renew", "--file", str(path), "--days", "30"]) == 0
    new = yaml.safe_load(path.read_text())["lifecycle"]["expires"]
    expected = renewed_expiry(30)
    assert str(new) == expected.isoformat()
    old = str(yaml.safe_load(original)["lifecycle"]["expires"])
    assert path.read_text() == original.replace(old, expected.isoformat())
    assert (
        main(["lifecycle", "renew", "--file", str(path), "--days", str(MAX_EXPIRY_DAYS + 1)]) == 2
    )
    assert f"1 to {MAX_EXPIRY_DAYS} days" in capsys.readouterr().err
    assert main(["lifecycle", "renew", "--file", str(path), "--days", "10"]) == 0  # earlier
    assert "nothing to renew" in capsys.readouterr().out
    assert str(yaml.safe_load(path.read_text())["lifecycle"]["expires"]) == expected.isoformat()
