"""Each rendered app, set up as its owner would (`make setup`), passes its own checks and tests."""

import json
import re
import tomllib

import pytest

from .conftest import GUARDRAILS, UV, run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("answers", ["defaults", "second", "dashboard", "incident-helper"])
def test_make_check_passes(set_up, answers):
    result = run(["make", "check"], cwd=set_up[answers])
    assert "valid" in result.stdout


@pytest.mark.parametrize("answers", ["defaults", "second", "dashboard", "incident-helper"])
def test_apps_own_test_suite_passes(set_up, answers):
    result = run(["make", "test"], cwd=set_up[answers], timeout=900)
    assert " passed" in result.stdout and " failed" not in result.stdout


@pytest.mark.parametrize("answers", ["defaults", "second", "dashboard", "incident-helper"])
def test_pre_commit_hooks_pass_on_the_fresh_app(set_up, answers):
    app = set_up[answers]
    run(["git", "add", "-A"], cwd=app)
    run([str(app / ".venv/bin/pre-commit"), "run", "--all-files"], cwd=app)


def test_make_setup_made_a_git_repo_with_hooks(set_up):
    app = set_up["defaults"]
    assert (app / ".git").is_dir()
    assert (app / ".git/hooks/pre-commit").exists()


def test_make_help_lists_the_commands(set_up):
    out = run(["make", "help"], cwd=set_up["defaults"]).stdout
    for target in ("setup", "dev", "test", "check", "purge"):
        assert f"make {target}" in out


def test_retention_purge_command_runs(set_up, tmp_path):
    app = set_up["defaults"]
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "MICROAPP_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
    }
    out = run(["make", "purge"], cwd=app, env=env).stdout
    assert "purged 0 archived request(s) older than 365 days" in out


def sdk_version() -> str:
    text = (GUARDRAILS / "src/guardrails/_version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text)[1]


def test_uv_lock_pins_the_guardrails_exactly_with_hashes(set_up):
    lock = tomllib.loads((set_up["defaults"] / "uv.lock").read_text())
    (sdk,) = [p for p in lock["package"] if p["name"] == "microapp-guardrails"]
    assert sdk["version"] == sdk_version()
    assert all(w["hash"].startswith("sha256:") for w in sdk["wheels"])


def test_drift_catches_a_patched_sdk_in_site_packages(set_up):
    app = set_up["incident-helper"]
    installed = next((app / ".venv/lib").glob("python3*/site-packages/guardrails/core/rules.py"))
    original = installed.read_text()
    try:
        installed.write_text(original + "\n# patched by hand\n")
        drift = run(["make", "drift"], cwd=app, check=False)
        assert drift.returncode != 0 and "guardrails/core/rules.py" in drift.stderr
        assert "make setup" in drift.stderr
    finally:
        installed.write_text(original)
    assert run(["make", "drift"], cwd=app).returncode == 0


def test_the_production_image_gets_no_test_kit(set_up):
    """What the Dockerfile installs (uv export of the lock without the dev extra): the SDK
    without its testing extra, so no fake Vault, OAuth server or sign-in service ships."""
    app = set_up["defaults"]
    dockerfile = (app / "Dockerfile").read_text()
    export = re.search(r"uv export ([^>]+) >", dockerfile)[1].split()
    listed = run([UV, "export", *export], cwd=app).stdout
    assert f"microapp-guardrails=={sdk_version()}" in listed
    for test_only in ("oidc-provider-mock", "pytest", "regopy", "werkzeug"):
        assert f"\n{test_only}==" not in listed, test_only
    assert "microapp-guardrails[testing]" not in listed


# An SBOM against the CycloneDX schema of its specVersion, by the CycloneDX library `make sbom`
# runs, with every format check but the IRI syntax (rfc3987-syntax's parser takes about 0.1 s
# per URL: jsonschema issue 1392). Exit 1 and the first error when it is not valid.
CYCLONEDX_CHECK = """
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from jsonschema import Draft7Validator
for name in ("iri", "iri-reference"):
    Draft7Validator.FORMAT_CHECKER.checkers.pop(name, None)
bom = open(sys.argv[1]).read()
version = SchemaVersion.from_version(json.loads(bom)["specVersion"])
error = JsonStrictValidator(version).validate_str(bom)
print(error or "valid")
sys.exit(1 if error else 0)
"""


def test_make_report_writes_the_promotion_report_and_make_renew_commits(set_up, tmp_path):
    """In a real app: the tests, the SBOM, pip-audit and detect-secrets run, and the page says
    so; the SBOM names the guardrails version (one scanner query over the fleet's SBOMs finds
    every app on a release); make renew extends the expiry within the maximum, keeps the
    catalog in sync, and commits."""
    app = set_up["dashboard"]
    run(["make", "report", f"UV={UV}"], cwd=app, timeout=900)  # the uv its setup used
    text = (app / "report/promotion.md").read_text()
    assert (app / "report/promotion.html").is_file()
    assert "## Tests: PASS" in text and "## Policy verdict: PASS" in text, text
    assert "## SBOM: PASS" in text and "## Secret scan: PASS" in text, text
    assert "Required approvals" in text and f"microapp-guardrails {sdk_version()}" in text
    sbom = json.loads((app / "report/sbom.cdx.json").read_text())
    versions = {c["name"]: c.get("version") for c in sbom["components"]}
    assert versions["microapp-guardrails"] == sdk_version()
    assert "cyclonedx-bom" not in versions and "pip-audit" not in versions  # the tools, not the app
    # make sbom skips the library's self-check (see the Makefile): the schema check is here
    sbom_tool = re.search(r"^SBOM_TOOL := (.+)$", (app / "Makefile").read_text(), re.M)[1]
    broken = {**sbom, "components": [{**sbom["components"][0], "version": 5}]}
    (tmp_path / "broken.cdx.json").write_text(json.dumps(broken))
    check = [UV, "run", "--quiet", "--no-project", "--with", sbom_tool, "python", "-c"]
    checked = [
        run([*check, CYCLONEDX_CHECK, str(path)], cwd=app, check=False)
        for path in (app / "report/sbom.cdx.json", tmp_path / "broken.cdx.json")
    ]
    assert checked[0].returncode == 0, checked[0].stdout + checked[0].stderr
    assert checked[1].returncode == 1 and "is not of type 'string'" in checked[1].stdout

    kept = {name: (app / name).read_text() for name in ("microapp.yaml", "catalog-info.yaml")}
    try:
        run(["git", "add", "-A"], cwd=app)
        run(["git", "-c", "core.hooksPath=/dev/null", "commit", "-qm", "The app"], cwd=app)
        run(["make", "renew", "DAYS=400"], cwd=app)
        assert "make renew" in run(["git", "log", "-1", "--format=%s"], cwd=app).stdout
        assert "microapp.yaml" in run(["git", "show", "--stat", "HEAD"], cwd=app).stdout
        run(["make", "check"], cwd=app)
    finally:  # the rendered app is shared with later tests: give it back as it was
        for name, text in kept.items():
            (app / name).write_text(text)
